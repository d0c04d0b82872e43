"""Where every artifact lives: the seed's naming convention in one place."""
from __future__ import annotations

FORMATS = ("onnx", "onnx_end2end", "trt", "trt_end2end")
# Triton folder of each format, from the model's base name.
FOLDER_SUFFIX = {"onnx": "", "onnx_end2end": "_end2end", "trt": "_trt", "trt_end2end": "_trt_end2end"}
MODELS = "models"
WORK = "pytorch_models"


def folder(model: dict, fmt: str) -> str:
    return model["name"] + FOLDER_SUFFIX[fmt]


def folder_path(model: dict, fmt: str) -> str:
    return f"{MODELS}/{folder(model, fmt)}"


def checkpoint_record(model: dict) -> str:
    return f"{WORK}/{model['name']}.checkpoint.json"


def raw_onnx(model: dict) -> str:
    """The raw export is the `onnx` format's Triton model when that format is wanted, else an intermediate."""
    if "onnx" in model["settings"]["formats"]:
        return f"{folder_path(model, 'onnx')}/1/model.onnx"
    return f"{WORK}/{model['name']}.onnx"


def verification_record(artifact: str) -> str:
    return artifact + ".verification.json"


def end2end_onnx(model: dict) -> str:
    return f"{folder_path(model, 'onnx_end2end')}/1/model.onnx"


def wants_fp16(model: dict) -> bool:
    """FP16 graphs exist for the TensorRT tracks when the model's precision is fp16."""
    s = model["settings"]
    return s["precision"] == "fp16" and any(f in s["formats"] for f in ("trt", "trt_end2end"))


def fp16_onnx(model: dict) -> str:
    return f"{WORK}/{model['name']}.fp16.onnx"


def fp16_end2end_onnx(model: dict) -> str:
    return f"{WORK}/{model['name']}_end2end.fp16.onnx"
