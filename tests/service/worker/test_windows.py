from __future__ import annotations

import numpy as np
import pytest

from model.backbones import InputSpec
from service.worker.boxes import PersonBox
from service.worker.pipeline import run_windows, to_instance
from service.worker.windows import WindowBuilder, clamp_window

SPEC = InputSpec((32, 24), (127.5,) * 3, (127.5,) * 3)


def test_clamp_window_at_clip_ends():
    n = 10
    present = lambda f: 0 <= f < n
    assert clamp_window(0, 2, present) == [0, 0, 0, 1, 2]
    assert clamp_window(1, 2, present) == [0, 0, 1, 2, 3]
    assert clamp_window(5, 2, present) == [3, 4, 5, 6, 7]
    assert clamp_window(9, 2, present) == [7, 8, 9, 9, 9]
    assert clamp_window(0, 2, lambda f: f == 0) == [0, 0, 0, 0, 0]


def test_clamp_window_stays_in_the_tracks_run():
    # Track present in frames 3..6 and 9..: a window never jumps over the gap.
    present = lambda f: 3 <= f <= 6 or f >= 9
    assert clamp_window(6, 2, present) == [4, 5, 6, 6, 6]
    assert clamp_window(9, 2, present) == [9, 9, 9, 10, 11]
    assert clamp_window(3, 1, present) == [3, 3, 4]


def _frame(h=40, w=60, value=0):
    return np.full((h, w, 3), value, np.uint8)


def _feed(builder, boxes_per_frame, h=40, w=60):
    windows = []
    for i, boxes in enumerate(boxes_per_frame):
        windows += builder.add_frame(i, _frame(h, w, i), boxes)
    windows += builder.finish()
    return windows


def test_windows_per_track_with_enter_and_leave():
    a = lambda: PersonBox(1, (5, 5, 20, 30))
    b = lambda: PersonBox(2, (30, 5, 20, 30))
    # track 1 in every frame; track 2 enters at frame 2 and leaves after frame 4
    frames = [[a()], [a()], [a(), b()], [a(), b()], [a(), b()], [a()], [a()]]
    builder = WindowBuilder("job", 5, SPEC)
    windows = _feed(builder, frames)
    by = {(w.track_id, w.key_frame): w.frames for w in windows}
    assert sorted(by) == [(1, t) for t in range(7)] + [(2, 2), (2, 3), (2, 4)]
    assert by[(1, 0)] == (0, 0, 0, 1, 2)
    assert by[(1, 6)] == (4, 5, 6, 6, 6)
    assert by[(2, 2)] == (2, 2, 2, 3, 4)  # entering: clamped, not dropped
    assert by[(2, 4)] == (2, 3, 4, 4, 4)  # leaving
    # each frame's crop uses THAT frame's box: the ref of frame f carries frame f's box
    for w in windows:
        assert all(r.frame == f for r, f in zip(w.refs, w.frames, strict=True))
        assert len({r.track_id for r in w.refs}) == 1
    assert builder.crops_made == 10


def test_windows_come_out_streaming():
    builder = WindowBuilder("job", 5, SPEC)
    box = [PersonBox(0, (0, 0, 60, 40))]
    out = [len(builder.add_frame(i, _frame(), box)) for i in range(6)]
    assert out == [0, 0, 1, 1, 1, 1]  # key t is ready once frame t+2 is in
    assert len(builder.finish()) == 2


def test_refs_freed_after_release_and_memory_bounded():
    builder = WindowBuilder("job", 5, SPEC)
    box = [PersonBox(0, (0, 0, 60, 40))]
    peak = 0
    total = 0
    for i in range(50):
        for w in builder.add_frame(i, _frame(), box):
            builder.release(w)  # as the scheduler does once a window is done
            total += 1
        peak = max(peak, builder.live_refs())
    for w in builder.finish():
        builder.release(w)
        total += 1
    assert total == 50
    assert peak <= 5  # only the frames a future window can still reach stay alive
    assert builder.live_refs() == 0


