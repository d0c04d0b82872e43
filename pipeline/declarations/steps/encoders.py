"""An encoder family's steps (MobileCLIP2, visual search): two records per model, role image / text,
sharing one weights record."""
from __future__ import annotations

from ...engine.step import Step
from ...tooling import trt_support
from .. import layout as L
from .common import encoder, uses_family, wants
from .graphs import QUANTIZED, calibration_images, quantization_params, validation_images


def _user_weights(m: dict) -> str | None:
    """A local open_clip checkpoint is an input (by content); a tag or 'untrained' is a parameter."""
    return m["weights"] if m["weights_source"] == "file" else None


def _weights_source(m: dict) -> dict:
    return {"clip_model": m["clip_model"], "weights_source": m["weights_source"],
            "weights": None if m["weights_source"] == "file" else m["weights"],
            "download_dir": L.clip_download_dir(m) if m["weights_source"] == "pretrained" else None,
            "trust_checkpoint": m["weights_source"] == "file" and m["trust_checkpoint"]}


CLIP_WEIGHTS = Step(
    basename="clip_weights", doc="Load {clip_model} weights ({weights_source}) through open_clip; record "
                                 "logit_scale, preprocessing, tokenizer",
    builder="pipeline.builders.clip_weights:weights", applies=encoder(lambda m: m["role"] == "image"),
    uses=uses_family, subname=lambda m: m["encoder"], inputs={"weights": _user_weights}, outputs={},
    record=L.clip_record, params=_weights_source)

ENCODER_ONNX = Step(
    basename="encoder_onnx", doc="Export the reparameterized {clip_model} {role} encoder to ONNX, checked vs PyTorch",
    builder="pipeline.builders.encoder_onnx:export", applies=encoder(), uses=uses_family,
    inputs={"clip_record": L.clip_record, "weights": _user_weights},
    outputs={"onnx": L.encoder_onnx}, record=lambda m: L.verification_record(L.encoder_onnx(m)),
    params=lambda m: {"opset": m["settings"]["opset"], "role": m["role"], **_weights_source(m)})

def _quantized_image(m: dict) -> bool:
    """INT8 / FP8 applies to the image encoder; the text encoder's graph stays FP16 (its activations are token
    embeddings, not pictures to calibrate on)."""
    return m["role"] == "image" and m["settings"]["precision"] in QUANTIZED


def _quantization(m: dict) -> dict:
    return quantization_params(m) if _quantized_image(m) else {}


ENCODER_TRT_ONNX = Step(
    basename="encoder_trt_onnx", doc="The {role} encoder graph TensorRT compiles ({settings[precision]}; INT32 tokens)",
    builder="pipeline.builders.encoder_trt_onnx:trt_graph", applies=encoder(wants("trt")), uses=uses_family,
    inputs={"onnx": L.encoder_onnx, "clip_record": L.clip_record,
            "calibration": lambda m: calibration_images(m) if _quantized_image(m) else None,
            "validation": lambda m: validation_images(m) if _quantized_image(m) else None},
    outputs={"onnx": L.encoder_trt_onnx}, record=lambda m: L.verification_record(L.encoder_trt_onnx(m)),
    params=lambda m: {"precision": m["settings"]["precision"], "role": m["role"], **_quantization(m),
                      "tensorrt_check": trt_support.majors(m["settings"]["triton_target"])})

PUBLISH_ENCODER = Step(
    basename="publish_onnx", doc="Serve {name}.onnx from the Triton repository (hard link)",
    builder="pipeline.builders.published_onnx:publish", applies=encoder(wants("onnx")),
    subname=lambda m: L.folder(m, "onnx"), inputs={"onnx": L.encoder_onnx}, outputs={"onnx": L.served_onnx})

STEPS = (CLIP_WEIGHTS, ENCODER_ONNX, ENCODER_TRT_ONNX, PUBLISH_ENCODER)
