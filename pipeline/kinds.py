"""The artifact kinds, declared once: inputs, outputs, the parameters that make each stale, its builder.

Adding a model family or an artifact means adding a declaration here (and its builder module); the
runner does the atomic write, the record and the staleness for all of them.
"""
from __future__ import annotations

from . import layout as L
from .gpu import plan_identity
from .runner import Step


def _settings(*keys: str):
    return lambda m: {k: m["settings"][k] for k in keys}


def _class_spec(m: dict) -> dict:
    return {"num_classes": m["num_classes"], "class_names": m["class_names"]}


def yolo(test=lambda m: True):
    return lambda m: L.family(m) == "yolo" and test(m)


def clip(test=lambda m: True):
    return lambda m: L.family(m) == "clip" and test(m)


# ---- checkpoints: every model ends in pytorch_models/<name>.checkpoint.json (classes, names, SHA-256)
DOWNLOAD = Step(
    basename="download", doc="Download the built-in weights {pt} (Ultralytics assets) and verify them",
    builder="pipeline.weights:download", applies=yolo(lambda m: m["source"] == "builtin"),
    outputs=lambda m: [m["pt"]], record=L.checkpoint_record,
    params=lambda m: {"url": m["url"], **_class_spec(m)}, tools=("ultralytics", "torch"),
    code=("pipeline/weights.py",))

MATERIALIZE = Step(
    basename="materialize", doc="Build the UNTRAINED {arch} model {pt} (random weights, for smoke tests)",
    builder="pipeline.weights:materialize", applies=yolo(lambda m: m["source"] == "arch"),
    outputs=lambda m: [m["pt"]], record=L.checkpoint_record,
    params=lambda m: {"arch": m["arch"], **_class_spec(m)}, tools=("ultralytics", "torch"),
    code=("pipeline/weights.py",))

INSPECT = Step(
    basename="inspect", doc="Check the user checkpoint {pt} is a detection model; record classes and SHA-256",
    builder="pipeline.weights:inspect", applies=yolo(lambda m: m["source"] == "file"),
    inputs=lambda m: [m["pt"]], outputs=lambda m: [], record=L.checkpoint_record,
    params=_class_spec, tools=("ultralytics", "torch"), code=("pipeline/weights.py",))

CHECKPOINTS = (DOWNLOAD, MATERIALIZE, INSPECT)

# ---- graphs
EXPORT_ONNX = Step(
    basename="export_onnx", doc="Export {name} to raw ONNX [B,4+nc,anchors] and check it against PyTorch",
    builder="pipeline.yolo_onnx:export", applies=yolo(),
    inputs=lambda m: [m["pt"], L.checkpoint_record(m)], outputs=lambda m: [L.raw_onnx(m)],
    record=lambda m: L.verification_record(L.raw_onnx(m)),
    params=_settings("imgsz", "opset"), tools=("torch", "ultralytics", "onnx"),
    code=("pipeline/yolo_onnx.py",))

_NMS = ("imgsz", "topk", "iou", "conf", "normalize_boxes", "class_agnostic")
_E2E_CODE = ("pipeline/end2end_onnx.py", "pipeline/efficient_nms.py")

END2END_ONNX = Step(
    basename="end2end_onnx", doc="Append EfficientNMS_TRT to {name}'s raw ONNX (graph surgery), check its detections",
    builder="pipeline.end2end_onnx:build", applies=yolo(L.wants_end2end_onnx),
    inputs=lambda m: [L.raw_onnx(m)], outputs=lambda m: [L.end2end_onnx(m)],
    record=lambda m: L.verification_record(L.end2end_onnx(m)),
    params=_settings(*_NMS), tools=("onnx", "onnx_graphsurgeon", "onnxruntime_extensions"), code=_E2E_CODE)

FP16_ONNX = Step(
    basename="fp16_onnx", doc="FP16 copy of {name}'s raw ONNX for TensorRT (FP16 input, FP32 box decoding)",
    builder="pipeline.fp16_onnx:convert", applies=yolo(L.wants_fp16),
    inputs=lambda m: [L.raw_onnx(m)], outputs=lambda m: [L.fp16_onnx(m)],
    record=lambda m: L.verification_record(L.fp16_onnx(m)),
    params=_settings("imgsz"), tools=("onnx", "onnxruntime"), code=("pipeline/fp16_onnx.py",))

