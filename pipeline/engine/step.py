"""A step: the declaration of one artifact kind, turned into doit tasks.

A declaration names the builder ("module:function"), its named inputs and outputs and the manifest
parameters it reads. Everything else that makes an artifact stale is derived, never typed:
* the code: the import closure of the builder's module, hashed by what Python executes (codedeps.py);
* the tools: the installed versions of the third-party packages that closure imports.
Parameters, tools and code make up the task's `uptodate` value (so `doit info` names what changed, e.g.
`max_batch: 4 -> 16` or `code.pipeline/builders/raw_onnx.py: ...`); the inputs are doit file
dependencies, compared by content. The recipe hash (cache.py) covers exactly the same things.

Nothing heavy is imported here: dodo.py loads this on every doit call.
"""
from __future__ import annotations

import inspect
import json
import os
from typing import Any, Callable

from doit.dependency import MD5Checker

from . import codedeps
from .hashing import sha256

Model = dict  # a resolved manifest record (see declarations/manifest.py)
PathFn = Callable[[Model], "str | None"]


class Step:
    """Declaration of one artifact kind. Callables take the model record.

    basename    doit task basename, e.g. "export_onnx"
    doc         shown by `doit list` (formatted with the model record)
    builder     "module:function", called with a StepContext
    outputs     {name: model -> path}; the first is the primary artifact
    inputs      {name: model -> path, a list of paths (the builder reads them with `ctx.inputs`), or None
                (not an input for this model)}: their content makes it stale
    params      model -> {name: value}: the manifest values the builder may read, and nothing else
    record      model -> path of the verification record (or None)
    applies     model -> whether this model has this artifact
    subname     model -> the task's name after "basename:"
    isolate     run the builder in a child process (CUDA never enters doit's own process)
    after       model -> tasks to run first, without making this one stale
    downloads   names of outputs that are downloads: `doit clean` keeps them (`doit clean-downloads`
                removes them)
    variants    model -> [{extra keys}, ...]: one task per variant (e.g. one plan per GPU target), each
                seeing the model record with its variant's keys added
    tools       model -> {distribution: version} pinned in the recipe instead of the version installed
                here (a plan for another host: its TensorRT is the target's, whatever this host has)
    uses        model -> {name: "module:attr"}: declarations the builder is handed (`ctx.use(name)`), e.g.
                the model's family; their modules' import closures are part of the step's code, exactly
                like the builder's own
    requires    model -> [{"what", "fix"}]: tools this step needs that this host lacks (the declarations
                know which): asked after the recorded outputs, the cache and `buildable`; the build then
                fails with one paragraph
    buildable   "module:function" (params -> None, or why this host cannot build it): asked only after
                the recorded outputs and the cache had nothing; the step is then left missing, not failed
    (A plain class, not a dataclass: dodo.py loads on every doit call and must stay cheap.)
    """

    def __init__(self, basename: str, doc: str, builder: str, outputs: dict[str, PathFn], *,
                 inputs: dict[str, PathFn] | None = None, params=lambda m: {}, record=lambda m: None,
                 applies=lambda m: True, subname=lambda m: m["name"], isolate: bool = False, after=lambda m: [],
                 downloads: tuple[str, ...] = (), variants=None, tools=None, buildable: str | None = None,
                 uses=lambda m: {}, requires=lambda m: []):
        self.basename, self.doc, self.builder, self.outputs = basename, doc, builder, outputs
        self.inputs, self.params, self.record = inputs or {}, params, record
        self.applies, self.subname, self.isolate, self.after, self.downloads = applies, subname, isolate, after, downloads
        self.variants, self.pinned_tools, self.buildable = variants, tools, buildable
        self.uses, self.requires = uses, requires

    def instances(self, model: Model) -> list[Model]:
        """The model records this step makes a task of: none, the model, or one per variant."""
        if not self.applies(model):
            return []
        return [model] if self.variants is None else [{**model, **v} for v in self.variants(model)]

    @property
    def module(self) -> str:
        return self.builder.split(":")[0]

    def derived(self, used: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
        """(code, tools) of the builder and the declarations it uses, derived from their import closures
        (memoised per module by the index)."""
        idx = codedeps.index()
        code, tools = idx.code(self.module), idx.tools(self.module)
        for ref in (used or {}).values():
            module = ref.split(":")[0]
            code, tools = {**code, **idx.code(module)}, {**tools, **idx.tools(module)}
        return code, tools

    def spec(self, model: Model) -> dict:
        """Everything the runner needs, as JSON-able data: the argument of the task's action."""
        used = self.uses(model)
        code, tools = self.derived(used)
        if self.pinned_tools:
            tools = {**tools, **self.pinned_tools(model)}
        inputs = {}
        for k, fn in self.inputs.items():
            p = fn(model)
            if isinstance(p, (list, tuple)):  # a set of files (calibration images): one input each, in order
                inputs.update({f"{k}[{i}]": x for i, x in enumerate(p)})
            elif p is not None:
                inputs[k] = p
        outputs = {k: fn(model) for k, fn in self.outputs.items()}
        return {"task": f"{self.basename}:{self.subname(model)}", "builder": self.builder, "inputs": inputs,
                "outputs": outputs, "record": self.record(model), "params": self.params(model), "tools": tools,
                "code": code, "isolate": self.isolate, "downloads": [outputs[k] for k in self.downloads],
                "key": model.get("key", ""), "manifest": model.get("manifest"),
                "untrained": bool(model.get("untrained")), "buildable": self.buildable,
                "uses": used, "missing": self.requires(model)}

    def task(self, model: Model) -> dict:
        from .runner import RemoveFiles, run_step

        spec = self.spec(model)
        outputs = list(spec["outputs"].values())
        targets = outputs + ([spec["record"]] if spec["record"] else [])
        return {
            "name": self.subname(model),
            "doc": self.doc.format(**model),
            "file_dep": list(spec["inputs"].values()),
            "targets": targets,
            "task_dep": self.after(model),
            "uptodate": [params_unchanged(staleness(spec))],
            "actions": [(run_step, [spec])],
            "clean": [RemoveFiles([t for t in targets if t not in spec["downloads"]])],
        }


def staleness(spec: dict) -> dict:
    """What besides the inputs' content makes a step's artifacts stale (also part of its recipe)."""
    return {"params": spec["params"], "tools": spec["tools"], "code": spec["code"]}


class params_unchanged:
    """doit `uptodate`: True while the step's parameters, tools and code equal those of its last success,
    and its targets still have the sizes they had then (doit itself only checks that targets exist: a
    truncated artifact would otherwise pass as finished; a stat call per target, no hashing)."""

    def __init__(self, values: dict):
        self._values = values
        self._json: dict | None = None
        self.changed: list[str] | None = None

    @property
    def values(self) -> dict:
        """The JSON form, as stored; made when first needed (`doit list` never needs it)."""
        if self._json is None:
            self._json = json.loads(json.dumps(self._values))
        return self._json

    def configure_task(self, task) -> None:
        task.value_savers.append(lambda: {"_params": self.values, "_sizes": _sizes(task.targets)})

    # doit asks inspect.signature which magic arguments to pass, once per task and run: answer at once
    __signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                       for n in ("task", "values")])

    def __call__(self, task, values) -> bool:
        old = values.get("_params")
        if old is None:
            self.changed = ["(no successful run recorded)"]
        elif old == self._values:  # the common case, without making the JSON form
            self.changed = []
        else:
            self.changed = _diff(old, self.values)
        sizes = values.get("_sizes")
        if sizes and not self.changed and sizes != _sizes(task.targets):
            self.changed = [f"target {t} changed size since it was built" for t, n in _sizes(task.targets).items()
                            if sizes.get(t) != n] or ["a target changed"]
        return not self.changed

    def watched(self) -> list[str]:
        """Paths this check reads besides the task's targets (engine/noop.py): none."""
        return []

    def __repr__(self) -> str:
        return "changed: " + "; ".join(self.changed) if self.changed else "parameters, tools and code unchanged"


