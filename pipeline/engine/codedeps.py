"""What a step's code and tools are, derived from the code itself — never typed in a declaration.

For a builder "pipeline.builders.raw_onnx:export":
* **code**: every module of this package that the builder's module imports, directly or through other
  modules (absolute or relative imports, at top level or inside functions; `if TYPE_CHECKING:` blocks
  excepted, they never run), the package `__init__` files Python executes on the way, and any data file
  a module names in a module-level `DATA_FILES = ("name", ...)` (paths relative to that module);
* each module is hashed by **what Python executes**: its syntax tree without docstrings (comments and
  formatting are not in the tree), so an edit to a comment or docstring rebuilds nothing, while any
  change to the code does; a data file is hashed by its bytes;
* **tools**: the installed distributions of every third-party module those modules import, with their
  versions (TensorRT's even when it was installed without pip metadata).
Builders must import statically (`import x` / `from x import y`): an `importlib.import_module` call is
invisible here. Per-file results are kept in .pipeline/code-index.json by (mtime, size), so loading
dodo.py parses nothing unless the code changed.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
from pathlib import Path

from . import paths, tools
from .hashing import sha256

PACKAGE = "pipeline"
ROOT = Path(__file__).resolve().parents[2]  # the folder holding the package
# Distributions that only draw on the terminal (progress bars): they never change an artifact.
DISPLAY_ONLY = frozenset({"rich"})
_FORMAT = 2  # bump when the analysis changes


def module_file(name: str) -> Path | None:
    """pipeline.a.b -> pipeline/a/b.py or pipeline/a/b/__init__.py (None when neither exists)."""
    found = _module_file(str(ROOT), name)
    return Path(found) if found else None


@functools.lru_cache(maxsize=None)
def _module_file(root: str, name: str) -> str | None:
    """Plain strings and os.path: this runs on every doit call, pathlib's overhead showed in the no-op."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = os.path.join(root, *parts)
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]


