"""FP16 ONNX: the graphs TensorRT compiles. TensorRT 11 has no FP16 builder flag; precision comes from here.

Conversion: onnxruntime's `transformers.float16.convert_float_to_float16` (the onnxconverter-common
converter, shipped inside the onnxruntime we already pin), on the checked FP32 graph. Chosen over
* a half-precision PyTorch export: it would also run the Detect head's box decoding in FP16, where
  coordinates near 640 px have a resolution of 0.5 px;
* ModelOpt AutoCast: its `[onnx]` extra pins an older onnx and onnxruntime-gpu;
* onnxconverter-common itself: the same code, one more dependency.
The converter itself is shared ONNX tooling (tooling/onnx_tools.py); which nodes stay FP32 the family
says (`fp32_nodes`): the backbone and the head's convolutions become FP16; the Detect head's decoding
(reshape, DFL softmax, anchors x stride) is kept FP32 by name (`node_block_list`), so `output0` is FP32
with FP32 box math.
The input `images` is FP16, as the documented TensorRT config.pbtxt says (TYPE_FP16).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..tooling import onnx_tools, trt_support

if TYPE_CHECKING:
    from ..engine.context import StepContext


def to_fp16(model, keep_fp32: list[str]):
    """FP16 but for the named nodes (the detector head's decoding) and so its FP32 output."""
    return onnx_tools.convert_fp16(model, keep_io_types=[model.graph.output[0].name], node_block_list=keep_fp32)


def convert(ctx: StepContext) -> dict:
    """Step builder: FP16 copy of the raw graph, checked in onnxruntime (CPU) against the FP32 graph."""
    import numpy as np
    import onnx

    source = ctx.input("onnx")
    fp32 = onnx.load(str(source))
    family = ctx.use("family")
    fp16 = to_fp16(fp32, family.fp32_nodes(fp32))
    onnx_tools.finish(fp16, ctx.output())
    support = trt_support.require(fp16, ctx.param("tensorrt_check"), what="FP16 graph", key=ctx.key)
    x = family.verification_images(family.verify_batch, ctx.param("imgsz")).numpy()
    a = onnx_tools.run(source, {"images": x})[0]
    b = onnx_tools.run(ctx.output(), {"images": x.astype(np.float16)})[0]
    if b.dtype != np.float32 or b.shape != a.shape:
        raise RuntimeError(f"FP16 graph output is {b.dtype} {b.shape}, expected float32 {a.shape}")
    return {"compared_with": "the FP32 graph (onnxruntime CPU)", "batch": 2,
            "input_dtype": "float16", "output_dtype": "float32",
            **family.differences(b, a, ctx.param("head")),
            "tensorrt_support": support,
            "fp16_initializers": sum(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer),
            "fp32_initializers": sum(i.data_type == onnx.TensorProto.FLOAT for i in fp16.graph.initializer),
            "note": "onnxruntime's CPU provider upcasts FP16 ops it has no kernel for, rounding each "
                    "intermediate tensor back to FP16: close to, not the same as, TensorRT's FP16 arithmetic. "
                    "No tolerance here (it depends on the weights); tests bound it on a detecting model"}
