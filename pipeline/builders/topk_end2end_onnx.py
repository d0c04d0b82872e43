"""End2End ONNX of an NMS-free (one-to-one) head: the raw graph + a small tail, no TensorRT plugin at all.

    output0 [B, K, 6] (x1, y1, x2, y2, score, class; sorted by score) -> keep = score > conf ->
    num_dets [B, 1] i32 (how many kept), det_boxes [B, K, 4] f32 (x1, y1, x2, y2; / imgsz when
    normalize_boxes), det_scores [B, K] f32, det_classes [B, K] i32 — zeros past num_dets

The same four outputs clients of the EfficientNMS_TRT graphs read, and the same rule as Ultralytics' own
predict for this head (`score > conf`, in the head's order). Built on the checked raw graph (FP32 or
FP16: the tail always sees FP32), so it runs in plain onnxruntime — Triton's onnxruntime backend needs no
TensorRT accelerator for it — and in TensorRT alike. Checked like the EfficientNMS graph: the written file
is proved to be the raw graph plus this tail, and the tail, run on the raw graph's outputs, must give
exactly the NumPy reference's detections, at the manifest's threshold and at 0.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.errors import UserError
from ..tooling import onnx_tools, trt_support

if TYPE_CHECKING:
    from ..engine.context import StepContext

CONF = "e2e/conf"


def add_tail(raw, *, conf: float, normalize_boxes: bool):
    """Return a new ModelProto: `raw` (one output [B, K, 6]) with the score filter and the four outputs."""
    import numpy as np
    import onnx
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(raw)
    (images,), (out,) = graph.inputs, graph.outputs
    batch, k, _ = out.shape
    h, w = int(images.shape[2]), int(images.shape[3])
    f32, i64 = np.float32, np.int64

    def const(name, value):
        return gs.Constant(f"e2e/{name}", np.asarray(value))

    def layer(op, name, inputs, dtype, shape, **attrs):
        return graph.layer(op=op, name=f"e2e/{name}", inputs=inputs, attrs=attrs,
                           outputs=[gs.Variable(f"e2e/{name}_out", dtype, shape)])[0]

    x = out if out.dtype == f32 else layer("Cast", "cast_fp32", [out], f32, [batch, k, 6], to=onnx.TensorProto.FLOAT)
    part = {name: layer("Slice", name, [x, const(f"{name}_start", [a]), const(f"{name}_end", [b]), const(f"{name}_axis", [2])],
                        f32, [batch, k, b - a]) for name, a, b in (("boxes", 0, 4), ("score", 4, 5), ("cls", 5, 6))}
    keep = layer("Greater", "keep", [part["score"], gs.Constant(CONF, np.array([conf], f32))], np.bool_, [batch, k, 1])
    keepf = layer("Cast", "keep_f32", [keep], f32, [batch, k, 1], to=onnx.TensorProto.FLOAT)
    boxes = part["boxes"]
    if normalize_boxes:
        boxes = layer("Mul", "normalize", [boxes, const("inv_size", np.array([1 / w, 1 / h, 1 / w, 1 / h], f32))],
                      f32, [batch, k, 4])
    squeeze = const("axis2", np.array([2], i64))
    outputs = [
        graph.layer(op="ReduceSum", name="e2e/count", attrs={"keepdims": 1},
                    inputs=[layer("Cast", "keep_i32", [layer("Squeeze", "keep_flat", [keep, squeeze], np.bool_, [batch, k])],
                                  np.int32, [batch, k], to=onnx.TensorProto.INT32), const("axis1", np.array([1], i64))],
                    outputs=[gs.Variable("num_dets", np.int32, [batch, 1])])[0],
        graph.layer(op="Mul", name="e2e/boxes_kept", inputs=[boxes, keepf],
                    outputs=[gs.Variable("det_boxes", f32, [batch, k, 4])])[0],
        graph.layer(op="Squeeze", name="e2e/scores", inputs=[layer("Mul", "scores_kept", [part["score"], keepf], f32,
                                                                   [batch, k, 1]), squeeze],
                    outputs=[gs.Variable("det_scores", f32, [batch, k])])[0],
        graph.layer(op="Cast", name="e2e/classes", attrs={"to": onnx.TensorProto.INT32},
                    inputs=[layer("Squeeze", "cls_flat", [layer("Mul", "cls_kept", [part["cls"], keepf], f32,
                                                                [batch, k, 1]), squeeze], f32, [batch, k])],
                    outputs=[gs.Variable("det_classes", np.int32, [batch, k])])[0],
    ]
    graph.outputs = outputs
    graph.cleanup().toposort()
    model = onnx_tools.export_like(graph, raw)
    for key, value in {"end2end": "nms_free_topk", "box_format": "x1y1x2y2" + ("_normalized" if normalize_boxes
                                                                               else "_pixels")}.items():
        model.metadata_props.add(key=key, value=value)
    return model


def reference(raw_out, *, conf: float, normalize_boxes: bool, imgsz: int):
    """The four outputs in NumPy: rows scoring above conf, in the head's order, first; zeros after."""
    import numpy as np

    raw_out = raw_out.astype(np.float32)
    b, k, _ = raw_out.shape
    num = np.zeros((b, 1), np.int32)
    boxes, scores, classes = np.zeros((b, k, 4), np.float32), np.zeros((b, k), np.float32), np.zeros((b, k), np.int32)
    for i, rows in enumerate(raw_out):
        kept = rows[rows[:, 4] > np.float32(conf)]
        n = len(kept)
        num[i, 0] = n
        boxes[i, :n] = kept[:, :4] / np.float32(imgsz) if normalize_boxes else kept[:, :4]
        scores[i, :n], classes[i, :n] = kept[:, 4], kept[:, 5].astype(np.int32)
    return num, boxes, scores, classes


