"""A STAND-IN `tensorrt` module for orchestration tests — not TensorRT, and nothing built with it is a plan.

Installed per release from the real bindings' name list (tests/data/tensorrt-api/tensorrt-VERSION.names,
made from NVIDIA's public wheels by the script beside them): any attribute the pipeline or Polygraphy
touches that the release does not have raises AttributeError, as the real module would
(standin_tensorrt.py is the module), and a stand-in `nvidia-smi` lists the GPUs a test wants.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

NAMES = Path(__file__).resolve().parents[1] / "data" / "tensorrt-api"
RELEASES = ("10.13.3.9", "10.16.1.11", "11.4.0.106")
PLAN_BYTES = b"STAND-IN PLAN: not a TensorRT engine\n"


def plan_bytes(gpu_name: str = "NVIDIA H200 (stand-in)", cc: str = "9.0") -> bytes:
    """What the stand-in's build_serialized_network returns on a host whose (first) GPU is this one: plans
    of different GPU targets differ, like real engines."""
    return PLAN_BYTES + f"for {gpu_name}, compute capability {cc}\n".encode()

MODULE = Path(__file__).with_name("standin_tensorrt.py")  # the module's text, below a header of constants


SMI = r'''#!{python}
"""Stand-in nvidia-smi: the two queries the pipeline makes, answered like the real one."""
import sys
GPUS = {gpus!r}
MIGS = {migs!r}
if "-L" in sys.argv:
    for i, (name, cc, uuid) in enumerate(GPUS):
        print(f"GPU {{i}}: {{name}} (UUID: {{uuid}})")
        for parent, mig in MIGS:
            if parent == uuid:
                print(f"  MIG 1g.18gb     Device  0: (UUID: {{mig}})")
elif any(a.startswith("--query-gpu=index,uuid,name,compute_cap") for a in sys.argv):
    for i, (name, cc, uuid) in enumerate(GPUS):
        print(f"{{i}}, {{uuid}}, {{name}}, {{cc}}")
else:
    sys.exit(f"stand-in nvidia-smi: unexpected arguments {{sys.argv[1:]}}")
'''


def install(site: Path, version: str, cc: str = "9.0", gpu_name: str = "NVIDIA H200 (stand-in)",
            gpus: list[tuple[str, str, str]] | None = None, migs: list[tuple[str, str]] = (),
            metadata: bool = True) -> dict:
    """A site-packages folder with the stand-in `tensorrt` (+ dist-info unless metadata=False, as system
    packages install it) and a bin folder with nvidia-smi listing `gpus` [(name, cc, uuid)]."""
    names = NAMES / f"tensorrt-{version}.names"
    pkg = site / "tensorrt"
    pkg.mkdir(parents=True, exist_ok=True)
    gpus = gpus or [(gpu_name, cc, "GPU-5ea7d1e0-0000-4000-8000-000000000000")]
    plan = plan_bytes(gpus[0][0], gpus[0][1])
    # the version as the real package writes it: a literal line, which the pipeline reads without importing
    header = f"__version__ = \"{version}\"\n_NAMES_FILE = {str(names)!r}\n_PLAN = {plan!r}\n"
    (pkg / "__init__.py").write_text(header + MODULE.read_text())
    for old in site.glob("tensorrt-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    if metadata:
        info = site / f"tensorrt-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tensorrt\nVersion: {version}\n")
    bin_dir = site.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(SMI.format(python=sys.executable, gpus=list(gpus), migs=list(migs)))
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    return {"PYTHONPATH": str(site), "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def release_names(version: str) -> set[str]:
    return set((NAMES / f"tensorrt-{version}.names").read_text().split())


def known(name: str, names: set[str]) -> bool:
    return name in names or any(n.endswith(name) for n in names)
