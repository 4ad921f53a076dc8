"""Check the MoveNet ONNX files against the TF.js parity fixture and time them in onnxruntime.

Needs only numpy, opencv and onnxruntime (no TensorFlow), so it runs in the project venv too:
    PYTHONDONTWRITEBYTECODE=1 .venv/bin/python tools/onnx_reference/verify_onnx.py \
        [--onnx-dir DIR] [--runs 30]
"""
import argparse
import json
import os
import statistics
import time

import cv2
import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "..", "tests", "fixtures", "movenet_parity")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx-dir", default="/work/cache/onnx")
    ap.add_argument("--fixture", default=FIXTURE)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", default="1,2")
    a = ap.parse_args()
    exp = json.load(open(os.path.join(a.fixture, "expected.json")))
    print(f"onnxruntime {ort.__version__}, numpy {np.__version__}, load {os.getloadavg()}")
    for name, m in exp["models"].items():
        path = os.path.join(a.onnx_dir, name + ".onnx")
        crops = []
        for c in m["crops"]:
            rgb = cv2.cvtColor(cv2.imread(os.path.join(a.fixture, c["png"])), cv2.COLOR_BGR2RGB)
            crops.append((c["png"], rgb[None].astype(np.int32), np.asarray(c["keypoints"], np.float32)))
        for nt in [int(t) for t in a.threads.split(",")]:
            so = ort.SessionOptions()
            so.intra_op_num_threads = nt
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0]
            out = sess.get_outputs()[0]
            worst, worst_xy, worst_s = 0.0, 0.0, 0.0
            times = []
            for _png, x, ref in crops:
                y = sess.run([out.name], {inp.name: x})[0].reshape(17, 3)
                d = np.abs(y - ref)
                worst = max(worst, d.max())
                worst_xy, worst_s = max(worst_xy, d[:, :2].max()), max(worst_s, d[:, 2].max())
                for _ in range(3):  # warm-up
                    sess.run([out.name], {inp.name: x})
                for _ in range(a.runs):
                    t0 = time.perf_counter()
                    sess.run([out.name], {inp.name: x})
                    times.append((time.perf_counter() - t0) * 1e3)
            print(f"{name:18s} threads={nt}  input {inp.name} {inp.type} {inp.shape}  "
                  f"max|diff| vs TF.js = {worst:.3g} (y/x {worst_xy:.3g}, score {worst_s:.3g})  "
                  f"latency median {statistics.median(times):.2f} ms (p10 {np.percentile(times, 10):.2f}, "
                  f"p90 {np.percentile(times, 90):.2f}, n={len(times)})")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
