"""Step builder: a detector's INT8 (or FP8) Q/DQ graph for TensorRT, calibrated on the manifest's images, and its
accuracy measured against the FP32 and FP16 graphs before it counts as built.

* Calibration: the images letterboxed exactly as served (the family's letterbox: Ultralytics' LetterBox,
  square, grey padding), RGB, [0, 1], FP32 — the raw graph's input. tooling/quantize.py does the rest.
* What stays FP32: the family's decoding nodes (reshape, DFL softmax, anchors x stride: `fp32_nodes`, as in the
  FP16 graph), so `output0` and the End2End tail appended to this graph (EfficientNMS_TRT's inputs, the four
  outputs) are FP32.
* Accuracy, in onnxruntime on the CPU (it executes Q/DQ): with a validation set with labels, mAP50-95 and mAP50
  of the FP32, FP16 and quantized graphs (Ultralytics' matching and ap_per_class, its validation NMS: conf
  0.001, iou 0.7); with images only (or, without a validation set, on the calibration images themselves), its
  agreement with the FP32 graph: mAP50 against the FP32 graph's own detections at the model's `conf` as labels
  (a box whose score crosses `conf` by a hair costs little, a missing or moved box costs its share).
  A drop beyond `max_accuracy_drop` fails the step (nothing written) unless `accept_accuracy_drop`.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..engine.errors import UserError
from ..tooling import onnx_tools, quantize, trt_support
from ..tooling.onnx_tools import convert_fp16

if TYPE_CHECKING:
    from ..engine.context import StepContext

VAL_CONF, VAL_IOU, VAL_MAX_DET = 0.001, 0.7, 300  # Ultralytics' validation settings
# mAP50-95 points with labels; agreement percent without. Agreement is the stricter measure (a box the FP32 graph
# scores just above `conf` and the INT8 graph just below counts fully): a well-calibrated INT8 detector measured
# 0.7 mAP points but 3.8 agreement percent; one calibrated on dark images 12.2 points and 26.1 percent
DEFAULT_DROP = {"map50_95": 1.0, "agreement": 5.0}
BATCH = 8


def build(ctx: StepContext) -> dict:
    import numpy as np
    import onnx

    family, imgsz, head = ctx.use("family"), ctx.param("imgsz"), ctx.param("head")
    precision, key = ctx.param("precision"), ctx.key
    cal = ctx.param("calibration")
    source = ctx.input("onnx")
    calibration = quantize.read_images(ctx.inputs("calibration"), what=f"calibration folder {cal['images']}",
                                       key=f"{key}.calibration.images", minimum=cal["minimum"])
    classes = json.loads(ctx.input("checkpoint_record").read_text())["verification"]["num_classes"]
    held = ctx.param("validation")
    if held:  # read before calibrating: a bad image or label is a paragraph before a minute of work
        images = quantize.read_images(ctx.inputs("validation"), what=f"validation folder {held['images']}",
                                      key=f"{key}.validation.images")
        labels = _labels(ctx, held, classes) if held.get("labels") else None
        measured_on = f"validation folder {held['images']}" + (" with labels" if labels else " (images only)")
    else:
        images, labels, measured_on = calibration, None, "the calibration images (no validation set: not held out)"

    fp32 = onnx.load(str(source))
    shapes = [img.shape for img in images]
    inputs = np.stack([family.letterbox(img, imgsz) for img in images])
    reference = _detect(family, fp32.SerializeToString(), inputs, shapes, imgsz, head, fp16=False)
    agreed = None if labels is not None else _as_labels(reference, shapes, ctx.param("conf"))
    unmeasurable = agreed is not None and not any(len(a) for a in agreed)
    if unmeasurable and not ctx.param("accept_accuracy_drop"):
        raise UserError(f"the FP32 graph detects nothing at conf {ctx.param('conf')} on {measured_on}: there is "
                        f"nothing for the {precision.upper()} graph to agree with, so its accuracy cannot be measured",
                        key=f"{key}.validation",
                        fix="give validation: {images: FOLDER, labels: FOLDER} with the objects served, or set "
                            "accept_accuracy_drop: true to build it unmeasured")

    x = np.stack([family.letterbox(img, imgsz) for img in calibration])
    batches = [{"images": x[i:i + BATCH]} for i in range(0, len(x), BATCH)]
    keep = family.fp32_nodes(fp32)
    made = quantize.quantize(source, ctx.output(), batches, precision=precision, method=cal["method"], exclude=keep)
    graph = onnx.load(str(ctx.output()))
    onnx_tools.finish(graph, ctx.output(), like=fp32)  # the raw graph's metadata (names, imgsz), and checked
    support = trt_support.require(graph, ctx.param("tensorrt_check"), what=f"{precision.upper()} graph", key=key)

    fp16 = convert_fp16(fp32, keep_io_types=[fp32.graph.output[0].name], node_block_list=keep)
    graphs = {"fp16": fp16.SerializeToString(), precision: graph.SerializeToString()}
    found = {"fp32": reference, **{name: _detect(family, g, inputs, shapes, imgsz, head, fp16=name == "fp16")
                                   for name, g in graphs.items()}}
    if labels is not None:
        scores = {name: family.mean_ap(d, labels, shapes) for name, d in found.items()}
        metric = "map50_95"
        drop = 100.0 * (scores["fp32"][metric] - scores[precision][metric])
    else:
        scores = {name: {"agreement": family.mean_ap(d, agreed, shapes)["map50"]} for name, d in found.items()}
        metric = "agreement"
        drop = 100.0 * (scores["fp32"][metric] - scores[precision][metric])
    limit = ctx.param("max_accuracy_drop")
    limit = DEFAULT_DROP[metric] if limit is None else limit
    unit, what = ("mAP points", "mAP50-95") if metric == "map50_95" else ("percent", "agreement with the FP32 graph")
    passed, accuracy = quantize.judge(
        {"measured_on": measured_on, "images": len(images), "metric": metric,
         **{name: {k: round(v, 4) for k, v in s.items()} for name, s in scores.items()}, "unit": unit},
        drop=drop, limit=limit, accept=bool(ctx.param("accept_accuracy_drop")),
        unmeasured="the FP32 graph detected nothing at conf to agree with" if unmeasurable else None,
        failure=f"the {precision.upper()} graph loses {drop:.2f} {unit} of {what} on {measured_on} "
                f"(FP32 {scores['fp32'][metric]:.4f}, FP16 {scores['fp16'][metric]:.4f}, "
                f"{precision.upper()} {scores[precision][metric]:.4f})",
        key=f"{key}.max_accuracy_drop",
        fix="calibrate on more images like the ones served (calibration.count), try another calibration.method, "
            "raise max_accuracy_drop, set accept_accuracy_drop: true, or use precision fp16")
    return {"passed": passed, "precision": precision,
            "calibration": {"images": len(calibration), "method": cal["method"],
                                                    "letterbox": f"{imgsz}x{imgsz}, as served"},
            **made, "accuracy": accuracy, "tensorrt_support": support,
            "note": "accuracy measured in onnxruntime on the CPU (it executes Q/DQ); no TensorRT engine of this graph "
                    "has been built or timed here"}


def _detect(family, graph: bytes, x, shapes, imgsz: int, head: dict, fp16: bool):
    import numpy as np
    import onnxruntime as ort

    from ..engine.threads import session_options

    opts = session_options()
    if fp16:  # onnxruntime's extended optimizations fuse FP16 graphs it then cannot run on the CPU
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    raw = np.concatenate([sess.run(None, {name: x[i:i + BATCH].astype(np.float16 if fp16 else np.float32)})[0]
                          for i in range(0, len(x), BATCH)])
    return family.detections(raw, shapes, imgsz=imgsz, conf=VAL_CONF, iou=VAL_IOU, max_det=VAL_MAX_DET, head=head)


def _as_labels(detections, shapes, conf: float):
    """The FP32 graph's detections at the model's `conf`, as YOLO labels: what agreement is measured against."""
    import numpy as np

    out = []
    for (boxes, scores, classes), (h, w, *_) in zip(detections, shapes):
        keep = scores >= conf
        b = boxes[keep]
        out.append(np.stack([classes[keep], (b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h,
                             (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], 1).astype(np.float32).reshape(-1, 5))
    return out


def _labels(ctx: StepContext, held: dict, classes: int):
    """Each validation image's YOLO labels ([n, 5]); a paragraph for a file that is not YOLO format or names a
    class the model does not have."""
    import numpy as np

    files = {p.stem: p for p in ctx.inputs("labels")}
    out = []
    for image in ctx.inputs("validation"):
        p = files.get(image.stem)
        rows = []
        for n, line in enumerate(p.read_text().splitlines() if p else [], 1):
            if not line.strip():
                continue
            try:
                cls, *box = line.split()
                cls, box = int(cls), [float(v) for v in box]
            except ValueError:
                cls, box = -1, []
            if len(box) != 4 or not all(0.0 <= v <= 1.0 for v in box):
                raise UserError(f"{p} line {n} is not a YOLO label ('class cx cy w h', normalised to [0, 1]): {line!r}",
                                key=f"{ctx.key}.validation.labels", fix="correct the label file")
            if not 0 <= cls < classes:
                raise UserError(f"{p} line {n} names class {cls}, but the model has {classes} classes (0..{classes - 1})",
                                key=f"{ctx.key}.validation.labels",
                                fix="use labels made for this model's classes (the checkpoint's class order)")
            rows.append([cls, *box])
        out.append(np.array(rows, np.float32).reshape(-1, 5))
    if not any(len(r) for r in out):
        raise UserError(f"no label file in {held['labels']} names an object of the validation images",
                        key=f"{ctx.key}.validation.labels",
                        fix="give one YOLO .txt per image, named like it (0001.jpg -> 0001.txt)")
    return out
