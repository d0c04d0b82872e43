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
# On a machine with more cores: e.g. BENCH_MODELS=4,8 BENCH_WORKERS=1,2,4,8
MODELS = [int(v) for v in os.environ.get("BENCH_MODELS", "2,4").split(",")]
WORKERS = [int(v) for v in os.environ.get("BENCH_WORKERS", "1,2,4").split(",")]


def main() -> None:
    from pipeline.families.ultralytics import configure
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

    build(1, 1)  # warm-up, not timed: bytecode compilation, the code-dependency memo, the page cache
    print(f"{cores} cores; times in seconds (median of {REPEAT}); "
          "'unshared': -n 2 with every worker on every core, as before the split")
    print("models  " + "".join(f"-n {w:<5d}" for w in WORKERS) + "-n 2 unshared  best speed-up vs -n 1")
    for models in MODELS:
        times = {w: [] for w in [*WORKERS, "2u"]}
        for _ in range(REPEAT):
            for w in times:
                times[w].append(build(models, 2, True) if w == "2u" else build(models, w))
        med = {w: statistics.median(t) for w, t in times.items()}
        best = min(WORKERS, key=lambda w: med[w])
        print(f"{models:6d}  " + "".join(f"{med[w]:<8.1f}" for w in WORKERS) + f"{med['2u']:<14.1f}"
              + f"{med[1] / med[best]:.2f}x (-n {best})")


if __name__ == "__main__":
    main()