def build(ctx: StepContext) -> dict:
    """Step builder: the tail on the raw graph (FP32 or FP16), then the exact check on the written file."""
    import numpy as np
    import onnx

    raw = onnx.load(str(ctx.input("onnx")))
    conf, normalize, imgsz = ctx.param("conf"), ctx.param("normalize_boxes"), ctx.param("imgsz")
    if list(raw.graph.output[0].type.tensor_type.shape.dim)[2].dim_value != 6:
        raise RuntimeError(f"{ctx.input('onnx')} is not a one-to-one head's [B, K, 6] output")
    made = add_tail(raw, conf=conf, normalize_boxes=normalize)
    onnx_tools.finish(made, ctx.output())
    support = trt_support.require(made, ctx.param("tensorrt_check"), what="End2End graph", key=ctx.key)
    e2e = onnx.load(str(ctx.output()))
    try:
        head = onnx_tools.appended_head(e2e, raw)
    except ValueError as e:
        raise UserError(f"the End2End graph does not contain the raw graph exactly: {e}", key=ctx.key,
                        fix="report this; the raw ONNX is unaffected") from None
    family = ctx.use("family")
    x = family.verification_images(family.verify_batch, imgsz).numpy().astype(onnx_tools.input_dtype(raw))
    (raw_out,) = onnx_tools.run(ctx.input("onnx"), {"images": x})
    report = {}
    for label, threshold in (("manifest_threshold", conf), ("score_threshold_0", 0.0)):
        tail = onnx.ModelProto()
        tail.CopyFrom(head)
        for t in tail.graph.initializer:
            if t.name == CONF:
                t.CopyFrom(onnx.numpy_helper.from_array(np.array([threshold], np.float32), CONF))
        got = onnx_tools.run_model(tail, {raw.graph.output[0].name: raw_out})
        want = reference(raw_out, conf=threshold, normalize_boxes=normalize, imgsz=imgsz)
        same = all(np.array_equal(g, w) for g, w in zip(got, want))
        report[label] = {"score_threshold": threshold, "detections": got[0].ravel().tolist(), "identical": same}
        if not same:
            raise UserError(f"the End2End graph's detections differ from the reference applied to the raw graph "
                            f"({label})", key=ctx.key, fix="report this; the raw ONNX is unaffected")
    return {"compared_with": "NumPy reference of the score filter on the raw graph's outputs (onnxruntime)",
            "backbone": "the raw graph, node for node and weight for weight", "nms": "none (one-to-one head)",
            "batch": len(x), **report, "onnxruntime": onnx_tools.onnxruntime_schema(ctx.output()), "tensorrt_support": support,
            "passed": True}
