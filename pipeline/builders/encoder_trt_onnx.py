"""The encoder graph TensorRT compiles: FP16 weights and compute when precision is fp16 (FP32 I/O), and an
INT32 token input for the text encoder (a Cast to INT64 inside the graph): every TensorRT 10/11 takes
INT32 network inputs, token ids (< 49408) fit, and no INT64 I/O is needed.

With precision int8 (or fp8) the image encoder's graph is a Q/DQ graph calibrated on the manifest's images
through the encoder's own preprocessing (open_clip's eval transform; tooling/quantize.py), its embeddings'
cosine to the FP32 graph's measured on the validation images (else the calibration images): a mean below
1 - max_accuracy_drop % (default 2 %) fails the step unless accepted. The text encoder stays FP16."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..engine.errors import UserError
from ..tooling import onnx_tools, quantize, trt_support

if TYPE_CHECKING:
    from ..engine.context import StepContext

FP16_COS_MIN = 0.999
QUANTIZED_DROP = 2.0  # percent of cosine: 1 - mean cosine to FP32 at most 0.02 by default


def trt_graph(ctx: StepContext) -> dict:
    """Step builder: the TensorRT-ready graph, checked against the FP32 ONNX in onnxruntime."""
    family = ctx.use("family")
    import numpy as np
    import onnx
    import onnx_graphsurgeon as gs

    role, precision = ctx.param("role"), ctx.param("precision")
    source = ctx.input("onnx")
    if precision in quantize.QUANTIZED and role == "image":
        return _quantized(ctx, family, source, precision)
    if precision in quantize.QUANTIZED:
        precision = "fp16"  # the text encoder of an int8 / fp8 model
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


def _quantized(ctx: StepContext, family, source, precision: str) -> dict:
    """The image encoder as a Q/DQ graph, and its cosine to the FP32 graph."""
    import numpy as np
    import onnx

    cal, key = ctx.param("calibration"), ctx.key
    info = json.loads(ctx.input("clip_record").read_text())["verification"]
    images = quantize.read_images(ctx.inputs("calibration"), what=f"calibration folder {cal['images']}",
                                  key=f"{key}.calibration.images", minimum=cal["minimum"])
    x = family.image_inputs(images, info)
    name = family.graphs["image"].inputs[0]
    made = quantize.quantize(source, ctx.output(), [{name: x[i:i + 8]} for i in range(0, len(x), 8)],
                             precision=precision, method=cal["method"], exclude=[])
    model = onnx.load(str(ctx.output()))
    onnx_tools.finish(model, ctx.output(), like=onnx.load(str(source), load_external_data=False))
    support = trt_support.require(model, ctx.param("tensorrt_check"), what=f"{precision.upper()} image encoder graph",
                                  key=key)
    held = ctx.param("validation")
    if held:
        x = family.image_inputs(quantize.read_images(ctx.inputs("validation"), what=f"validation folder {held['images']}",
                                                     key=f"{key}.validation.images"), info)
    want = np.concatenate([onnx_tools.run(source, {name: x[i:i + 8]})[0] for i in range(0, len(x), 8)])
    got = np.concatenate([onnx_tools.run(ctx.output(), {name: x[i:i + 8]})[0] for i in range(0, len(x), 8)])
    cos = (got * want).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1))
    drop = 100.0 * (1.0 - float(cos.mean()))
    limit = ctx.param("max_accuracy_drop")
    limit = QUANTIZED_DROP if limit is None else limit
    measured_on = f"validation folder {held['images']}" if held else "the calibration images (no validation set: not held out)"
    passed, accuracy = quantize.judge(
        {"measured_on": measured_on, "images": len(x), "metric": "cosine to FP32",
         "mean_cosine": round(float(cos.mean()), 5), "min_cosine": round(float(cos.min()), 5), "unit": "percent"},
        drop=drop, limit=limit, accept=bool(ctx.param("accept_accuracy_drop")),
        failure=f"the {precision.upper()} image encoder's embeddings drift from FP32: mean cosine {cos.mean():.5f} "
                f"(min {cos.min():.5f}) on {measured_on}, a drop of {drop:.2f} %",
        key=f"{key}.max_accuracy_drop",
        fix="calibrate on more images like the ones searched, try another calibration.method, raise "
            "max_accuracy_drop, set accept_accuracy_drop: true, or use precision fp16")
    return {"passed": passed, "precision": precision,
            "calibration": {"images": len(images), "method": cal["method"],
                                                    "preprocessing": "open_clip's eval transform, as served"},
            **made, "accuracy": accuracy, "tensorrt_support": support,
            "note": "accuracy measured in onnxruntime on the CPU; no TensorRT engine of this graph has been built or "
                    "timed here"}
