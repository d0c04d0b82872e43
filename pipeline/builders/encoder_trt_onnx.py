"""The encoder graph TensorRT compiles: FP16 weights and compute when precision is fp16 (FP32 I/O), and an
INT32 token input for the text encoder (a Cast to INT64 inside the graph): every TensorRT 10/11 takes
INT32 network inputs, token ids (< 49408) fit, and no INT64 I/O is needed."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..engine.errors import UserError
from ..tooling import onnx_tools, trt_support

if TYPE_CHECKING:
    from ..engine.context import StepContext

FP16_COS_MIN = 0.999


def trt_graph(ctx: StepContext) -> dict:
    """Step builder: the TensorRT-ready graph, checked against the FP32 ONNX in onnxruntime."""
    family = ctx.use("family")
    import numpy as np
    import onnx
    import onnx_graphsurgeon as gs

    role, precision = ctx.param("role"), ctx.param("precision")
    source = ctx.input("onnx")
    model = onnx.load(str(source))
    if role == "text":
        graph = gs.import_onnx(model)
        tokens = graph.inputs[0]
        tokens32 = gs.Variable("text_tokens", np.int32, tokens.shape)
        tokens.name = "text_tokens_int64"
        graph.layer(op="Cast", name="tokens_to_int64", inputs=[tokens32], outputs=[tokens],
                    attrs={"to": onnx.TensorProto.INT64})
        graph.inputs = [tokens32]
        model = onnx_tools.export_like(graph.toposort(), model)
    if precision == "fp16":
        model = onnx_tools.convert_fp16(model, keep_io_types=True)
    onnx_tools.finish(model, ctx.output())
    support = trt_support.require(model, ctx.param("tensorrt_check"), what=f"{role} encoder graph", key=ctx.key)
    info = json.loads(ctx.input("clip_record").read_text())["verification"]
    _, batches = family.encoder_io(role, info["model"], info)
    name = family.graphs[role].inputs[0]
    x = batches[-1].numpy()
    want = onnx_tools.run(source, {name: x})[0]
    got = onnx_tools.run(ctx.output(), {name: x.astype(np.int32) if role == "text" else x},
                         basic_optimizations=True)[0]
    cos = float((got * want).sum(-1).min())
    if cos < FP16_COS_MIN:
        raise UserError(f"the {precision} {role} graph for TensorRT drifts from FP32 (min cosine {cos:.5f} < "
                        f"{FP16_COS_MIN})", key=ctx.key, fix="set precision: fp32 for this encoder")
    return {"precision": precision, "token_input": "INT32" if role == "text" else None,
            "compared_with": "the FP32 ONNX (onnxruntime CPU; FP16 ops it lacks kernels for are upcast)",
            "batch": len(x), "min_cosine": cos, "max_abs": float(np.abs(got - want).max()),
            "tensorrt_support": support}
