"""A detector's graphs: the raw export, its End2End graph (the tail its head kind needs), the FP16 copies
TensorRT compiles."""
from __future__ import annotations

from ...engine.step import Step
from ...families.base import ANCHORS, TOPK
from ...tooling import quantize, trt_support
from .. import layout as L
from .common import detector, plans, settings, uses_family, wants

QUANTIZED = quantize.QUANTIZED


def head(m: dict) -> dict:
    """The head the raw graph serves (the builder's `head` parameter): the one-to-many branch, or the
    one-to-one branch with its top-k settings (which then shape the raw graph itself)."""
    if m["head"] == TOPK:
        return {"kind": TOPK, "max_det": m["settings"]["topk"], "agnostic": m["settings"]["class_agnostic"]}
    return {"kind": m["head"]}


def tensorrt_check(compiled):
    """Step param: the TensorRT majors a graph is checked for when a plan is compiled from it, else None."""
    return lambda m: trt_support.majors(m["settings"]["triton_target"]) if compiled(m) else None


def _raw_compiled(m: dict) -> bool:
    return "trt" in m["settings"]["formats"] and trt_source(m, False) == L.raw_onnx(m)


def _end2end_compiled(m: dict) -> bool:
    return "trt_end2end" in m["settings"]["formats"] and trt_source(m, True) == L.end2end_onnx(m)


EXPORT_ONNX = Step(
    basename="export_onnx", doc="Export {name} to its raw ONNX ({head} head) and check it against PyTorch",
    builder="pipeline.builders.raw_onnx:export", applies=detector(), uses=uses_family,
    inputs={"checkpoint": lambda m: m["pt"], "checkpoint_record": L.checkpoint_record},
    outputs={"onnx": L.raw_onnx}, record=lambda m: L.verification_record(L.raw_onnx(m)),
    params=lambda m: {**settings("imgsz", "opset")(m), "head": head(m), "untrained": m["untrained"],
                      "trust_checkpoint": m["trust_checkpoint"], "tensorrt_check": tensorrt_check(_raw_compiled)(m)})


def wants_end2end_onnx(m: dict) -> bool:
    """The FP32 End2End graph: served (onnx_end2end), or compiled into an FP32 End2End plan."""
    s = m["settings"]
    return "onnx_end2end" in s["formats"] or ("trt_end2end" in s["formats"] and s["precision"] == "fp32")


def wants_fp16(m: dict) -> bool:
    """FP16 graphs exist for the TensorRT formats when the model's precision is fp16."""
    return m["settings"]["precision"] == "fp16" and plans(m)


def wants_quantized(m: dict) -> bool:
    """INT8 / FP8 Q/DQ graphs exist for the TensorRT formats when the model's precision is int8 or fp8."""
    return m["settings"]["precision"] in QUANTIZED and plans(m)


def trt_source(m: dict, end2end: bool) -> str:
    """The ONNX a plan is compiled from: its precision is the engine's (strongly typed networks)."""
    if m["settings"]["precision"] == "fp16":
        return L.fp16_end2end_onnx(m) if end2end else L.fp16_onnx(m)
    if m["settings"]["precision"] in QUANTIZED:
        return L.quantized_end2end_onnx(m) if end2end else L.quantized_onnx(m)
    return L.end2end_onnx(m) if end2end else L.raw_onnx(m)


def end2end_graph(m: dict, fmt: str) -> str:
    """The ONNX whose I/O is a detector's End2End folder's (`fmt`): the graph served or compiled."""
    return L.end2end_onnx(m) if fmt == "onnx_end2end" else trt_source(m, True)


# The End2End tail each head kind needs: (builder, the manifest settings it reads). The one-to-one head's
# tail has no NMS (no iou): a score threshold, the count, zero padding, INT32 classes.
END2END_TAILS = {
    ANCHORS: ("pipeline.builders.end2end_onnx:build", ("imgsz", "topk", "iou", "conf", "normalize_boxes",
                                                        "class_agnostic")),
    TOPK: ("pipeline.builders.topk_end2end_onnx:build", ("imgsz", "topk", "conf", "normalize_boxes")),
}