def _sizes(targets: list[str]) -> dict[str, int]:
    out = {}
    for t in targets:
        try:
            out[t] = os.path.getsize(t)
        except OSError:
            out[t] = -1
    return out


def _diff(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k, "(unset)"), new.get(k, "(unset)"), f"{path}.{k}" if path else k)
        return out
    return [] if old == new else [f"{path}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    """Code hashes are long; 12 hex digits tell them apart."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return repr(value[:12])
    return repr(value)


class SHA256Checker(MD5Checker):
    """doit `check_file_uptodate`: content, not mtime, decides staleness.

    The logic of doit's MD5Checker (an unchanged mtime means unchanged; a new mtime with the same size is
    compared by hash), with the per-process SHA-256 memo of hashing.py: a file just written, restored or
    read as a step's input is not read again when doit saves its state at the end of the run (for the
    MobileCLIP2 encoders that was 2.5 s of MD5 on a warm-cache run)."""

    def check_modified(self, file_path, file_stat, state):
        timestamp, size, digest = state
        if file_stat.st_mtime == timestamp:
            return False
        if file_stat.st_size != size:
            return True
        return digest != sha256(file_path)

    def get_state(self, dep, current_state):
        timestamp = os.path.getmtime(dep)
        if current_state and current_state[0] == timestamp:
            return None
        return timestamp, os.path.getsize(dep), sha256(dep)