def test_each_frame_track_encoded_once(engine):
    """Feature reuse: every (frame, track) crop goes through the backbone exactly once, even when
    its windows land in different batches."""
    builder = WindowBuilder("job", engine.window, engine.input_spec)
    boxes = [PersonBox(0, (0, 0, 30, 40)), PersonBox(5, (30, 0, 30, 40))]
    pending, all_windows, batches = [], [], 0
    calls = []
    orig = engine.encode
    engine.encode = lambda crops: calls.append(len(crops)) or orig(crops)
    try:
        for i in range(12):
            pending += builder.add_frame(i, _frame(value=i * 10), boxes)
            while len(pending) >= 3:  # small batches so windows sharing a frame run apart
                batch, pending = pending[:3], pending[3:]
                kps = run_windows(engine, batch)
                assert kps.shape == (3, 17, 4) and np.isfinite(kps[..., :3]).all()
                for w in batch:
                    builder.release(w)
                all_windows += batch
                batches += 1
        pending += builder.finish()
        run_windows(engine, pending)
        all_windows += pending
    finally:
        del engine.encode
    assert len(all_windows) == 24 and batches >= 6
    refs = {id(r): r for w in all_windows for r in w.refs}
    assert len(refs) == 24  # 12 frames x 2 tracks
    assert all(r.encodes == 1 for r in refs.values())
    assert sum(calls) == 24  # the backbone saw 24 crops, not 24 windows x 5 frames


def _three_windows(engine) -> list:
    """One person (track 3) in three plain frames: its three windows."""
    builder = WindowBuilder("job", engine.window, engine.input_spec)
    box = PersonBox(3, (10, 5, 40, 30), score=0.5)
    windows = []
    for i in range(3):
        windows += builder.add_frame(i, _frame(value=100), [box])
    return windows + builder.finish()


def test_to_instance_inside_frame(engine):
    windows = _three_windows(engine)
    kps = run_windows(engine, windows)
    for w, k in zip(windows, kps, strict=True):
        inst = to_instance(w, k, engine, width=60, height=40)
        assert inst["track_id"] == 3 and inst["bbox"] == [10.0, 5.0, 40.0, 30.0]
        pts = np.array(inst["keypoints"])
        assert pts.shape == (17, 3) and np.isfinite(pts).all()
        assert (pts[:, 0] >= 0).all() and (pts[:, 0] <= 59).all()
        assert (pts[:, 1] >= 0).all() and (pts[:, 1] <= 39).all()


def test_even_window_rejected():
    with pytest.raises(ValueError):
        WindowBuilder("job", 4, SPEC)


def test_keypoint_std_only_when_the_job_draws_several_hypotheses(engine):
    from service.contract import Instance
    from service.worker.engine import DecodeOptions

    windows = _three_windows(engine)
    assert engine.cfg.diffusion
    several = run_windows(engine, windows, DecodeOptions(1, 3))
    one = run_windows(engine, windows, DecodeOptions(1, 1))
    assert several.shape == (3, 17, 4) and np.isnan(one[..., 3]).all()
    np.testing.assert_array_equal(several[..., :3], one[..., :3])  # untrained diffusion: same keypoints
    inst = to_instance(windows[0], several[0], engine, width=60, height=40)
    std = np.array(Instance(**inst).keypoint_std)
    assert std.shape == (17,) and (std >= 0).all()
    assert to_instance(windows[0], one[0], engine, width=60, height=40)["keypoint_std"] is None


def _moving_person(n=7, jump_at=None):
    """One track whose box moves 4 px right per frame; at frame `jump_at` it jumps 20 px further (the
    detector's box slid onto something else for one frame)."""
    return [[PersonBox(0, (4.0 * i + (20.0 if i == jump_at else 0.0), 2.0, 20.0, 30.0), score=0.9)]
            for i in range(n)]