FP16_END2END_ONNX = Step(
    basename="fp16_end2end_onnx", doc="EfficientNMS_TRT on {name}'s FP16 ONNX (FP32 NMS and outputs), for TensorRT",
    builder="pipeline.end2end_onnx:build",
    applies=yolo(lambda m: L.wants_fp16(m) and "trt_end2end" in m["settings"]["formats"]),
    inputs=lambda m: [L.fp16_onnx(m)], outputs=lambda m: [L.fp16_end2end_onnx(m)],
    record=lambda m: L.verification_record(L.fp16_end2end_onnx(m)),
    params=_settings(*_NMS), tools=("onnx", "onnx_graphsurgeon", "onnxruntime_extensions"), code=_E2E_CODE)


def _plan(fmt: str, source, family) -> Step:
    return Step(
        basename="plan", doc=f"TensorRT plan of {{name}} ({fmt}) from its {{settings[precision]}} ONNX — needs TensorRT + GPU",
        builder="pipeline.tensorrt_plan:build", isolate=True,
        applies=family(lambda m: fmt in m["settings"]["formats"]), subname=lambda m: L.folder(m, fmt),
        inputs=lambda m: [source(m)], outputs=lambda m: [L.plan(m, fmt)],
        record=lambda m: L.verification_record(L.plan(m, fmt)),
        params=lambda m: {**_settings("max_batch", "workspace_gb", "precision")(m), **plan_identity()},
        code=("pipeline/tensorrt_plan.py",))


PLAN = _plan("trt", lambda m: L.trt_source(m, False), yolo)
PLAN_END2END = _plan("trt_end2end", lambda m: L.trt_source(m, True), yolo)

# ---- MobileCLIP2 encoders (Track E): two records per model, role image / text
_CLIP_TOOLS = ("torch", "open_clip_torch", "timm", "onnx")
CLIP_WEIGHTS = Step(
    basename="clip_weights", doc="Load {clip_model} weights ({weights_source}) through open_clip; record "
                                 "logit_scale, preprocessing, tokenizer",
    builder="pipeline.clip_encoders:weights", applies=clip(lambda m: m["role"] == "image"),
    subname=lambda m: m["encoder"],
    inputs=lambda m: [m["weights"]] if m["weights_source"] == "file" else [], outputs=lambda m: [],
    record=L.clip_record, params=lambda m: {k: m[k] for k in ("clip_model", "weights_source", "weights")},
    tools=("open_clip_torch", "timm", "torch"), code=("pipeline/clip_encoders.py",))

ENCODER_ONNX = Step(
    basename="encoder_onnx", doc="Export the reparameterized {clip_model} {role} encoder to ONNX, checked vs PyTorch",
    builder="pipeline.clip_encoders:export", applies=clip(),
    inputs=lambda m: [L.clip_record(m)] + ([m["weights"]] if m["weights_source"] == "file" else []),
    outputs=lambda m: [L.encoder_onnx(m)], record=lambda m: L.verification_record(L.encoder_onnx(m)),
    params=lambda m: {"opset": m["settings"]["opset"], "model": m["clip_model"], "role": m["role"]},
    tools=_CLIP_TOOLS, code=("pipeline/clip_encoders.py",))

ENCODER_TRT_ONNX = Step(
    basename="encoder_trt_onnx", doc="The {role} encoder graph TensorRT compiles ({settings[precision]}; INT32 tokens)",
    builder="pipeline.clip_encoders:trt_graph", applies=clip(lambda m: "trt" in m["settings"]["formats"]),
    inputs=lambda m: [L.encoder_onnx(m), L.clip_record(m)], outputs=lambda m: [L.encoder_trt_onnx(m)],
    record=lambda m: L.verification_record(L.encoder_trt_onnx(m)),
    params=_settings("precision"), tools=("onnx", "onnxruntime", "onnx_graphsurgeon"),
    code=("pipeline/clip_encoders.py",))

PUBLISH_ENCODER = Step(
    basename="publish_onnx", doc="Serve {name}.onnx from the Triton repository (hard link)",
    builder="pipeline.clip_encoders:publish", applies=clip(lambda m: "onnx" in m["settings"]["formats"]),
    subname=lambda m: L.folder(m, "onnx"),
    inputs=lambda m: [L.encoder_onnx(m)], outputs=lambda m: [f"{L.folder_path(m, 'onnx')}/1/model.onnx"])

