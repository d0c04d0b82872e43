"""Shared by the bench scripts: a throw-away copy of the project and a wall-clock timer."""
from __future__ import annotations

import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# A bench that imports Ultralytics (to make a checkpoint) gets OMP_NUM_THREADS=1 set in its own process; the
# commands it times get the environment the user started it with.
_USER_OMP = os.environ.get("OMP_NUM_THREADS")
COPIED = ("dodo.py", "pipeline", "manifests", "models/README.md", "pytorch_models/README.md", "pyproject.toml")


def scratch_project() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="bench-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # up to ~2 GB of builds; never left behind
    root = scratch / "proj"
    for rel in COPIED:
        src, dst = REPO / rel, root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    return root


def user_env() -> dict:
    env = dict(os.environ)
    if "ultralytics" in sys.modules and env.get("OMP_NUM_THREADS") == "1" and _USER_OMP != "1":
        del env["OMP_NUM_THREADS"]  # Ultralytics' own default, not a setting of this bench
        if _USER_OMP is not None:
            env["OMP_NUM_THREADS"] = _USER_OMP
    return env


def run(cmd: list[str], cwd: Path, check: bool = True) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=user_env())
    dt = time.perf_counter() - t
    if check and p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    return dt


def run_out(cmd: list[str], cwd: Path) -> str:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=user_env(), check=True)
    return p.stdout


def median_time(cmd: list[str], cwd: Path, repeat: int = 7) -> float:
    run(cmd, cwd)  # warm the page cache
    return statistics.median(run(cmd, cwd) for _ in range(repeat))


def interleaved(a: tuple[list[str], Path], b: tuple[list[str], Path], repeat: int = 21) -> tuple[float, float]:
    """Medians of two commands run alternately, so that both see the same background load."""
    run(*a), run(*b)
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(run(*a))
        tb.append(run(*b))
    return statistics.median(ta), statistics.median(tb)


DOIT = [sys.executable, "-m", "doit"]
