"""Checkpoints: download the built-ins, materialise untrained architectures, inspect user files.

Each builder ends in the same checkpoint record (family, classes, names, SHA-256) that later steps read
instead of loading torch again; the model's family (handed over by the step) loads, checks and
describes the file, and refuses anything it does not serve.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.errors import UserError
from ..engine.hashing import sha256

if TYPE_CHECKING:
    from ..engine.context import StepContext

MIN_FREE_BYTES = 500 * 2**20  # the largest built-in (yolo11x.pt) is ~110 MB; leave room for exports too


def _describe(model, pt: Path, ctx: StepContext, trusted: bool = False) -> dict:
    family = ctx.use("family")
    found = family.describe(model)
    nc, names = found["num_classes"], found["names"]
    want_nc, want_names = ctx.param("num_classes"), ctx.param("class_names")
    key = ctx.key
    if want_nc is not None and want_nc != nc:
        raise UserError(f"num_classes is {want_nc} but the checkpoint '{pt}' has {nc} classes",
                        key=f"{key}.num_classes", fix=f"set num_classes to {nc} or remove it (it is auto-detected)")
    if want_names is not None and len(want_names) != nc:
        raise UserError(f"class_names lists {len(want_names)} names but the checkpoint '{pt}' has {nc} classes",
                        key=f"{key}.class_names", fix=f"list exactly {nc} names or remove class_names")
    final = list(want_names) if want_names else names
    return {"task": "detect", "family": family.name, "num_classes": nc, "names": final, "checkpoint_names": names,
            "stride": found["stride"], "sha256": sha256(pt), "path": str(pt),
            "untrained": ctx.param("untrained"), "trusted": trusted,
            "loaded_with": "torch full unpickler (trust_checkpoint: true)" if trusted else
                           "torch weights-only unpickler, Ultralytics detection allowlist"}


def inspect(ctx: StepContext) -> dict:
    """A user's own checkpoint: read only, never copied or modified."""
    pt, trust = ctx.input("checkpoint"), ctx.param("trust_checkpoint")
    return _describe(ctx.use("family").load(pt, f"{ctx.key}.pt_file", trust), pt, ctx, trust)


def download(ctx: StepContext) -> dict:
    """Built-in weights through Ultralytics' asset code (retries, .part files); skipped when present."""
    final, url, trust = ctx.final("checkpoint"), ctx.param("url"), ctx.param("trust_checkpoint")
    if final.exists():
        ctx.keep(final)  # placed by hand or downloaded before: verify it, never delete it
        return {**_describe(ctx.use("family").load(final, ctx.key, trust), final, ctx, trust), "downloaded": False}
    free = shutil.disk_usage(final.parent).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"only {free // 2**20} MiB free in '{final.parent}', {MIN_FREE_BYTES // 2**20} MiB needed "
                        f"to download {final.name}", key=ctx.key, fix="free some disk space")
    staging = final.parent / f".{final.name}.download"
    staging.mkdir(exist_ok=True)
    try:
        try:
            got = ctx.use("family").download(final.name, staging)
        except Exception as e:  # network failures surface as ConnectionError, timeouts, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"could not download {final.name} from {url} ({first})", key=ctx.key,
                            fix=f"place the file at {final} yourself (the pipeline then verifies and uses it), or "
                                f"build offline with manifest=manifests/smoke.yaml") from None
        if not got.is_file():
            raise UserError(f"the download did not produce {final.name} (no such release asset?)",
                            key=ctx.key, fix=f"place the file at {final} yourself")
        shutil.move(str(got), ctx.output())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**_describe(ctx.use("family").load(ctx.output(), ctx.key, trust), ctx.output(), ctx, trust),
            "downloaded": True,
            "url": url, "path": str(final)}


def materialize(ctx: StepContext) -> dict:
    """An untrained model of an architecture (smoke tests, benchmarks): seeded random weights, the same bytes
    for the same manifest (a fixed scratch folder beside the target; the build lock keeps it private)."""
    family = ctx.use("family")
    arch, class_names = ctx.param("arch"), ctx.param("class_names")
    nc = ctx.param("num_classes") or (len(class_names) if class_names else 80)
    scratch = ctx.output().parent / f".{ctx.final().name}.cfg"
    scratch.mkdir(exist_ok=True)
    try:
        family.untrained(arch, class_names or [f"class{i}" for i in range(nc)], ctx.output(), scratch, ctx.key)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**_describe(family.load(ctx.output(), ctx.key), ctx.output(), ctx),
            "arch": arch, "path": str(ctx.final())}