def _end2end(basename: str, kind: str, source, output, wanted, compiled, doc: str) -> Step:
    builder, keys = END2END_TAILS[kind]
    return Step(basename=basename, doc=doc, builder=builder, uses=uses_family,
                applies=detector(lambda m: m["head"] == kind and wanted(m)), inputs={"onnx": source},
                outputs={"onnx": output}, record=lambda m: L.verification_record(output(m)),
                params=lambda m: {**settings(*keys)(m), "tensorrt_check": tensorrt_check(compiled)(m)})


END2END_ONNX = tuple(_end2end("end2end_onnx", h, L.raw_onnx, L.end2end_onnx, wants_end2end_onnx, _end2end_compiled,
                              "Append the End2End tail to {name}'s raw ONNX ({head} head), check its detections")
                     for h in END2END_TAILS)

FP16_ONNX = Step(
    basename="fp16_onnx", doc="FP16 copy of {name}'s raw ONNX for TensorRT (FP16 input, FP32 box decoding)",
    builder="pipeline.builders.fp16_onnx:convert", applies=detector(wants_fp16), uses=uses_family,
    inputs={"onnx": L.raw_onnx}, outputs={"onnx": L.fp16_onnx},
    record=lambda m: L.verification_record(L.fp16_onnx(m)),
    params=lambda m: {**settings("imgsz")(m), "head": head(m), "tensorrt_check": tensorrt_check(lambda m: True)(m)})

FP16_END2END_ONNX = tuple(_end2end("fp16_end2end_onnx", h, L.fp16_onnx, L.fp16_end2end_onnx,
                                   lambda m: wants_fp16(m) and wants("trt_end2end")(m), lambda m: True,
                                   "The End2End tail on {name}'s FP16 ONNX (FP32 tail and outputs), for TensorRT")
                          for h in END2END_TAILS)

def calibration_images(m: dict) -> list[str]:
    """A quantized graph's calibration images: the first `count` of its folder, by name (their content is
    the step's input: other images, or the same images changed, rebuild it)."""
    cal = m["settings"]["calibration"]
    return quantize.image_files(cal["images"], cal["count"]) if cal else []


def validation_images(m: dict) -> list[str]:
    held = m["settings"]["validation"]
    return quantize.image_files(held["images"]) if held else []


def validation_labels(m: dict) -> list[str]:
    held = m["settings"]["validation"]
    return quantize.label_files(held.get("labels"), validation_images(m)) if held else []


def quantization_params(m: dict) -> dict:
    s = m["settings"]
    cal = s["calibration"]
    return {"precision": s["precision"], "validation": s["validation"],
            "calibration": {"images": cal["images"], "count": cal["count"], "method": cal["method"],
                            "minimum": quantize.CALIBRATION_MIN},
            "max_accuracy_drop": s["max_accuracy_drop"], "accept_accuracy_drop": s["accept_accuracy_drop"]}


QUANTIZED_ONNX = Step(
    basename="quantized_onnx", doc="{settings[precision]} Q/DQ copy of {name}'s raw ONNX for TensorRT, calibrated on "
                                   "its images, its accuracy measured against FP32 and FP16",
    builder="pipeline.builders.quantized_onnx:build", applies=detector(wants_quantized), uses=uses_family,
    inputs={"onnx": L.raw_onnx, "checkpoint_record": L.checkpoint_record, "calibration": calibration_images,
            "validation": validation_images, "labels": validation_labels},
    outputs={"onnx": L.quantized_onnx}, record=lambda m: L.verification_record(L.quantized_onnx(m)),
    params=lambda m: {**settings("imgsz", "conf")(m), "head": head(m), **quantization_params(m),
                      "tensorrt_check": tensorrt_check(lambda m: True)(m)})

QUANTIZED_END2END_ONNX = tuple(_end2end("quantized_end2end_onnx", h, L.quantized_onnx, L.quantized_end2end_onnx,
                                        lambda m: wants_quantized(m) and wants("trt_end2end")(m), lambda m: True,
                                        "The End2End tail on {name}'s quantized ONNX (FP32 tail and outputs), for "
                                        "TensorRT")
                               for h in END2END_TAILS)

STEPS = (EXPORT_ONNX, *END2END_ONNX, FP16_ONNX, *FP16_END2END_ONNX, QUANTIZED_ONNX, *QUANTIZED_END2END_ONNX)
