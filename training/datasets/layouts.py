"""Keypoint layouts: what each of the model's 17 output slots means for a dataset.

The model always has 17 slots in COCO order. COCO fills them with COCO's joints.
PoseTrack18 reuses the same 17 slots but puts *head_bottom* in slot 1 and
*head_top* in slot 2 (COCO's left/right eye) and leaves slots 3, 4 (ears) empty:

    slot  COCO           PoseTrack18
    0     nose           nose
    1     left_eye       head_bottom
    2     right_eye      head_top
    3     left_ear       (unlabelled, always 0,0,0)
    4     right_ear      (unlabelled, always 0,0,0)
    5-16  shoulders, elbows, wrists, hips, knees, ankles (identical)

Training policy: joints are trained in their slots as the data labels them;
names are never remapped. A model trained on PoseTrack-layout data therefore
predicts head_bottom/head_top in slots 1/2 and learns nothing for slots 3/4
(their target weight is always 0); its checkpoint must carry the PoseTrack
names so consumers label the slots correctly. Mixing layouts in one training
run is refused (the slot meanings would conflict).

Horizontal flip swaps left/right joints. For COCO that is
model.keypoints.flip_permutation(); for PoseTrack18 slots 1/2 (head_bottom,
head_top) must NOT swap — they are not a left/right pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.keypoints import COCO_KEYPOINTS, POSETRACK18_KEYPOINTS, coco_to_posetrack18, flip_permutation

# The 15 joints PoseTrack evaluates, in poseval's joint-id order (its `Joint` class).
POSEVAL_JOINTS: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "head_bottom", "nose", "head_top",
)


@dataclass(frozen=True)
class KeypointLayout:
    name: str
    keypoints: tuple[str, ...]
    flip_perm: tuple[int, ...]  # flip_perm[i] = slot whose joint lands in slot i after a flip
    unlabelled_slots: tuple[int, ...] = ()  # slots this layout never labels

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)


def _posetrack_flip() -> tuple[int, ...]:
    perm = flip_permutation(17)
    perm[1], perm[2] = 1, 2  # head_bottom / head_top sit on the midline: no swap
    return tuple(perm)


COCO = KeypointLayout("coco", COCO_KEYPOINTS, tuple(flip_permutation(17)))
POSETRACK18 = KeypointLayout("posetrack18", POSETRACK18_KEYPOINTS, _posetrack_flip(), unlabelled_slots=(3, 4))
LAYOUTS = {layout.name: layout for layout in (COCO, POSETRACK18)}


def convert_keypoints(kps: np.ndarray, src_names, dst: KeypointLayout) -> np.ndarray:
    """A model's keypoints (named src_names) in the slots of layout `dst` (COCO -> PoseTrack18 only)."""
    src = layout_from_names(src_names)
    if src == dst:
        return np.asarray(kps)
    if (src.name, dst.name) == ("coco", "posetrack18"):
        return coco_to_posetrack18(kps)
    raise ValueError(f"cannot score a {src.name}-layout model on {dst.name} data")


def layout_from_names(names) -> KeypointLayout:
    """The layout whose keypoint names equal `names` (a dataset's categories[0]['keypoints'])."""
    names = tuple(names)
    for layout in LAYOUTS.values():
        if names == layout.keypoints:
            return layout
    raise ValueError(f"unknown keypoint layout {list(names)}; expected COCO-17 or PoseTrack18 names")


def coco_as_posetrack18(keypoints):
    """COCO-17 labels -> PoseTrack18 slots: eyes/ears have no PoseTrack joint, so slots 1-4 become
    unlabelled; nose and body joints keep their slots. Lets COCO images train beside PoseTrack."""
    kps = np.array(keypoints, dtype=np.float64, copy=True)
    kps[1:5] = 0.0
    return kps


def same_layout(layouts) -> KeypointLayout:
    """The single layout shared by `layouts`; mixing layouts in one run is an error."""
    layouts = list(layouts)
    if not layouts:
        raise ValueError("no datasets given")
    names = {layout.name for layout in layouts}
    if len(names) > 1:
        raise ValueError(f"datasets mix keypoint layouts {sorted(names)}: slot meanings would conflict")
    return layouts[0]
