"""`doit shard=I/N`: this job's share of a manifest, for a CI matrix of N jobs.

The unit is the model (a MobileCLIP2 entry's image and text encoders stay together: they share their
weights step; a Track E ensemble stays with its detector and its encoder, whose folders it needs). Models are dealt out by estimated work, largest first, each to the least-loaded shard
(ties: lowest shard number; equal work: manifest order), so the split is deterministic — every job
computes the same one from the same manifest — and balanced within one model's work. The estimate
counts the tasks a model makes, a TensorRT plan (one per GPU target) as ten; it only has to rank.

It composes with GPU targets: within its shard, each job builds the plans of its own GPU's compute
capability; `doit assemble` (no shard) gathers everything from the shared artifact cache.
"""
from __future__ import annotations

import re

from ..engine.errors import UserError

PLAN_WEIGHT = 10


def parse(spec: str, file: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise UserError(f"shard={spec!r} is not a share of the work", file=file, key="shard",
                        fix="write shard=I/N with 1 <= I <= N, e.g. shard=2/4 for the second of four CI jobs")
    return int(m.group(1)), int(m.group(2))


def _own_unit(model: dict) -> str:
    return model.get("encoder") or model["name"]


def units(models: list[dict]) -> dict[str, str]:
    """{model name: its unit}: own units joined where an ensemble needs another model's folders."""
    parent = {_own_unit(m): _own_unit(m) for m in models}

    def root(u):
        while parent[u] != u:
            u = parent[u]
        return u

    for m in models:
        if "detector" in m:  # a Track E ensemble record
            for other in (m["detector"]["name"], m["image_encoder"]["encoder"]):
                if other in parent:
                    parent[root(other)] = root(_own_unit(m))
    return {m["name"]: root(_own_unit(m)) for m in models}


def unit(model: dict, of: dict[str, str] | None = None) -> str:
    return (of or {}).get(model["name"], _own_unit(model))


def work(models: list[dict], steps) -> int:
    return sum(PLAN_WEIGHT if step.isolate else 1 for m in models for step in steps for _ in step.instances(m))


def assign(models: list[dict], n: int, steps) -> dict[str, int]:
    """{unit: shard number 1..n}."""
    of = units(models)
    groups: dict[str, list[dict]] = {}
    for m in models:
        groups.setdefault(of[m["name"]], []).append(m)
    order = sorted(groups, key=lambda u: -work(groups[u], steps))  # stable: equal work keeps manifest order
    load = [0] * n
    out = {}
    for u in order:
        i = min(range(n), key=lambda k: (load[k], k))
        out[u] = i + 1
        load[i] += work(groups[u], steps)
    return out


def select(models: list[dict], spec: str, steps) -> list[dict]:
    file = "command line"
    i, n = parse(spec, file)
    shard, of = assign(models, n, steps), units(models)
    return [m for m in models if shard[of[m["name"]]] == i]
