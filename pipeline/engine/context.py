"""What a builder sees: exactly what its step declares — named inputs, named outputs, declared parameters,
the declarations it uses (a model family).

Anything else raises `UndeclaredRead` at once: a value a builder could read without declaring it would
change the artifact without making it stale or changing its recipe (the cache would serve the old one).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .errors import UndeclaredRead


class StepContext:
    """task: "basename:name"; inputs/outputs: {name: final path}; tmp: {final path: temporary path};
    params: the step's declared parameters; uses: {name: "module:attr"} of the declarations it is handed;
    key: the manifest key (for messages only)."""

    def __init__(self, task: str, inputs: dict[str, Path], outputs: dict[str, Path], tmp: dict[Path, Path],
                 params: dict[str, Any], key: str = "", uses: dict[str, str] | None = None):
        self.task, self.key = task, key
        self._inputs, self._outputs, self.tmp, self._params = inputs, outputs, tmp, params
        self._uses = uses or {}
        self.kept: set[Path] = set()

    def _undeclared(self, what: str, name: str, declared) -> UndeclaredRead:
        return UndeclaredRead(f"{self.task}: the builder read {what} '{name}', which its step does not declare "
                              f"(declared: {', '.join(sorted(declared)) or 'none'}); declare it in "
                              "its step declaration (pipeline/declarations/steps/) so that it makes the artifact stale")

    def param(self, name: str) -> Any:
        if name not in self._params:
            raise self._undeclared("parameter", name, self._params)
        return self._params[name]

    def use(self, name: str) -> Any:
        """A declaration the step hands its builder (e.g. "family"): the object its "module:attr" names."""
        if name not in self._uses:
            raise self._undeclared("declaration", name, self._uses)
        module, attr = self._uses[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def inputs(self, name: str) -> list[Path]:
        """A declared set of input files (its step's input function gave a list), in its order."""
        found = sorted(((int(k[len(name) + 1:-1]), p) for k, p in self._inputs.items()
                        if k.startswith(name + "[") and k.endswith("]")))
        return [p for _, p in found]

    def has_input(self, name: str) -> bool:
        """A declared input that this model has (an input path function may say None: not for this model)."""
        return name in self._inputs

    def input(self, name: str) -> Path:
        if name not in self._inputs:
            raise self._undeclared("input", name, self._inputs)
        return self._inputs[name]

    def output(self, name: str | None = None) -> Path:
        """Temporary path of an output (the primary one by default): the builder writes here, the runner
        renames it into place once the step has succeeded."""
        return self.tmp[self.final(name)]

    def final(self, name: str | None = None) -> Path:
        """Where an output will live once finished (for messages and records; write to `output`)."""
        if name is None:
            return next(iter(self._outputs.values()))
        if name not in self._outputs:
            raise self._undeclared("output", name, self._outputs)
        return self._outputs[name]

    def keep(self, final: Path) -> None:
        """The existing file at `final` is already right (e.g. a checkpoint the user placed): don't replace it."""
        self.kept.add(Path(final))
