"""End2End ONNX of a head that needs NMS: the raw graph + TensorRT's EfficientNMS_TRT, by graph surgery.

    output0 [B, 4+nc, A] -> (Cast fp32) -> Transpose -> Split -> boxes [B,A,4] (cx,cy,w,h; / imgsz when
    normalize_boxes) + scores [B,A,nc] -> EfficientNMS_TRT -> num_dets [B,1] i32, det_boxes [B,K,4] f32
    (x1,y1,x2,y2), det_scores [B,K] f32, det_classes [B,K] i32

Made from the raw ONNX artifact rather than by re-tracing PyTorch, so the End2End graph contains exactly
the checked raw graph. The same surgery serves the FP32 graph (served by Triton) and the FP16 graph
(compiled by TensorRT): NMS always sees FP32, so its outputs are FP32 whatever the backbone runs in.
onnxruntime cannot run EfficientNMS_TRT; the check runs the appended part through onnxruntime-extensions
with the project's NumPy reference of the plugin (tooling/efficient_nms.py).

The node is in the default ONNX domain, which both consumers accept: onnxruntime validates it against
the schema of its TensorRT execution provider's contrib op (and runs it only with that provider, which
config.pbtxt of an `_end2end` folder enables), TensorRT's parser finds the plugin by op type. That
schema has no `class_agnostic` attribute, so only graphs built for TensorRT alone carry it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.errors import UserError
from ..tooling import onnx_tools, trt_support
from ..tooling.efficient_nms import END2END_OUTPUTS as OUTPUTS

if TYPE_CHECKING:
    from ..engine.context import StepContext

NMS_PARAMS = ("topk", "iou", "conf", "normalize_boxes", "class_agnostic")


def add_efficient_nms(raw, *, topk: int, iou: float, conf: float, normalize_boxes: bool, class_agnostic: bool):
    """Return a new ModelProto: `raw` (one output [B, 4+nc, A]) with EfficientNMS_TRT appended."""
    import numpy as np
    import onnx
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(raw)
    (images,), (out,) = graph.inputs, graph.outputs
    batch, channels, anchors = out.shape
    nc = int(channels) - 4
    h, w = int(images.shape[2]), int(images.shape[3])
    f32 = np.float32

    x = out
    if out.dtype != f32:  # FP16 backbone: NMS (and so all four outputs) stays FP32
        x = graph.layer(op="Cast", name="e2e/cast_fp32", inputs=[out], attrs={"to": onnx.TensorProto.FLOAT},
                        outputs=[gs.Variable("e2e/output0_fp32", f32, [batch, channels, anchors])])[0]
    x = graph.layer(op="Transpose", name="e2e/transpose", inputs=[x], attrs={"perm": [0, 2, 1]},
                    outputs=[gs.Variable("e2e/predictions", f32, [batch, anchors, channels])])[0]
    boxes, scores = graph.layer(
        op="Split", name="e2e/split", attrs={"axis": 2},
        inputs=[x, gs.Constant("e2e/split_sizes", np.array([4, nc], np.int64))],
        outputs=[gs.Variable("e2e/boxes_px", f32, [batch, anchors, 4]),
                 gs.Variable("e2e/scores", f32, [batch, anchors, nc])])
    if normalize_boxes:
        scale = np.array([1 / w, 1 / h, 1 / w, 1 / h], f32)
        boxes = graph.layer(op="Mul", name="e2e/normalize", inputs=[boxes, gs.Constant("e2e/inv_size", scale)],
                            outputs=[gs.Variable("e2e/boxes", f32, [batch, anchors, 4])])[0]
    outputs = [gs.Variable("num_dets", np.int32, [batch, 1]), gs.Variable("det_boxes", f32, [batch, topk, 4]),
               gs.Variable("det_scores", f32, [batch, topk]), gs.Variable("det_classes", np.int32, [batch, topk])]
    attrs = {"plugin_version": "1", "background_class": -1, "max_output_boxes": int(topk),
             "score_threshold": float(conf), "iou_threshold": float(iou), "score_activation": 0, "box_coding": 1}
    if class_agnostic:  # TensorRT's plugin knows it; onnxruntime's schema does not (graphs for TensorRT only)
        attrs["class_agnostic"] = 1
    graph.nodes.append(gs.Node(op="EfficientNMS_TRT", name="e2e/efficient_nms", inputs=[boxes, scores],
                               outputs=outputs, attrs=attrs))
    graph.outputs = outputs
    graph.cleanup().toposort()
    model = onnx_tools.export_like(graph, raw)
    for k, v in {"end2end": "EfficientNMS_TRT", "box_format": "x1y1x2y2" + ("_normalized" if normalize_boxes
                                                                              else "_pixels")}.items():
        model.metadata_props.add(key=k, value=v)
    return model


def build(ctx: StepContext) -> dict:
    """Step builder: surgery on the raw graph (FP32 or FP16), then the semantic check."""
    import onnx

    raw = onnx.load(str(ctx.input("onnx")))
    nms = {k: ctx.param(k) for k in NMS_PARAMS}
    e2e = add_efficient_nms(raw, **nms)
    onnx_tools.finish(e2e, ctx.output())
    support = trt_support.require(e2e, ctx.param("tensorrt_check"), what="End2End graph", key=ctx.key)
    check = check_against_reference(ctx.input("onnx"), raw, ctx.output(), {**nms, "imgsz": ctx.param("imgsz")},
                                    ctx.key, ctx.use("family"))
    # Served graphs (never class-agnostic: the manifest refuses that) must pass plain onnxruntime's checks.
    schema = "TensorRT only (class_agnostic)" if nms["class_agnostic"] else onnx_tools.onnxruntime_schema(ctx.output())
    return {**check, "onnxruntime": schema, "tensorrt_support": support, "passed": True}


def check_against_reference(raw_path: Path, raw, e2e_path: Path, settings: dict, key: str, family) -> dict:
    """The End2End graph (NMS by the reference) must give exactly reference(raw graph's outputs).

    Proved in two exact parts, on the file as written: its backbone is the raw graph itself (the same
    inputs, every node and every weight byte for byte: onnx_tools.appended_head), and its appended head
    (Cast, Transpose, Split, normalisation, EfficientNMS_TRT), cut out and run in onnxruntime on the raw
    graph's outputs, gives exactly what the reference gives on them. The raw graph's outputs on these
    images come from its own check when that ran in this process, so the backbone is not run twice.

    Checked at the manifest's thresholds and once more with score_threshold 0, so that even an untrained
    model (which detects nothing at 0.25) exercises the box/score/class wiring with `topk` detections.
    Both in one run of the head: its copy carries a twin of the NMS node at threshold 0.
    """
    import numpy as np
    import onnx

    from ..tooling.efficient_nms import cpu_session, efficient_nms

    e2e = onnx.load(str(e2e_path))
    try:
        head = onnx_tools.appended_head(e2e, raw)
    except ValueError as e:
        raise UserError(f"the End2End graph does not contain the raw graph exactly: {e}", key=key,
                        fix="report this; the raw ONNX is unaffected") from None
    dtype = onnx_tools.input_dtype(raw)  # the End2End graph's too: the same inputs, checked just above
    imgsz = settings["imgsz"]
    x = family.verification_images(family.verify_batch, imgsz).numpy().astype(dtype)
    (raw_out,) = onnx_tools.run(raw_path, {"images": x})
    pred = raw_out.astype(np.float32).transpose(0, 2, 1)
    boxes, scores = pred[..., :4], pred[..., 4:]
    if settings["normalize_boxes"]:
        boxes = boxes * np.array([1 / imgsz] * 4, np.float32)
    thresholds = {"manifest_thresholds": ("", settings["conf"]), "score_threshold_0": ("/score_threshold_0", 0.0)}
    _add_twin(head, *thresholds["score_threshold_0"])
    names = [name + suffix for suffix, _ in thresholds.values() for name in OUTPUTS]
    results = dict(zip(names, cpu_session(head).run(names, {raw.graph.output[0].name: raw_out})))
    report = {}
    for label, (suffix, conf) in thresholds.items():
        got = [results[name + suffix] for name in OUTPUTS]
        want = efficient_nms(boxes, scores, score_threshold=conf, iou_threshold=settings["iou"],
                             max_output_boxes=settings["topk"], class_agnostic=int(settings["class_agnostic"]))
        same = all(np.array_equal(g, w) for g, w in zip(got, want))
        report[label] = {"score_threshold": conf, "detections": got[0].ravel().tolist(), "identical": same}
        if not same:
            raise UserError(f"the End2End graph's detections differ from the EfficientNMS reference applied to "
                            f"the raw graph ({label})", key=key, fix="report this; the raw ONNX is unaffected")
    return {"compared_with": "NumPy EfficientNMS_TRT reference on the raw graph's outputs (onnxruntime)",
            "backbone": "the raw graph, node for node and weight for weight",
            "batch": 2, "input": f"uniform random [0,1], seed 0, {imgsz}x{imgsz}", **report}


def _add_twin(model, suffix: str, score_threshold: float) -> None:
    """A second EfficientNMS_TRT node on the same boxes and scores, at another threshold, its outputs
    added to the graph's (names + suffix). Only in the copy being checked, never in an artifact."""
    import onnx

    node = next(n for n in model.graph.node if n.op_type == "EfficientNMS_TRT")
    twin = onnx.NodeProto()
    twin.CopyFrom(node)
    twin.name = node.name + suffix
    for a in twin.attribute:
        if a.name == "score_threshold":
            a.f = score_threshold
    del twin.output[:]
    twin.output.extend(name + suffix for name in node.output)
    model.graph.node.append(twin)
    for out in list(model.graph.output):
        if out.name in node.output:
            copy = model.graph.output.add()
            copy.CopyFrom(out)
            copy.name = out.name + suffix
