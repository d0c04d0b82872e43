"""The last member of a Track D ensemble: End2End boxes back to the original image's pixels.

EfficientNMS_TRT's boxes are in the letterboxed input (divided by its size with normalize_boxes). The
DALI preprocessing member outputs, per image, the letterbox it applied (gain_x, gain_y, pad_x, pad_y,
width, height: tooling/dali_preprocess.py); this small ONNX graph undoes it exactly as Ultralytics'
`scale_boxes` + `clip_boxes` do for `predict`: x = (x' - pad_x) / gain_x, clipped to [0, width] (y alike).
So a client sends encoded images and gets boxes in its own image's coordinates: no letterbox arithmetic
on the client. Checked in onnxruntime against NumPy on letterboxes of several shapes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..tooling import onnx_tools

if TYPE_CHECKING:
    from ..engine.context import StepContext

INPUTS = ("boxes", "letterbox")
OUTPUT = "det_boxes"


def graph(topk: int, scale: float, opset: int):
    """[B, topk, 4] letterboxed boxes (times `scale`: the input size when they are normalised) + [B, 6]."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    nodes = [
        helper.make_node("Mul", ["boxes", "scale"], ["pixels"]),
        helper.make_node("Unsqueeze", ["letterbox", "axis1"], ["lb"]),                       # [B, 1, 6]
        helper.make_node("Slice", ["lb", "s0", "s2", "axis2"], ["gain"]),                   # gain_x, gain_y
        helper.make_node("Slice", ["lb", "s2", "s4", "axis2"], ["pad"]),                    # pad_x, pad_y
        helper.make_node("Slice", ["lb", "s4", "s6", "axis2"], ["size"]),                   # width, height
        helper.make_node("Concat", ["gain", "gain"], ["gain4"], axis=2),
        helper.make_node("Concat", ["pad", "pad"], ["pad4"], axis=2),
        helper.make_node("Concat", ["size", "size"], ["size4"], axis=2),
        helper.make_node("Sub", ["pixels", "pad4"], ["shifted"]),
        helper.make_node("Div", ["shifted", "gain4"], ["unscaled"]),
        helper.make_node("Max", ["unscaled", "zero"], ["low_clipped"]),
        helper.make_node("Min", ["low_clipped", "size4"], [OUTPUT]),
    ]
    inits = [const("scale", np.float32(scale)), const("zero", np.float32(0)), const("axis1", np.int64([1])),
             const("axis2", np.int64([2])), const("s0", np.int64([0])), const("s2", np.int64([2])),
             const("s4", np.int64([4])), const("s6", np.int64([6]))]
    g = helper.make_graph(
        nodes, "boxes_to_image",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", topk, 4]),
         helper.make_tensor_value_info("letterbox", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", topk, 4])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="triton-export-pipeline")
    onnx.checker.check_model(model, full_check=True)
    return model


def letterbox_params(h: int, w: int, imgsz: int) -> tuple:
    """(gain_x, gain_y, pad_x, pad_y, width, height) of Ultralytics' LetterBox for an h x w image: what the
    DALI model outputs as `letterbox`, in Python."""
    r = min(imgsz / h, imgsz / w)
    nw, nh = max(round(w * r), 1), max(round(h * r), 1)
    return nw / w, nh / h, round((imgsz - nw) / 2 - 0.1), round((imgsz - nh) / 2 - 0.1), w, h


def reference(boxes, letterbox, scale: float):
    """Ultralytics' scale_boxes (+ clip) in NumPy, per image."""
    import numpy as np

    out = boxes.astype(np.float32) * np.float32(scale)
    for i, (gx, gy, px, py, w, h) in enumerate(letterbox):
        out[i, :, [0, 2]] = np.clip((out[i, :, [0, 2]] - px) / gx, 0, w)
        out[i, :, [1, 3]] = np.clip((out[i, :, [1, 3]] - py) / gy, 0, h)
    return out


def build(ctx: StepContext) -> dict:
    """Step builder: the graph, checked in onnxruntime against the NumPy reference."""
    import numpy as np

    imgsz, topk = ctx.param("imgsz"), ctx.param("topk")
    scale = float(imgsz) if ctx.param("normalize_boxes") else 1.0
    model = graph(topk, scale, ctx.param("opset"))
    onnx_tools.finish(model, ctx.output())
    rng = np.random.default_rng(0)
    # letterboxes of a landscape, a portrait, a tiny and an upscaled image
    shapes = [(1080, 1920), (1920, 1080), (7, 300), (100, 120)]
    letterbox = np.asarray([letterbox_params(h, w, imgsz) for h, w in shapes], np.float32)
    boxes = (rng.uniform(-0.05, 1.05, (len(shapes), topk, 4)) * (imgsz / scale)).astype(np.float32)
    got = onnx_tools.run(ctx.output(), {"boxes": boxes, "letterbox": letterbox})[0]
    want = reference(boxes, letterbox, scale)
    err = float(np.abs(got - want).max())
    if err > 1e-3:
        raise RuntimeError(f"boxes-to-image graph differs from scale_boxes by {err} px")
    return {"compared_with": "Ultralytics scale_boxes + clip_boxes (NumPy)", "images": len(shapes),
            "max_abs_px": err, "scale": scale}