PLAN_ENCODER = _plan("trt", L.encoder_trt_onnx, clip)


# ---- Triton folders: one per format, each = model artifact + config.pbtxt + labels.txt
class Sidecar:
    """A small client-facing file beside config.pbtxt (labels.txt, encoder.json), written from a record."""

    def __init__(self, basename, filename, builder, source, wanted=lambda m: True):
        self.basename, self.filename, self.builder, self.source, self.wanted = basename, filename, builder, source, wanted


LABELS = Sidecar("labels", "labels.txt", "pipeline.triton_config:write_labels", L.checkpoint_record,
                 lambda m: m["settings"]["save_labels"])
ENCODER_INFO = Sidecar("encoder_info", "encoder.json", "pipeline.clip_encoders:write_info", L.clip_record)


class TritonFolder:
    """One Triton folder kind: the step making its model file (`artifact`: models/<folder>/1/model.*),
    the ONNX whose I/O its config describes (`io_source`, default the artifact), its sidecar."""

    def __init__(self, family, format, platform, model_step, artifact, io_source=None, sidecar=LABELS):
        self.family, self.format, self.platform, self.model_step = family, format, platform, model_step
        self.artifact, self.io_source, self.sidecar = artifact, io_source, sidecar

    def applies(self, m: dict) -> bool:
        return L.family(m) == self.family and self.format in m["settings"]["formats"]

    def model_task(self, m: dict) -> list[str]:
        """config.pbtxt and the sidecar run after the model file's task (order only: a new plan does not
        make them stale): no Triton folder without its model, even when the plan cannot be built."""
        return [f"{self.model_step.basename}:{self.model_step.subname(m)}"]

    def config_step(self) -> Step:
        fmt = self.format
        return Step(
            basename="config", doc=f"Write config.pbtxt of the {fmt} folder of {{name}} (Triton ModelConfig)",
            builder="pipeline.triton_config:write_config", applies=self.applies,
            subname=lambda m: L.folder(m, fmt),
            inputs=lambda m: [(self.io_source or self.artifact)(m)], after=self.model_task,
            outputs=lambda m: [f"{L.folder_path(m, fmt)}/config.pbtxt"],
            params=lambda m: {"folder": L.folder(m, fmt), "platform": self.platform, "untrained": m["untrained"],
                              **_settings("max_batch", "dynamic_batching", "instance_group")(m)},
            tools=("tritonclient", "protobuf", "onnx"), code=("pipeline/triton_config.py",))

    def sidecar_step(self) -> Step:
        fmt, side = self.format, self.sidecar
        return Step(
            basename=side.basename, doc=f"Write {side.filename} of the {fmt} folder of {{name}}",
            builder=side.builder, applies=lambda m: self.applies(m) and side.wanted(m),
            subname=lambda m: L.folder(m, fmt),
            inputs=lambda m: [side.source(m)], after=self.model_task,
            outputs=lambda m: [f"{L.folder_path(m, fmt)}/{side.filename}"],
            code=(side.builder.split(":")[0].replace(".", "/") + ".py",))


FOLDERS = (
    TritonFolder("yolo", "onnx", "onnxruntime_onnx", EXPORT_ONNX, L.raw_onnx),
    TritonFolder("yolo", "onnx_end2end", "onnxruntime_onnx", END2END_ONNX, L.end2end_onnx),
    # A plan's I/O is its ONNX's (the config is written from that, so a config-only change never
    # touches the plan, and the config exists wherever the plan's ONNX does).
    TritonFolder("yolo", "trt", "tensorrt_plan", PLAN, lambda m: L.plan(m, "trt"), lambda m: L.trt_source(m, False)),
    TritonFolder("yolo", "trt_end2end", "tensorrt_plan", PLAN_END2END, lambda m: L.plan(m, "trt_end2end"),
                 lambda m: L.trt_source(m, True)),
    TritonFolder("clip", "onnx", "onnxruntime_onnx", PUBLISH_ENCODER, lambda m: f"{L.folder_path(m, 'onnx')}/1/model.onnx",
                 sidecar=ENCODER_INFO),
    TritonFolder("clip", "trt", "tensorrt_plan", PLAN_ENCODER, lambda m: L.plan(m, "trt"), L.encoder_trt_onnx,
                 sidecar=ENCODER_INFO),
)
