"""Installed tool versions without importing the tools (dodo.py must not import torch to learn its version).

`*.dist-info` folder names carry the normalised name and version (PEP 427/627); listing the
site-packages folders is sub-millisecond, unlike importlib.metadata's scans.
"""
from __future__ import annotations

import functools
import os
import re
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
                found.setdefault(_normalise(dist), version)
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def versions(*tools: str) -> dict[str, str]:
    """{tool: version or 'absent'} for the named distributions (PyPI names)."""
    have = installed()
    return {t: have.get(_normalise(t), "absent") for t in tools}
