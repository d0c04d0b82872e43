"""MobileCLIP2 weights through open_clip, once per model: the record both encoders and clients read.

`pytorch_models/<name>.clip.json`: weights SHA-256, `logit_scale`, embedding size, preprocessing (from
open_clip's `dfndr2b` config: with no pretrained weights open_clip would fall back to OpenAI's mean/std),
tokenizer.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.hashing import sha256

if TYPE_CHECKING:
    from ..engine.context import StepContext


def weights(ctx: StepContext) -> dict:
    """Step builder: fetch/check the weights once; record what clients and later steps need."""
    family = ctx.use("family")
    import torch

    clip_model, source, download_dir = ctx.param("clip_model"), ctx.param("weights_source"), ctx.param("download_dir")
    file = ctx.input("weights") if source == "file" else None
    tag = ctx.param("weights")
    model = family.create(clip_model, source, file or tag, download_dir, ctx.key, ctx.param("trust_checkpoint"))
    files = []
    if source == "file":
        files = [file]
    elif source == "pretrained":
        files = sorted(p for p in Path(download_dir).rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin"))
    with torch.no_grad():
        dim = int(model.encode_text(torch.zeros(1, model.context_length, dtype=torch.long)).shape[-1])
    bias = getattr(model, "logit_bias", None)
    return {"model": clip_model, "weights_source": source, "weights": str(file) if file else tag,
            "files": {str(p): sha256(p) for p in files}, "untrained": source == "untrained",
            "logit_scale": float(model.logit_scale.detach().exp()),
            "logit_bias": None if bias is None else float(bias.detach()),
            "embed_dim": dim, "context_length": int(model.context_length), "vocab_size": int(model.vocab_size),
            "tokenizer": f"open_clip.get_tokenizer('{clip_model}') (SimpleTokenizer, ships with open_clip)",
            "preprocessing": family.preprocessing(clip_model, model)}
