"""The layers, held: which package of the pipeline may import which, from every import statement that can run
(the same static analysis that derives a step's code, engine/codedeps.py). Fast: no torch."""
from __future__ import annotations

from pathlib import Path

from helpers.project import REPO

from pipeline.engine import codedeps

# package -> the packages it may import (besides itself). Lower layers never import higher ones.
ALLOWED = {
    "engine": set(),                                     # runs any step; knows no family, format or artifact path
    "tooling": {"engine"},                               # shared tools
    "families": {"engine", "tooling"},                   # one module per family
    "builders": {"engine", "tooling"},                   # handed their family by their step, never import one
    "declarations": {"engine", "tooling", "families"},   # what to build; never a builder
    "serving": {"engine", "tooling", "declarations"},    # published versions into a live Triton
    "commands": {"engine", "tooling", "families", "builders", "declarations", "serving"},
}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_every_module_is_in_a_layer():
    assert {layer(m) for m in modules()} - {None} == set(ALLOWED)
    assert [m for m in modules() if layer(m) is None] == ["pipeline"]


def test_each_layer_imports_only_the_layers_below_it():
    bad = []
    for name, path in modules().items():
        own = layer(name)
        if own is None:
            continue
        for imported in codedeps.analyse(name, path)["local"]:
            other = layer(imported)
            if other and other != own and other not in ALLOWED[own]:
                bad.append(f"{name} imports {imported}")
    assert bad == []


def test_no_builder_imports_a_family_or_another_builder():
    for name, path in modules().items():
        if layer(name) == "builders":
            local = codedeps.analyse(name, path)["local"]
            assert not [m for m in local if m.startswith(("pipeline.builders.", "pipeline.families"))], name


def test_no_package_cycle():
    edges = {p: set() for p in ALLOWED}
    for name, path in modules().items():
        own = layer(name)
        for imported in codedeps.analyse(name, path)["local"]:
            if own and layer(imported) and layer(imported) != own:
                edges[own].add(layer(imported))
    done, stack = set(), []

    def visit(p):
        assert p not in stack, f"cycle: {' -> '.join(stack + [p])}"
        if p in done:
            return
        stack.append(p)
        for q in edges[p]:
            visit(q)
        stack.pop()
        done.add(p)

    for p in edges:
        visit(p)


def test_the_family_registry_and_the_refusal_name_the_same_families():
    from pipeline.declarations.families import DETECTORS
    from pipeline.families.ultralytics import ACCEPTED

    assert ACCEPTED == ", ".join(f.title for f in DETECTORS.values())
