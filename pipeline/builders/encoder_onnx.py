"""A MobileCLIP2 image or text encoder as ONNX in pytorch_models/: reparameterized, checked against PyTorch."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..tooling import onnx_tools

if TYPE_CHECKING:
    from ..engine.context import StepContext


def export(ctx: StepContext) -> dict:
    """Step builder: reparameterize, export (dynamic batch), check against the un-reparameterized model."""
    family = ctx.use("family")
    import torch

    role, clip_model, source = ctx.param("role"), ctx.param("clip_model"), ctx.param("weights_source")
    info = json.loads(ctx.input("clip_record").read_text())["verification"]
    weights = ctx.input("weights") if source == "file" else ctx.param("weights")
    original = family.create(clip_model, source, weights, ctx.param("download_dir"), ctx.key,
                                 ctx.param("trust_checkpoint"))
    deploy = family.reparameterized(original)
    modules = family.assert_reparameterized(deploy)
    wrap, batches = family.encoder_io(role, clip_model, info)
    reference_model, export_model = wrap(original).eval(), wrap(deploy).eval()
    spec = family.graphs[role]
    # nn.MultiheadAttention's inference fast path (aten::_native_multi_head_attention) has no ONNX form.
    torch.backends.mha.set_fastpath_enabled(False)
    exported = onnx_tools.export_torch(
        export_model, (batches[0],), spec, ctx.output(), opset=ctx.param("opset"),
        fixed_dims={spec.outputs[0]: [int(info["embed_dim"])]},
        metadata={"untrained": str(source == "untrained").lower(), "model": clip_model})
    cases = []
    with torch.no_grad():
        for x in batches:
            cases.append(({spec.inputs[0]: x.numpy()}, [reference_model(x).numpy()]))
    checks = onnx_tools.validate(ctx.output(), spec, cases, what=f"{role} encoder", key=ctx.key)
    result = {"compared_with": "PyTorch, un-reparameterized model, FP32 CPU", "runtime": "onnxruntime CPU",
              "modules_after_reparameterization": modules, "checks": checks, **exported}
    if role == "text":
        feeds, (want,) = cases[-1]
        got = onnx_tools.run(ctx.output(), feeds)[0]
        result["queries"] = list(family.queries)
        result["similarity"] = family.similarity_check(got, want)
    result["passed"] = True
    return result
