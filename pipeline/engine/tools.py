"""Installed tool versions, TensorRT and the GPU, known without importing the tools or initialising CUDA.

dodo.py must not import torch to learn its version, nor touch CUDA: doit forks its `-n N` workers from
the process that loads it.

Distributions are found as Python finds them (importlib.metadata's rule): a `*.dist-info` or
`*.egg-info` folder in any `sys.path` entry — site-packages, a `pip install --target` folder on
PYTHONPATH, the project itself — the first entry holding a name winning. The folder names carry the
normalised name and version (PEP 427/627), so listing the entries is sub-millisecond, unlike
importlib.metadata's scans; only a version-less `.egg-info` is read.
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
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip, a missing folder
            continue
        for name in names:
            stem, dot, kind = name.rpartition(".")
            if kind not in ("dist-info", "egg-info") or not dot:
                continue
            dist, _, version = stem.partition("-")
            version = version.split("-")[0] or _metadata_version(os.path.join(entry or ".", name))
            found.setdefault(normalise(dist), version)
    return found


def _metadata_version(folder: str) -> str:
    """The Version: line of a metadata folder whose name carries none (an egg-info from `setup.py develop`)."""
    for leaf in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(folder, leaf), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
                    if not line.strip():
                        break
        except OSError:
            continue
    return "unknown"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


# Where the `tensorrt` module can come from: NVIDIA's meta package, the per-CUDA packages, the bindings.
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt_cu13_bindings", "tensorrt_cu12_bindings", "tensorrt_cu13",
                          "tensorrt_cu12")


def tensorrt_version() -> str | None:
    """From pip metadata, else (system packages, NGC containers) from the `__version__` line of the
    package's own __init__.py on sys.path — read as text, never imported: dodo.py must not load CUDA."""
    have = installed()
    for dist in TENSORRT_DISTRIBUTIONS:
        if dist in have:
            return have[dist]
    return _tensorrt_version_from_source()


@functools.lru_cache(maxsize=1)
def _tensorrt_version_from_source() -> str | None:
    for entry in sys.path:
        for package in ("tensorrt", "tensorrt_bindings"):
            init = os.path.join(entry or ".", package, "__init__.py")
            if os.path.isfile(init):
                try:
                    with open(init, encoding="utf-8", errors="replace") as f:
                        found = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', f.read(), re.M)
                except OSError:
                    continue
                if found:
                    return found.group(1)
    return None


def dali_version() -> str | None:
    """NVIDIA DALI's version from pip metadata (its wheels are named per CUDA: nvidia-dali-cuda130, ...)."""
    return next((v for dist, v in installed().items() if dist.startswith("nvidia_dali")), None)


class NoVisibleGpu(Exception):
    """Why no GPU can build a plan here (a sentence for the user)."""


def visible_gpu() -> dict:
    """{'index', 'uuid', 'name', 'compute_capability'} of the GPU a CUDA process started here will use as
    device 0, or NoVisibleGpu saying why none. Honours CUDA_VISIBLE_DEVICES given as indices (PCI bus
    order: the plan builder sets CUDA_DEVICE_ORDER=PCI_BUS_ID, the order nvidia-smi numbers in), GPU
    UUIDs (or unique prefixes) and MIG UUIDs (the GPU that holds the instance)."""
    found = _visible_gpu()
    if isinstance(found, str):
        raise NoVisibleGpu(found)
    return found


def gpu() -> dict | None:
    try:
        return visible_gpu()
    except NoVisibleGpu:
        return None


@functools.lru_cache(maxsize=1)
def _visible_gpu() -> dict | str:
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = raw.split(",")[0].strip() if raw is not None else "0"
    if raw is not None and (not first or first.startswith("-")):
        return (f"CUDA_VISIBLE_DEVICES is {raw!r}, which hides every GPU; unset it or name the GPU to build on "
                "(an index, a GPU-... UUID or a MIG-... UUID)")
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "nvidia-smi is not on PATH, so no NVIDIA GPU (or driver) is visible"
    try:
        out = subprocess.run([smi, "--query-gpu=index,uuid,name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi failed ({e})"
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            gpus.append({"index": int(parts[0]), "uuid": parts[1], "name": parts[2], "compute_capability": parts[3]})
    if not gpus:
        return "nvidia-smi lists no GPU"
    if first.isdigit():
        n = int(first)
        return gpus[n] if n < len(gpus) else f"CUDA_VISIBLE_DEVICES names GPU {n}, but nvidia-smi lists {len(gpus)}"
    if first.startswith("MIG-"):
        parent = _mig_parent(smi, first)
        first = parent or first
    matches = [g for g in gpus if g["uuid"].startswith(first)]
    if len(matches) == 1:
        return matches[0]
    return f"CUDA_VISIBLE_DEVICES={raw!r} matches {len(matches)} of the GPUs nvidia-smi lists (by UUID)"


def _mig_parent(smi: str, mig: str) -> str | None:
    """The UUID of the GPU holding MIG instance `mig`, from `nvidia-smi -L`."""
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    parent = None
    for line in out.splitlines():
        gpu_uuid = re.search(r"^GPU \d+:.*\(UUID: (GPU-[^)]+)\)", line)
        if gpu_uuid:
            parent = gpu_uuid.group(1)
        elif mig in line:
            return parent
    return None


def plan_identity() -> dict:
    """What makes a plan stale besides its ONNX and settings: the TensorRT version, and the GPU model
    (an engine runs only on the GPU generation that built it; the timing cache is per GPU model)."""
    version = tensorrt_version()
    g = gpu() if version else None  # no nvidia-smi call where no plan can be built anyway
    return {"tensorrt": version or "absent", "compute_capability": g["compute_capability"] if g else "no-gpu",
            "gpu": g["name"] if g else "no-gpu"}
