"""The full ONNX artifact set of one model vs Ultralytics' nearest commands, fresh processes, one run.

Ours: `doit custom=s.pt:s onnx:s onnx_end2end:s` from cold (no state, no artifact cache): inspect the
checkpoint, raw ONNX checked against PyTorch, End2End ONNX checked against the NMS reference and by
plain onnxruntime, both config.pbtxt and labels.txt. Theirs: `yolo export format=onnx dynamic=True
opset=17` plus the same with `nms=True` (no checks against the source model, no Triton files).
The .pt is yolo11s from its architecture YAML (random weights: no download here). Medians of
alternating runs, so both sides see the same background load.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys

from _common import DOIT, REPO, run, scratch_project

sys.path.insert(0, str(REPO))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))


def main() -> None:
    from pipeline.families.ultralytics import configure
    configure()
    from ultralytics import YOLO

    proj = scratch_project()
    pt = proj / "s.pt"
    YOLO("yolo11s.yaml").save(str(pt))
    theirs_dir = proj / "theirs"
    theirs_dir.mkdir()
    shutil.copy(pt, theirs_dir / "s.pt")
    yolo_cli = str(REPO / ".venv/bin/yolo") if (REPO / ".venv/bin/yolo").exists() else shutil.which("yolo")
    os.environ["PIPELINE_CACHE"] = "off"

    def ours() -> float:
        for p in [proj / ".doit.json", *proj.glob("models/s*"), *proj.glob("pytorch_models/s.*")]:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        return run(DOIT + [f"custom={pt}:s", "onnx:s", "onnx_end2end:s"], proj)

    def theirs() -> tuple[float, float]:
        base = ["export", "model=s.pt", "format=onnx", "dynamic=True", "opset=17"]
        return run([yolo_cli, *base], theirs_dir), run([yolo_cli, *base, "nms=True"], theirs_dir)

    ours(), theirs()  # warm the page cache
    a, b = [], []
    for _ in range(REPEAT):
        a.append(ours())
        b.append(theirs())
    o = statistics.median(a)
    t1, t2 = statistics.median(x for x, _ in b), statistics.median(y for _, y in b)
    print(f"doit onnx:s onnx_end2end:s (cold, every check)          {o:6.2f} s   runs {[round(x, 2) for x in a]}")
    print(f"yolo export format=onnx dynamic=True opset=17           {t1:6.2f} s")
    print(f"yolo export ... nms=True                                {t2:6.2f} s")
    print(f"ratio ours / theirs (both commands) {o / (t1 + t2):.2f}x  (goal <= 0.5x)")


if __name__ == "__main__":
    main()
