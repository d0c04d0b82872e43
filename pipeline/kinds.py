"""The artifact kinds, declared once: inputs, outputs, the parameters that make each stale, its builder.

Adding a model family or an artifact means adding a declaration here (and its builder module); the
runner does the atomic write, the record and the staleness for all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import layout as L
from .runner import Step


def _settings(*keys: str):
    return lambda m: {k: m["settings"][k] for k in keys}


def _class_spec(m: dict) -> dict:
    return {"num_classes": m["num_classes"], "class_names": m["class_names"]}


# ---- checkpoints: every model ends in pytorch_models/<name>.checkpoint.json (classes, names, SHA-256)
DOWNLOAD = Step(
    basename="download", doc="Download the built-in weights {pt} (Ultralytics assets) and verify them",
    builder="pipeline.weights:download", applies=lambda m: m["source"] == "builtin",
    outputs=lambda m: [m["pt"]], record=L.checkpoint_record,
    params=lambda m: {"url": m["url"], **_class_spec(m)}, tools=("ultralytics", "torch"),
    code=("pipeline/weights.py",))

MATERIALIZE = Step(
    basename="materialize", doc="Build the UNTRAINED {arch} model {pt} (random weights, for smoke tests)",
    builder="pipeline.weights:materialize", applies=lambda m: m["source"] == "arch",
    outputs=lambda m: [m["pt"]], record=L.checkpoint_record,
    params=lambda m: {"arch": m["arch"], **_class_spec(m)}, tools=("ultralytics", "torch"),
    code=("pipeline/weights.py",))

INSPECT = Step(
    basename="inspect", doc="Check the user checkpoint {pt} is a detection model; record classes and SHA-256",
    builder="pipeline.weights:inspect", applies=lambda m: m["source"] == "file",
    inputs=lambda m: [m["pt"]], outputs=lambda m: [], record=L.checkpoint_record,
    params=_class_spec, tools=("ultralytics", "torch"), code=("pipeline/weights.py",))

CHECKPOINTS = (DOWNLOAD, MATERIALIZE, INSPECT)

# ---- graphs
EXPORT_ONNX = Step(
    basename="export_onnx", doc="Export {name} to raw ONNX [B,4+nc,anchors] and check it against PyTorch",
    builder="pipeline.yolo_onnx:export",
    applies=lambda m: True,
    inputs=lambda m: [m["pt"], L.checkpoint_record(m)], outputs=lambda m: [L.raw_onnx(m)],
    record=lambda m: L.verification_record(L.raw_onnx(m)),
    params=_settings("imgsz", "opset"), tools=("torch", "ultralytics", "onnx"),
    code=("pipeline/yolo_onnx.py",))


# ---- Triton folders: one per format, each = model artifact + config.pbtxt + labels.txt
@dataclass(frozen=True)
class TritonFolder:
    format: str
    platform: str
    model_step: Step
    artifact: callable  # model -> path of the served file (models/<folder>/1/model.*)

    def applies(self, m: dict) -> bool:
        return self.format in m["settings"]["formats"]

    def config_step(self) -> Step:
        fmt = self.format
        return Step(
            basename="config", doc=f"Write config.pbtxt of the {fmt} folder of {{name}} (Triton ModelConfig)",
            builder="pipeline.triton_config:write_config", applies=self.applies,
            subname=lambda m: L.folder(m, fmt),
            inputs=lambda m: [self.artifact(m)], outputs=lambda m: [f"{L.folder_path(m, fmt)}/config.pbtxt"],
            params=lambda m: {"folder": L.folder(m, fmt), "platform": self.platform, "untrained": m["untrained"],
                              **_settings("max_batch", "dynamic_batching", "instance_group")(m)},
            tools=("tritonclient", "protobuf", "onnx"), code=("pipeline/triton_config.py",))

    def labels_step(self) -> Step:
        fmt = self.format
        return Step(
            basename="labels", doc=f"Write labels.txt of the {fmt} folder of {{name}} (class names by id)",
            builder="pipeline.triton_config:write_labels",
            applies=lambda m: self.applies(m) and m["settings"]["save_labels"],
            subname=lambda m: L.folder(m, fmt),
            inputs=lambda m: [L.checkpoint_record(m)], outputs=lambda m: [f"{L.folder_path(m, fmt)}/labels.txt"],
            code=("pipeline/triton_config.py",))


FOLDERS = (
    TritonFolder("onnx", "onnxruntime_onnx", EXPORT_ONNX, L.raw_onnx),
)
