"""`doit shard=I/N`: this job's share of a manifest, for a CI matrix of N jobs.

The unit is the model (a MobileCLIP2 entry's image and text encoders stay together: they share their
weights step). Models are dealt out by estimated work, largest first, each to the least-loaded shard
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


def unit(model: dict) -> str:
    return model.get("encoder") or model["name"]


def work(models: list[dict], steps) -> int:
    return sum(PLAN_WEIGHT if step.isolate else 1 for m in models for step in steps for _ in step.instances(m))


def assign(models: list[dict], n: int, steps) -> dict[str, int]:
    """{unit: shard number 1..n}."""
    units: dict[str, list[dict]] = {}
    for m in models:
        units.setdefault(unit(m), []).append(m)
    order = sorted(units, key=lambda u: -work(units[u], steps))  # stable: equal work keeps manifest order
    load = [0] * n
    out = {}
    for u in order:
        i = min(range(n), key=lambda k: (load[k], k))
        out[u] = i + 1
        load[i] += work(units[u], steps)
    return out


def select(models: list[dict], spec: str, steps) -> list[dict]:
    file = "command line"
    i, n = parse(spec, file)
    shard = assign(models, n, steps)
    return [m for m in models if shard[unit(m)] == i]
