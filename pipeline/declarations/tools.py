"""The tools some formats need and not every host has: TensorRT (plans) and NVIDIA DALI (Track D/E).

Known from package metadata, never imported (engine/tools.py). A step that needs one declares it
(`requires=needs(TENSORRT)`); without it, plain `doit` skips the folders of formats that need it with one
notice per tool (declarations/dag.py), and a task named on the command line fails with one paragraph.
"""
from __future__ import annotations

import functools

from ..engine import tools as installed


class Tool:
    """name: as formats name it; title: for people; version: () -> installed version or None; fix: how to get
    it, or avoid it; items: what a format needing only this tool makes (for the skip notice)."""

    def __init__(self, name: str, title: str, version, fix: str, items: str, readme: str):
        self.name, self.title, self._version, self.fix, self.items, self.readme = name, title, version, fix, items, readme

    @functools.cached_property
    def version(self) -> str | None:
        return self._version()

    @property
    def present(self) -> bool:
        return self.version is not None


TENSORRT = Tool("tensorrt", "TensorRT", installed.tensorrt_version, items="TensorRT plan(s)", readme="TensorRT",
                fix="run TensorRT tasks on a GPU host with TensorRT 10.x or 11.x installed (pip install tensorrt, or an "
                    "NGC container matching your Triton), or drop the TensorRT formats from formats")
DALI = Tool("dali", "NVIDIA DALI", installed.dali_version, items="DALI ensemble(s)", readme="Track D",
            fix="pip install -e '.[dali]' (NVIDIA DALI for CUDA 13; CPU-only machines can build the pipeline), or "
                "drop the DALI formats from formats")
TOOLS = {t.name: t for t in (TENSORRT, DALI)}


class needs:
    """Step `requires`: the tools a step needs that this host lacks, as the runner reports them."""

    def __init__(self, *tools: Tool):
        self.tools = tools

    def __call__(self, model: dict) -> list[dict]:
        return [{"what": t.title, "fix": t.fix} for t in self.tools if not t.present]
