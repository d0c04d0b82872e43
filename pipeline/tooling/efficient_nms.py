"""A NumPy reference of TensorRT's EfficientNMS_TRT plugin, and a way to run End2End graphs on a CPU.

Semantics (read from TensorRT's efficientNMSPlugin kernel sources, github.com/NVIDIA/TensorRT, plugin/efficientNMSPlugin):
* every (anchor, class) pair whose score is >= score_threshold is a candidate (multi-label);
* only the 4096 best candidates enter NMS (sorted by score, descending);
* a candidate is suppressed when its IoU with an already kept box is >= iou_threshold — per class,
  unless class_agnostic;
* at most max_output_boxes survive; boxes come out as corners (x1, y1, x2, y2) in the input's units;
  unused slots are zero; num_detections counts the valid ones.
`box_coding` 1 means the input boxes are (cx, cy, w, h); 0 means corners. `score_activation` 1 would
apply a sigmoid first (Ultralytics' scores are already sigmoided: we write 0).

TensorRT itself cannot run here: this reference is what the End2End graphs are checked against, and
the tests check the reference against Ultralytics' own NMS.
"""
from __future__ import annotations

import numpy as np

from ..engine.threads import session_options

MAX_CANDIDATES = 4096
# The End2End graphs' four outputs (the plugin's num_detections, boxes, scores, classes), by the names every
# End2End builder gives them and the ensembles wire them by
END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")
PLUGIN_DEFAULTS = {"background_class": -1, "score_activation": 0, "box_coding": 0, "class_agnostic": 0}


def efficient_nms(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
                  max_output_boxes: int, background_class: int = -1, score_activation: int = 0,
                  box_coding: int = 1, class_agnostic: int = 0, plugin_version: str = "1"):
    """boxes [B,N,4] (or [B,N,1,4]), scores [B,N,C] -> num_dets [B,1] i32, boxes [B,K,4], scores [B,K], classes [B,K] i32."""
    boxes = np.asarray(boxes)
    if boxes.ndim == 4:
        boxes = boxes[:, :, 0, :]
    scores = np.asarray(scores)
    out_dtype = boxes.dtype
    b, n, c = scores.shape
    k = int(max_output_boxes)
    num = np.zeros((b, 1), np.int32)
    det_boxes = np.zeros((b, k, 4), out_dtype)
    det_scores = np.zeros((b, k), scores.dtype)
    det_classes = np.zeros((b, k), np.int32)
    s_all = scores.astype(np.float32)
    if score_activation:
        s_all = 1.0 / (1.0 + np.exp(-s_all))
    thr = np.float32(score_threshold)
    for i in range(b):
        corners = _corners(boxes[i].astype(np.float32), box_coding)
        s = s_all[i].copy()
        if background_class >= 0:
            s[:, background_class] = -np.inf
        anchor, cls = np.nonzero(s >= thr)
        cand = s[anchor, cls]
        if len(cand) > MAX_CANDIDATES:  # only those scoring at least the 4096th best can enter (ties kept)
            best = cand >= np.partition(cand, len(cand) - MAX_CANDIDATES)[len(cand) - MAX_CANDIDATES]
            anchor, cls, cand = anchor[best], cls[best], cand[best]
        # Descending score; ties broken by (anchor, class) order for a deterministic reference.
        order = np.lexsort((cls, anchor, -cand))[:MAX_CANDIDATES]
        anchor, cls, cand = anchor[order], cls[order], cand[order]
        # Greedy NMS: a candidate is dropped when a kept, higher-scored box (of its class unless
        # class_agnostic) overlaps it by IoU >= iou_threshold. Each kept box marks the later candidates
        # it suppresses at once (the same decisions as testing each candidate against every kept box).
        # Only boxes still in play (later, not yet suppressed, of its class) are compared with a kept one.
        kept: list[int] = []
        suppressed = np.zeros(len(cand), bool)
        cand_boxes = corners[anchor]
        areas = _area(cand_boxes)
        for j in range(len(cand)):
            if suppressed[j]:
                continue
            kept.append(j)
            if len(kept) == k:
                break
            open_ = ~suppressed[j + 1:]
            if not class_agnostic:
                open_ &= cls[j + 1:] == cls[j]
            later = j + 1 + np.flatnonzero(open_)
            hit = _iou(cand_boxes[j], cand_boxes[later], areas[j], areas[later]) >= iou_threshold
            suppressed[later[hit]] = True
        m = len(kept)
        num[i, 0] = m
        if m:
            kept_a = np.asarray(kept)
            det_boxes[i, :m] = corners[anchor[kept_a]].astype(out_dtype)
            det_scores[i, :m] = scores[i][anchor[kept_a], cls[kept_a]]
            det_classes[i, :m] = cls[kept_a]
    return num, det_boxes, det_scores, det_classes


def _corners(boxes: np.ndarray, box_coding: int) -> np.ndarray:
    if box_coding == 0:
        return boxes
    cx, cy, w, h = boxes.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def _iou(box: np.ndarray, others: np.ndarray, box_area=None, others_area=None) -> np.ndarray:
    box_area = _area(box) if box_area is None else box_area
    others_area = _area(others) if others_area is None else others_area
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = box_area + others_area - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


# ---- running an End2End graph on the CPU: onnxruntime-extensions with the reference as a Python op
_REGISTERED = False


def _register() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    f, i = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int64

    @onnx_op(op_type="EfficientNMS_TRT", inputs=[f, f], outputs=[PyCustomOpDef.dt_int32, f, f, PyCustomOpDef.dt_int32],
             attrs={"score_threshold": f, "iou_threshold": f, "max_output_boxes": i, "background_class": i,
                    "score_activation": i, "box_coding": i, "class_agnostic": i,
                    "plugin_version": PyCustomOpDef.dt_string})
    def _efficient_nms_trt(boxes, scores, **attrs):
        return efficient_nms(boxes, scores, **attrs)

    _REGISTERED = True


def cpu_session(model):
    """An onnxruntime session for an End2End graph: a copy whose EfficientNMS_TRT node runs the reference.

    onnxruntime-extensions registers Python ops only in the domain 'ai.onnx.contrib', so the copy's node
    domain is rewritten; the graph on disk is not touched.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    _register()
    copy = onnx.ModelProto()
    copy.CopyFrom(model if isinstance(model, onnx.ModelProto) else onnx.load(str(model)))
    for node in copy.graph.node:
        if node.op_type == "EfficientNMS_TRT":
            node.domain = "ai.onnx.contrib"
            # onnxruntime-extensions passes every declared attribute: spell out the plugin's defaults
            given = {a.name for a in node.attribute}
            node.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in PLUGIN_DEFAULTS.items() if k not in given)
    imports = [o for o in copy.opset_import if o.domain not in ("TRT", "ai.onnx.contrib")]
    del copy.opset_import[:]
    copy.opset_import.extend(imports + [onnx.helper.make_opsetid("ai.onnx.contrib", 1)])
    opts = session_options()
    opts.register_custom_ops_library(get_library_path())
    return ort.InferenceSession(copy.SerializeToString(), opts, providers=["CPUExecutionProvider"])
