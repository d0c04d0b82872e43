"""Installed tool versions, TensorRT and the GPU, known without importing the tools or initialising CUDA.

dodo.py must not import torch to learn its version, nor touch CUDA: doit forks its `-n N` workers from
the process that loads it.

`*.dist-info` folder names carry the normalised name and version (PEP 427/627); listing the
site-packages folders is sub-millisecond, unlike importlib.metadata's scans.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys


@functools.lru_cache(maxsize=1)
def installed() -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in sys.path:
        if not entry.endswith(("site-packages", "dist-packages")) or not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            if name.endswith(".dist-info"):
                dist, _, version = name[: -len(".dist-info")].partition("-")
                found.setdefault(normalise(dist), version)
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


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

