"""GPU targets of TensorRT plans: an engine runs only on the compute capability (and is tuned for the GPU
model) that built it, and loads only in a Triton with the TensorRT that built it.

Which host builds which target (`gpu_targets` in the manifest), what to tell a host that cannot, and
whether the installed TensorRT is the serving Triton's. Reads nvidia-smi and package metadata, never
imports TensorRT.
"""
from __future__ import annotations

import sys

from ..engine.errors import UserError
from ..engine.tools import gpu, tensorrt_version
from . import triton_releases


def not_the_target(device: dict, want: dict) -> str | None:
    """Why this GPU cannot build the plan of GPU target `want` ({"cc", "gpu"}), or None."""
    if device["compute_capability"] != want["cc"]:
        return f"this host's GPU is {device['name']} (compute capability {device['compute_capability']})"
    if want["gpu"] and device["name"] != want["gpu"]:
        return f"this host's GPU is {device['name']}, and the manifest pins {want['cc']} to {want['gpu']}"
    return None


def where_to_build(want: dict, target: dict) -> str:
    """'a GPU host with compute capability 8.6 (NVIDIA A10) and TensorRT 10.7.0'."""
    gpu_model = f" ({want['gpu']})" if want["gpu"] else ""
    engine = ".".join(map(str, triton_releases.engine_version(target["tensorrt"])))
    return f"a GPU host with compute capability {want['cc']}{gpu_model} and TensorRT {engine}"


def buildable_here(params: dict) -> str | None:
    """The runner asks before building a GPU target's plan (after the cache had none): None when this
    host's GPU is the target's, else why not and where to build it. Reads no more than nvidia-smi."""
    want = params["gpu_target"]
    if want is None:
        return None
    where = where_to_build(want, params["triton_target"])
    if tensorrt_version() is None:
        return f"TensorRT is not installed here; build it on {where}"
    device = gpu()
    if device is None:
        return f"no GPU is visible here; build it on {where}"
    why = not_the_target(device, want)
    return f"{why}; build it on {where}" if why else None


def check_target(installed: str, target: dict | None, key: str, task: str) -> dict:
    """A plan loads only in a Triton whose TensorRT is the one that built it: refuse a mismatch before
    building; without a target (manifest `triton:`), build and say which Triton the plan is for."""
    ours = triton_releases.engine_version(installed)
    if target is None:
        known = [r for r, row in triton_releases.TABLE.items() if triton_releases.engine_version(row[1]) == ours]
        where = f"Triton {', '.join(known)}" if known else "a Triton release whose TensorRT is that version"
        notice = (f"notice: {task}: built with TensorRT {installed}; the plan loads only in {where}. Set "
                  "'triton:' in the manifest to have the installed TensorRT checked against your server's")
        sys.stderr.write(notice + "\n")
        return {"triton": None, "tensorrt": installed, "checked": False, "notice": notice}
    if triton_releases.engine_version(target["tensorrt"]) != ours:
        serving = f"Triton {target['triton']} (the manifest's triton) ships" if target["triton"] else \
            "the manifest's tensorrt names"
        raise UserError(f"TensorRT {installed} is installed, but {serving} TensorRT {target['tensorrt']}: a plan built "
                        "here would not load in that server", key=f"{key}.triton",
                        fix=f"install the matching TensorRT (pip install \"{triton_releases.pip_spec(target['tensorrt'])}"
                            "\"), or build on a host or NGC container that has it, or set triton to the release you "
                            "serve with")
    return {**target, "checked": True}
