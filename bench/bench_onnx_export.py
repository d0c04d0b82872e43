"""`doit onnx:<name>` vs `yolo export format=onnx` on the same yolo11s .pt: wall time and equal outputs.

Both run as fresh processes (imports included), same machine, same run. Ours includes inspecting the
checkpoint, the PyTorch-vs-onnxruntime check, config.pbtxt and labels.txt; Ultralytics' includes none.
The .pt is yolo11s from its architecture YAML (random weights: no download here).
"""
from __future__ import annotations

import os
import shutil
import sys

from _common import DOIT, REPO, run, scratch_project

sys.path.insert(0, str(REPO))


def main() -> None:
    from pipeline.families.ultralytics import configure
    configure()
    import numpy as np
    import onnxruntime as ort
    from ultralytics import YOLO

    proj = scratch_project()
    pt = proj / "yolo11s_bench.pt"
    YOLO("yolo11s.yaml").save(str(pt))
    ours_t = run(DOIT + [f"custom={pt}:bench_s", "onnx:bench_s"], proj)

    theirs_dir = proj / "theirs"
    theirs_dir.mkdir()
    shutil.copy(pt, theirs_dir / "yolo11s_bench.pt")
    yolo_cli = str(REPO / ".venv/bin/yolo") if (REPO / ".venv/bin/yolo").exists() else shutil.which("yolo")
    theirs_t = run([yolo_cli, "export", "model=yolo11s_bench.pt", "format=onnx", "dynamic=True", "opset=17",
                    "simplify=False"], theirs_dir)

    x = np.random.default_rng(0).random((2, 3, 640, 640), dtype=np.float32)
    a = ort.InferenceSession(str(proj / "models/bench_s/1/model.onnx")).run(None, {"images": x})[0]
    b = ort.InferenceSession(str(theirs_dir / "yolo11s_bench.onnx")).run(None, {"images": x})[0]
    # In-process, imports warm, second of two runs each: the export work itself.
    import time

    import torch

    from pipeline.builders.raw_onnx import export
    from pipeline.engine.context import StepContext
    from pipeline.families.ultralytics import RAW_GRAPH
    from pipeline.families.yolo11 import FAMILY as yolo
    from pipeline.tooling import onnx_tools
    import json
    rec = json.loads((proj / "pytorch_models/bench_s.checkpoint.json").read_text())
    warm = {}
    for _ in range(2):
        out = proj / "inproc.onnx"
        ctx = StepContext(task="bench", inputs={"checkpoint": pt}, outputs={"onnx": out}, tmp={out: out},
                          params={"imgsz": 640, "opset": 17, "untrained": False, "head": "anchors",
                                  "trust_checkpoint": False}, key="bench", uses={"family": "pipeline.families.yolo11:FAMILY"})
        t = time.perf_counter(); export(ctx); warm["ours"] = time.perf_counter() - t
        t = time.perf_counter()
        ready, dims, meta = yolo.export_ready(yolo.load(pt, "bench"), 640)
        onnx_tools.export_torch(ready, (torch.zeros(1, 3, 640, 640),), RAW_GRAPH, out, opset=17,
                                fixed_dims={"output0": dims}, metadata=meta)
        warm["ours_export_only"] = time.perf_counter() - t
        t = time.perf_counter()
        YOLO(str(theirs_dir / "yolo11s_bench.pt")).export(format="onnx", dynamic=True, opset=17, simplify=False)
        warm["theirs"] = time.perf_counter() - t
    assert rec["verification"]["num_classes"] == 80

    print("fresh processes (interpreter + torch/ultralytics imports included):")
    print(f"doit onnx:bench_s (export + verify + config + labels) {ours_t:6.2f} s")
    print(f"yolo export format=onnx dynamic opset17              {theirs_t:6.2f} s")
    print(f"ratio ours/theirs {ours_t / theirs_t:.2f}x (goal <= 0.5x); outputs {a.shape} vs {b.shape}, "
          f"max |diff| {np.abs(a - b).max():.3g}")
    print("in-process, imports warm (export work only):")
    print(f"ours: export + PyTorch-vs-onnxruntime check {warm['ours']:6.2f} s; "
          f"Model.export(format='onnx') {warm['theirs']:6.2f} s; ratio {warm['ours'] / warm['theirs']:.2f}x")
    print(f"ours without the check (load + export_torch) {warm['ours_export_only']:6.2f} s; "
          f"ratio {warm['ours_export_only'] / warm['theirs']:.2f}x (goal <= 0.5x)")


if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")
    main()
