"""Raw detector ONNX (the model's own output, e.g. `output0 [B, 4+nc, anchors]`), exported directly with
torch.onnx and checked against PyTorch.

Why not `yolo export`: it wraps the same `torch.onnx.export` in checks, installs and an onnxslim pass and
is several times slower (bench/bench_onnx_export.py). The family (handed over by the step) sets the model
up exactly as its own exporter does and declares the graph and its tolerances; opset 17 by default, what
TensorRT 10.x and 11.x parse (LayerNormalization is native from 17).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..tooling import onnx_tools, trt_support

if TYPE_CHECKING:
    from ..engine.context import StepContext


def export(ctx: StepContext) -> dict:
    """Step builder: export, then check against the unfused checkpoint model on a batch of 2."""
    import torch

    family = ctx.use("family")
    imgsz, untrained, head = ctx.param("imgsz"), ctx.param("untrained"), ctx.param("head")
    model = family.load(ctx.input("checkpoint"), ctx.key, ctx.param("trust_checkpoint"), take=True)
    x = family.verification_images(family.verify_batch, imgsz)
    reference = family.reference_outputs(model, x, head)  # unfused checkpoint model: the source of truth
    ready, dims, meta = family.export_ready(model, imgsz, head)
    graph = family.graph(head)
    exported = onnx_tools.export_torch(ready, (torch.zeros(1, 3, imgsz, imgsz),), graph, ctx.output(),
                                       opset=ctx.param("opset"), fixed_dims={graph.outputs[0]: dims},
                                       metadata={**meta, "untrained": str(untrained).lower()})
    checks = onnx_tools.validate(ctx.output(), graph, [({"images": x.numpy()}, [reference])],
                                 what="raw ONNX", key=ctx.key)
    majors = ctx.param("tensorrt_check")  # a plan is compiled from this graph (precision: fp32)
    support = trt_support.require(_load(ctx.output()), majors, what="raw ONNX", key=ctx.key) if majors else None
    return {"compared_with": "PyTorch (unfused checkpoint, FP32, CPU)", "runtime": "onnxruntime CPU",
            "input": f"uniform random [0,1], seed 0, {imgsz}x{imgsz}", "output_shape": list(reference.shape),
            "head": head, **checks[0], **family.summary(reference, head), **exported,
            "torch_threads": torch.get_num_threads(), "tensorrt_support": support}


def _load(path):
    import onnx

    return onnx.load(str(path))