def _is_type_checking(test: ast.AST) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes that can run (skips `if TYPE_CHECKING:` bodies)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def analyse(name: str, path: Path) -> dict:
    """One module: its executable-code hash, the package modules and third-party tops it imports, data files."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    local, third = set(), set()

    def add(mod: str) -> None:
        top = mod.split(".")[0]
        if top == PACKAGE:
            if module_file(mod):
                local.add(mod)
        elif top not in sys.stdlib_module_names and top != "__future__":
            third.add(top)

    for node in _imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            full = ".".join(base + ([node.module] if node.module else []))
        else:
            full = node.module or ""
        add(full)
        for alias in node.names:  # `from pkg import submodule`
            if full.split(".")[0] == PACKAGE and module_file(f"{full}.{alias.name}"):
                local.add(f"{full}.{alias.name}")
    data = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "DATA_FILES" for t in node.targets):
            for elt in getattr(node.value, "elts", []):
                if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                    data.append((path.parent / elt.value).relative_to(ROOT).as_posix())
    _strip_docstrings(tree)
    digest = hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()
    return {"hash": digest, "local": sorted(local), "third_party": sorted(third), "data": sorted(data)}


@functools.lru_cache(maxsize=1)
def _all_distributions() -> dict[str, list[str]]:
    """importlib.metadata's module -> distributions map: ~0.3 s, so at most once per process, and only for a
    module not named after its distribution (open_clip, yaml, google.protobuf), when the environment changed."""
    from importlib.metadata import packages_distributions

    return packages_distributions()


@functools.lru_cache(maxsize=1)
def _environment_key() -> str:
    return hashlib.sha256(json.dumps(sorted(tools.installed().items())).encode()).hexdigest()


class CodeIndex:
    """Per-file analyses cached by (mtime_ns, size) in .pipeline/code-index.json, and closures per module."""

    def __init__(self, path: str | Path = paths.CODE_INDEX):
        self.path = Path(path)
        try:
            saved = json.loads(self.path.read_text())
            files = saved.get("files") if isinstance(saved, dict) else None
            if saved.get("format") != _FORMAT or not isinstance(files, dict) or not all(
                    isinstance(e, dict) for e in files.values()) or not isinstance(saved.get("dists", {}), dict):
                saved = {}  # another format, or damaged: analysed again
        except (OSError, ValueError, AttributeError):
            saved = {}
        self.files: dict[str, dict] = saved.get("files", {})
        self.dists: dict = saved.get("dists", {})
        self.dirty = False
        self._seen: dict[str, dict] = {}
        self._derived: dict[tuple[str, str], object] = {}  # (what, module) -> closure / code / tools

    def info(self, name: str) -> dict:
        if name in self._seen:
            return self._seen[name]
        root = str(ROOT)
        path = _module_file(root, name)
        if path is None:
            raise ModuleNotFoundError(f"no module {name} in {ROOT / PACKAGE}")
        st = os.stat(path)
        rel = path[len(root) + 1:].replace(os.sep, "/")
        entry = self.files.get(rel)
        if not entry or entry.get("stamp") != [st.st_mtime_ns, st.st_size]:
            entry = {"stamp": [st.st_mtime_ns, st.st_size], **analyse(name, Path(path))}
            self.files[rel], self.dirty = entry, True
        self._seen[name] = {**entry, "file": rel}
        return self._seen[name]

    def _memo(self, what: str, module: str, compute):
        if (what, module) not in self._derived:
            self._derived[what, module] = compute(module)
            self.save()
        return self._derived[what, module]

    def closure(self, module: str) -> list[str]:
        """The module, every package module it imports transitively, and the packages that hold them."""
        return self._memo("closure", module, self._closure)

    def code(self, module: str) -> dict[str, str]:
        """{file: hash} of the closure: modules by executable code, data files by bytes."""
        return self._memo("code", module, self._code)

    def tools(self, module: str) -> dict[str, str]:
        """{distribution: version} of every third-party module the closure imports."""
        return self._memo("tools", module, self._tools)

    def _closure(self, module: str) -> list[str]:
        seen: set[str] = set()
        todo = [module]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            parts = name.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # packages run their __init__
            todo += self.info(name)["local"]
        return sorted(seen)

    def _code(self, module: str) -> dict[str, str]:
        out = {}
        for name in self.closure(module):
            entry = self.info(name)
            out[entry["file"]] = entry["hash"]
            for data in entry["data"]:
                out[data] = sha256(ROOT / data) if (ROOT / data).is_file() else "missing"
        return out

    def _tools(self, module: str) -> dict[str, str]:
        tops = sorted({t for name in self.closure(module) for t in self.info(name)["third_party"]})
        mapping = self._distributions(tops)
        out = {}
        for top in tops:
            if top == "tensorrt":
                out["tensorrt"] = tools.tensorrt_version() or "absent"
                continue
            for dist in mapping.get(top) or [top]:
                dist = tools.normalise(dist)
                if dist not in DISPLAY_ONLY:
                    out[dist] = tools.installed().get(dist, "absent")
        return dict(sorted(out.items()))

    def _distributions(self, tops: list[str]) -> dict[str, list[str]]:
        """Top-level module -> distributions, from importlib.metadata only when the environment changed."""
        key = _environment_key()
        cached = self.dists if self.dists.get("key") == key else {"key": key, "map": {}}
        missing = [t for t in tops if t not in cached["map"]]
        if missing:
            have = tools.installed()
            for top in missing:  # most distributions are named after their module (torch, onnx, ...)
                found = [top] if tools.normalise(top) in have else _all_distributions().get(top, [])
                cached["map"][top] = sorted(set(found))
            self.dists, self.dirty = cached, True
        return cached["map"]

    def save(self) -> None:
        if not self.dirty:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"format": _FORMAT, "files": self.files, "dists": self.dists}))
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError:  # a read-only checkout or a full disk only costs the analysis next time
            tmp.unlink(missing_ok=True)


_INDEX: CodeIndex | None = None


def index() -> CodeIndex:
    global _INDEX
    if _INDEX is None:
        _INDEX = CodeIndex()
    return _INDEX