def test_builder_cuts_the_recrop_only_where_both_outermost_neighbours_are_there():
    from model.heatmaps import box_to_center_size, crop_affine, warp_crop

    builder = WindowBuilder("job", 5, SPEC, recrop=True)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 60, 3), dtype=np.uint8) for _ in range(7)]
    windows = []
    for i, boxes in enumerate(_moving_person()):
        windows += builder.add_frame(i, images[i], boxes)
    windows += builder.finish()
    with_alt = {w.key_frame: w.alt for w in windows if w.alt is not None}
    assert sorted(with_alt) == [2, 3, 4]  # 0, 1, 5, 6 are clamped at the clip's ends
    for key, alt in with_alt.items():
        assert alt.bbox == (4.0 * key, 2.0, 20.0, 30.0)  # the mean of key-2 and key+2: linear motion
        center, size = box_to_center_size(alt.bbox, SPEC.size)
        np.testing.assert_array_equal(alt.crop, warp_crop(images[key], crop_affine(center, size, SPEC.size),
                                                          SPEC.size))
    assert not builder._images  # frames are let go once their key windows are out
    plain = _feed(WindowBuilder("job", 5, SPEC), _moving_person())
    assert all(w.alt is None for w in plain)
    assert all(w.alt is None for w in _feed(WindowBuilder("job", 1, SPEC, recrop=True), _moving_person()))


def test_run_windows_decodes_the_recrop_where_the_key_frames_confidence_drops(engine, monkeypatch):
    import torch

    from model.heatmaps import heatmap_to_image
    from service.worker.pipeline import window_seed

    monkeypatch.setattr(engine, "cfg", engine.cfg.replace(recrop_drop=0.8))
    assert engine.recrop_drop == 0.8

    def build():
        builder = WindowBuilder("job", engine.window, engine.input_spec, recrop=True)
        windows = []
        for i, boxes in enumerate(_moving_person(jump_at=3)):
            windows += builder.add_frame(i, _frame(value=30 * i), boxes)
        return windows + builder.finish()

    # The engine computes every candidate's confidences itself (once per crop) ...
    windows = build()
    run_windows(engine, windows)
    for w in windows:
        if w.alt is not None:
            assert all(0.0 <= r.confidence <= 1.0 for r in (w.refs[0], w.key_ref, w.refs[-1]))
    # ... and a drop at frame 3 (neighbours 1 and 5 sure) sends only key 3 through its re-crop.
    windows = build()
    for w in windows:
        for r in w.refs:
            r.confidence = 0.1 if r.frame == 3 else 0.9
    plain = run_windows(engine, build())  # confidences from the model: 1/17-joint noise, no drop
    out = run_windows(engine, windows)
    assert [w.key_frame for w in windows if w.recropped] == [3]
    i = next(i for i, w in enumerate(windows) if w.recropped)
    feats = torch.stack([r.features for r in windows[i].refs])[None].clone()
    feats[0, 2] = engine.encode(torch.from_numpy(engine.input_spec.normalize(windows[i].alt.crop))[None])[0]
    want = engine.decode(feats, seeds=[window_seed(windows[i])], with_spread=True)[0]
    np.testing.assert_allclose(out[i], want, rtol=1e-5, atol=1e-5)
    others = [j for j in range(len(windows)) if j != i]
    np.testing.assert_allclose(out[others], plain[others], rtol=1e-5, atol=1e-5)
    # the re-crop's keypoints go back to the image through the re-crop's box
    inst = to_instance(windows[i], out[i], engine, width=60, height=40)
    alt = windows[i].alt
    assert inst["bbox"] == list(alt.bbox) != list(windows[i].key_ref.box.bbox)
    pts = heatmap_to_image(out[i][:, :3], alt.center, alt.size, engine.input_size, engine.heatmap_size)
    np.testing.assert_allclose(np.array(inst["keypoints"])[:, :2],
                               np.clip(pts[:, :2], 0, [59, 39]), atol=0.006)  # results keep 2 decimals
