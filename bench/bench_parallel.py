"""`doit -n N` vs `-n 1`: cold builds of several models (raw + End2End ONNX, every check), one run.

Each worker gets cores // N threads for torch and onnxruntime (pipeline/engine/threads.py); before that,
every worker took every core and `-n 2` was no faster than `-n 1` ("-n 2 unshared" re-creates that). Models alternate yolo11n / yolo11s
from their architectures (random weights), artifact cache off; medians of alternating runs.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys

from _common import DOIT, REPO, run, scratch_project

sys.path.insert(0, str(REPO))
REPEAT = int(os.environ.get("BENCH_REPEAT", "2"))


def main() -> None:
    from pipeline.families.yolo import configure
    configure()
    from ultralytics import YOLO

    proj = scratch_project()
    for arch in ("yolo11n", "yolo11s"):
        YOLO(f"{arch}.yaml").save(str(proj / f"{arch}.pt"))
    os.environ["PIPELINE_CACHE"] = "off"
    cores = len(os.sched_getaffinity(0))

    def build(models: int, workers: int, all_cores_each: bool = False) -> float:
        for p in [proj / ".doit.json", *proj.glob("models/m*"), *proj.glob("pytorch_models/m*")]:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        entries = "".join(f"  m{i}: {{pt_file: ../{('yolo11n', 'yolo11s')[i % 2]}.pt, triton_name: m{i}}}\n"
                          for i in range(models))
        (proj / "manifests/par.yaml").write_text("defaults: {formats: [onnx, onnx_end2end]}\nmodels:\n" + entries)
        saved = dict(os.environ)
        if all_cores_each:  # what -n N did before: every worker's torch and onnxruntime on every core
            os.environ.update(PIPELINE_THREADS=str(cores), OMP_NUM_THREADS=str(cores))
        try:
            return run(DOIT + ["-n", str(workers), "manifest=manifests/par.yaml"], proj)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    print(f"{cores} cores; times in seconds (median of {REPEAT})")
    print("models  -n 1    -n 2    -n 4    -n 2 unshared  speed-up -n 2 vs -n 1")
    for models in (2, 4):
        times = {w: [] for w in (1, 2, 4, "2u")}
        for _ in range(REPEAT):
            for w in times:
                times[w].append(build(models, 2, True) if w == "2u" else build(models, w))
        med = {w: statistics.median(t) for w, t in times.items()}
        print(f"{models:6d}  {med[1]:6.1f}  {med[2]:6.1f}  {med[4]:6.1f}  {med['2u']:12.1f}  {med[1] / med[2]:.2f}x")


if __name__ == "__main__":
    main()
