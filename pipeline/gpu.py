"""Which TensorRT and which GPU, known without importing tensorrt or initialising CUDA.

dodo.py needs both to decide whether a plan is stale (an engine runs only on the TensorRT version and
compute capability that built it), but the process that loads dodo.py must never touch CUDA: doit
forks its workers from it with `-n N`. So: the TensorRT version from its dist-info, the GPU from
`nvidia-smi` (first visible device), both cached for the process.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess

from .versions import installed

# Where the `tensorrt` module can come from: NVIDIA's meta package, the per-CUDA packages, the bindings.
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt_cu13_bindings", "tensorrt_cu12_bindings", "tensorrt_cu13",
                          "tensorrt_cu12")


def tensorrt_version() -> str | None:
    have = installed()
    for dist in TENSORRT_DISTRIBUTIONS:
        if dist in have:
            return have[dist]
    return None


@functools.lru_cache(maxsize=1)
def gpu() -> dict | None:
    """{'index', 'name', 'compute_capability'} of the first visible NVIDIA GPU, or None."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    cmd = [smi, "--query-gpu=index,name,compute_cap", "--format=csv,noheader"]
    if visible and visible.isdigit():
        cmd.insert(1, f"--id={visible}")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    line = next((ln for ln in out.splitlines() if ln.strip()), "")
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 3:
        return None
    return {"index": int(parts[0]), "name": parts[1], "compute_capability": parts[2]}


def plan_identity() -> dict:
    """What makes a plan stale besides its ONNX and settings."""
    version = tensorrt_version()
    g = gpu() if version else None  # no nvidia-smi call where no plan can be built anyway
    return {"tensorrt": version or "absent", "compute_capability": g["compute_capability"] if g else "no-gpu"}

