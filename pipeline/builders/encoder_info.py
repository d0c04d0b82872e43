"""encoder.json beside an encoder's config.pbtxt: what a client needs to use it (embedding size,
logit_scale, preprocessing or tokenizer), from the weights record."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine.context import StepContext


def write_info(ctx: StepContext) -> dict:
    """Step builder."""
    role = ctx.param("role")
    info = json.loads(ctx.input("clip_record").read_text())["verification"]
    out = {"model": info["model"], "role": role, "untrained": info["untrained"],
           "embedding": {"dim": info["embed_dim"], "l2_normalized": True},
           "logit_scale": info["logit_scale"], "logit_bias": info["logit_bias"]}
    if role == "image":
        out["preprocessing"] = info["preprocessing"]
    else:
        out["tokenizer"] = {"how": info["tokenizer"], "context_length": info["context_length"],
                            "vocab_size": info["vocab_size"]}
    ctx.output().write_text(json.dumps(out, indent=2) + "\n")
    return {}
