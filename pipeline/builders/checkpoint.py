"""Checkpoints: download the built-ins, materialise untrained architectures, inspect user files.

Each builder ends in the same checkpoint record (task, classes, names, SHA-256) that later steps read
instead of loading torch again, and refuses anything that is not an Ultralytics detection model.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.errors import UserError
from ..engine.hashing import sha256
from ..families.yolo import configure, load_checkpoint, load_detection_model

if TYPE_CHECKING:
    from ..engine.context import StepContext

MIN_FREE_BYTES = 500 * 2**20  # the largest built-in (yolo11x.pt) is ~110 MB; leave room for exports too


def _describe(model, pt: Path, ctx: StepContext, trusted: bool = False) -> dict:
    names = {int(k): str(v) for k, v in dict(model.names).items()}
    nc = int(model.model[-1].nc)
    want_nc, want_names = ctx.param("num_classes"), ctx.param("class_names")
    key = ctx.key
    if want_nc is not None and want_nc != nc:
        raise UserError(f"num_classes is {want_nc} but the checkpoint '{pt}' has {nc} classes",
                        key=f"{key}.num_classes", fix=f"set num_classes to {nc} or remove it (it is auto-detected)")
    if want_names is not None and len(want_names) != nc:
        raise UserError(f"class_names lists {len(want_names)} names but the checkpoint '{pt}' has {nc} classes",
                        key=f"{key}.class_names", fix=f"list exactly {nc} names or remove class_names")
    final = list(want_names) if want_names else [names.get(i, f"class{i}") for i in range(nc)]
    return {"task": "detect", "num_classes": nc, "names": final, "checkpoint_names": [names.get(i, f"class{i}")
            for i in range(nc)], "stride": [float(s) for s in model.stride], "sha256": sha256(pt), "path": str(pt),
            "untrained": ctx.param("untrained"), "trusted": trusted,
            "loaded_with": "torch full unpickler (trust_checkpoint: true)" if trusted else
                           "torch weights-only unpickler, Ultralytics detection allowlist"}


def inspect(ctx: StepContext) -> dict:
    """A user's own checkpoint: read only, never copied or modified."""
    pt, trust = ctx.input("checkpoint"), ctx.param("trust_checkpoint")
    return _describe(load_detection_model(pt, f"{ctx.key}.pt_file", trust), pt, ctx, trust)


def download(ctx: StepContext) -> dict:
    """Built-in weights through Ultralytics' asset code (retries, .part files); skipped when present."""
    final, url, trust = ctx.final("checkpoint"), ctx.param("url"), ctx.param("trust_checkpoint")
    if final.exists():
        ctx.keep(final)  # placed by hand or downloaded before: verify it, never delete it
        return {**_describe(load_detection_model(final, ctx.key, trust), final, ctx, trust), "downloaded": False}
    free = shutil.disk_usage(final.parent).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"only {free // 2**20} MiB free in '{final.parent}', {MIN_FREE_BYTES // 2**20} MiB needed "
                        f"to download {final.name}", key=ctx.key, fix="free some disk space")
    configure()
    from ultralytics.utils.downloads import attempt_download_asset

    staging = final.parent / f".{final.name}.download"
    staging.mkdir(exist_ok=True)
    try:
        try:
            got = Path(attempt_download_asset(str(staging / final.name), retry=3))
        except Exception as e:  # network failures surface as ConnectionError, timeouts, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"could not download {final.name} from {url} ({first})", key=ctx.key,
                            fix=f"place the file at {final} yourself (the pipeline then verifies and uses it), or "
                                f"build offline with manifest=manifests/smoke.yaml") from None
        if not got.is_file():
            raise UserError(f"Ultralytics did not produce {final.name} (no such release asset?)",
                            key=ctx.key, fix=f"place the file at {final} yourself")
        shutil.move(str(got), ctx.output())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**_describe(load_detection_model(ctx.output(), ctx.key, trust), ctx.output(), ctx, trust),
            "downloaded": True,
            "url": url, "path": str(final)}


def materialize(ctx: StepContext) -> dict:
    """An untrained model from an Ultralytics architecture YAML (smoke tests, benchmarks): random weights."""
    configure()
    import torch
    import yaml
    from ultralytics import YOLO
    from ultralytics.utils import ROOT

    arch, class_names = ctx.param("arch"), ctx.param("class_names")
    nc = ctx.param("num_classes") or (len(class_names) if class_names else 80)
    cfg = yaml.safe_load((ROOT / "cfg/models/11/yolo11.yaml").read_text())
    cfg["nc"] = nc
    # The scale letter is read from the file name (yolo11n.yaml -> n), so the copy keeps the name.
    # A fixed name (not the pid-stamped temporary one): Ultralytics keeps traces of the path in the model,
    # and the same manifest must give byte-identical weights. The build lock keeps it private.
    cfg_dir = ctx.output().parent / f".{ctx.final().name}.cfg"
    cfg_dir.mkdir(exist_ok=True)
    try:
        cfg_file = cfg_dir / f"{arch}.yaml"
        cfg_file.write_text(yaml.safe_dump(cfg))
        torch.manual_seed(0)  # deterministic random weights: the same manifest gives the same .pt
        yolo = YOLO(str(cfg_file), task="detect")
    finally:
        shutil.rmtree(cfg_dir, ignore_errors=True)
    names = class_names or [f"class{i}" for i in range(nc)]
    yolo.model.names = dict(enumerate(names))
    yolo.model.yaml["yaml_file"] = f"{arch}.yaml"
    yolo.save(str(ctx.output()))
    # Model.save stamps the current date; fix it so the same manifest gives byte-identical weights and
    # a rebuild of this step does not cascade through every artifact made from them.
    ckpt = load_checkpoint(ctx.output(), ctx.key)  # weights-only: Model.save()'s output passes the allowlist
    ckpt["date"] = "untrained"
    buffer = io.BytesIO()  # torch names the zip's folder after the file: save unnamed (pid-free tmp name)
    torch.save(ckpt, buffer)
    ctx.output().write_bytes(buffer.getvalue())
    return {**_describe(load_detection_model(ctx.output(), ctx.key), ctx.output(), ctx),
            "arch": arch, "path": str(ctx.final())}
