"""The last member of a Track D ensemble: End2End boxes back to the original image's pixels.

EfficientNMS_TRT's boxes are in the letterboxed input (divided by its size with normalize_boxes). The
DALI preprocessing member outputs each original image's (height, width) (tooling/dali_preprocess.py); this
small ONNX graph computes from it the letterbox DALI applied — Ultralytics' LetterBox arithmetic in float64,
ONNX Round being Python's half-to-even round — and undoes it as Ultralytics' `scale_boxes` + `clip_boxes`
do for `predict`: x = (x' - pad_x) / gain_x, clipped to [0, width] (y alike). So a client sends encoded
images and gets boxes in its own image's coordinates: no letterbox arithmetic on the client, and none in
the DALI pipeline's per-batch CPU operators. Checked in onnxruntime against NumPy on several shapes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..tooling import onnx_tools

if TYPE_CHECKING:
    from ..engine.context import StepContext

INPUTS = ("boxes", "image_size")
OUTPUT = "det_boxes"


def graph(topk: int, imgsz: int, scale: float, opset: int):
    """[B, topk, 4] letterboxed boxes (times `scale`: the input size when they are normalised) + [B, 2]
    original (height, width), for an imgsz x imgsz letterbox."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    xyxy = "xyxy"  # [B, 2] (y, x) pairs spread over x1, y1, x2, y2
    nodes = [
        # the letterbox, as letterbox_params below computes it: float64, Python's rounding
        helper.make_node("Cast", ["image_size"], ["hw"], to=TensorProto.DOUBLE),            # [B, 2] h, w
        helper.make_node("ReduceMax", ["hw"], ["long"], axes=[1], keepdims=1)
        if opset < 18 else helper.make_node("ReduceMax", ["hw", "axis1"], ["long"], keepdims=1),
        helper.make_node("Div", ["imgsz", "long"], ["r"]),                                  # min(S/h, S/w)
        helper.make_node("Mul", ["hw", "r"], ["scaled"]),
        helper.make_node("Round", ["scaled"], ["rounded"]),                                 # half to even
        helper.make_node("Max", ["rounded", "one"], ["new"]),                               # at least 1 px
        helper.make_node("Sub", ["imgsz", "new"], ["spare"]),
        helper.make_node("Mul", ["spare", "half"], ["half_spare"]),
        helper.make_node("Floor", ["half_spare"], ["pad64"]),                               # round(d/2 - 0.1)
        helper.make_node("Div", ["new", "hw"], ["gain64"]),
        helper.make_node("Cast", ["gain64"], ["gain"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["pad64"], ["pad"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["gain", xyxy], ["gain4"], axis=1),                      # [B, 4]
        helper.make_node("Gather", ["pad", xyxy], ["pad4"], axis=1),
        helper.make_node("Gather", ["image_size", xyxy], ["size4"], axis=1),
        helper.make_node("Unsqueeze", ["gain4", "axis1"], ["gain41"]),                      # [B, 1, 4]
        helper.make_node("Unsqueeze", ["pad4", "axis1"], ["pad41"]),
        helper.make_node("Unsqueeze", ["size4", "axis1"], ["size41"]),
        # scale_boxes + clip_boxes, in float32
        helper.make_node("Mul", ["boxes", "scale"], ["pixels"]),
        helper.make_node("Sub", ["pixels", "pad41"], ["shifted"]),
        helper.make_node("Div", ["shifted", "gain41"], ["unscaled"]),
        helper.make_node("Max", ["unscaled", "zero"], ["low_clipped"]),
        helper.make_node("Min", ["low_clipped", "size41"], [OUTPUT]),
    ]
    inits = [const("scale", np.float32(scale)), const("zero", np.float32(0)), const("imgsz", np.float64(imgsz)),
             const("one", np.float64(1)), const("half", np.float64(0.5)), const("axis1", np.int64([1])),
             const(xyxy, np.int64([1, 0, 1, 0]))]
    g = helper.make_graph(
        nodes, "boxes_to_image",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", topk, 4]),
         helper.make_tensor_value_info("image_size", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", topk, 4])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="triton-export-pipeline")
    onnx.checker.check_model(model, full_check=True)
    return model


def letterbox_params(h: int, w: int, imgsz: int) -> tuple:
    """(gain_x, gain_y, pad_x, pad_y, width, height) of Ultralytics' LetterBox for an h x w image, in Python:
    what the graph computes from the image size."""
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
    model = graph(topk, imgsz, scale, ctx.param("opset"))
    onnx_tools.finish(model, ctx.output())
    rng = np.random.default_rng(0)
    # letterboxes of a landscape, a portrait, a tiny and an upscaled image
    shapes = [(1080, 1920), (1920, 1080), (7, 300), (100, 120), (721, 1280), (1, 4000)]
    letterbox = np.asarray([letterbox_params(h, w, imgsz) for h, w in shapes], np.float32)
    boxes = (rng.uniform(-0.05, 1.05, (len(shapes), topk, 4)) * (imgsz / scale)).astype(np.float32)
    got = onnx_tools.run(ctx.output(), {"boxes": boxes, "image_size": np.asarray(shapes, np.float32)})[0]
    want = reference(boxes, letterbox, scale)
    err = float(np.abs(got - want).max())
    if err > 1e-3:
        raise RuntimeError(f"boxes-to-image graph differs from scale_boxes by {err} px")
    return {"compared_with": "Ultralytics scale_boxes + clip_boxes (NumPy)", "images": len(shapes),
            "max_abs_px": err, "scale": scale}
