"""Triton ensembles fed encoded images: a DALI preprocessing model, the detector's End2End folder, and a
box-mapping model, so clients send JPEG/PNG bytes and get boxes in their own image's pixels.

* Track D (`DetectionEnsemble`, formats dali_end2end / dali_trt_end2end): `models/<name>_<fmt>/` beside
  the End2End folder it feeds.
* Track E (`SearchEnsemble`, an `ensembles:` entry): the same, plus a MobileCLIP2 image encoder fed by a
  second branch of the same DALI model, `models/<key>/`.
"""
from __future__ import annotations

from ...engine.step import Step
from .. import families
from .. import layout as L
from ..tools import DALI, needs
from .common import settings
from .folders import LABELS
from .graphs import end2end_graph
from .publication import overrides, probe_step, publish_names, publish_tasks


class Ensemble:
    """What both ensembles have: the DALI model, the box-mapping model, their configs, the ensemble's config
    and labels. Subclasses say whose detector (and encoder) it serves and what DALI builds."""
    builder = ""         # the DALI pipeline builder
    encoder = False      # an image encoder branch (Track E)
    subfolders = ("_preprocess", "_postprocess")  # its own members: Triton folders beside it (layout.py)

    def detector(self, m: dict) -> tuple[dict, str]:
        """(the detector's record, the format of the End2End folder the ensemble feeds)."""
        raise NotImplementedError

    def pipeline_params(self, m: dict) -> dict:
        det, det_fmt = self.detector(m)
        plan = det["folders"][det_fmt]["plans"]
        dali = m["settings"]["dali"]
        return {**settings("imgsz", "max_batch")(m),
                "dtype": "FP16" if plan and det["settings"]["precision"] == "fp16" else "FP32",
                "num_threads": dali["num_threads"], "hw_decoder_load": dali["hw_decoder_load"]}

    @staticmethod
    def pipeline_config_params(m: dict) -> dict:
        """The DALI model's config: its own instance count (manifest `dali.instances`) on the models' instance
        kind, and the pipeline's thread count, which Triton's DALI backend reads from config.pbtxt."""
        dali = m["settings"]["dali"]
        return {**settings("max_batch", "dynamic_batching")(m), "num_threads": dali["num_threads"],
                "instance_group": {"kind": m["settings"]["instance_group"]["kind"], "count": dali["instances"]}}

    def pipeline_inputs(self, m: dict) -> dict:
        return {}

    def encoder_graph(self, m: dict) -> str | None:
        return None

    def members(self, m: dict) -> dict[str, str]:
        det, det_fmt = self.detector(m)
        return {"preprocess": f"{L.folder(m, self.format)}_preprocess", "detector": L.folder(det, det_fmt),
                "postprocess": f"{L.folder(m, self.format)}_postprocess"}

    def member_folders(self, m: dict | None) -> list[tuple[dict | None, str]]:
        """(record, format) of the member folders the ensemble serves (for any model, when m is None)."""
        raise NotImplementedError

    def member_groups(self, m: dict) -> list[str]:
        """The member folders' group tasks (a plain folder's group is named after its format)."""
        return [f"{f}:{r['name']}" for r, f in self.member_folders(m)]

    def bind(self, fmt: str, applies) -> "Ensemble":
        self.format, self.applies = fmt, applies
        folder = lambda m: L.folder(m, fmt)  # noqa: E731
        record = lambda m: L.verification_record(L.dali_pipeline(m, fmt))  # noqa: E731
        self.pipeline = Step(
            basename="dali_pipeline", doc=f"Serialize the DALI preprocessing of {{name}} ({fmt}): decode, letterbox, "
                                          "normalise; its CPU twin checked against Ultralytics' LetterBox",
            builder=self.builder, applies=applies, requires=needs(DALI),
            uses=lambda m: families.uses(self.detector(m)[0]), subname=lambda m: f"{folder(m)}_preprocess",
            outputs={"pipeline": lambda m: L.dali_pipeline(m, fmt)}, inputs=self.pipeline_inputs(None), record=record,
            params=self.pipeline_params)
        self.boxes = Step(
            basename="boxes_onnx", doc=f"The ONNX mapping {{name}}'s End2End boxes back to original pixels ({fmt})",
            builder="pipeline.builders.boxes_onnx:build", applies=applies, subname=lambda m: f"{folder(m)}_postprocess",
            outputs={"onnx": lambda m: L.boxes_onnx(m, fmt)},
            record=lambda m: L.verification_record(L.boxes_onnx(m, fmt)),
            params=settings("imgsz", "topk", "normalize_boxes", "opset"))
        self.pipeline_config = Step(
            basename="config", doc=f"Write config.pbtxt of {{name}}'s DALI preprocessing model ({fmt})",
            builder="pipeline.builders.triton_config:write_dali_config", applies=applies,
            subname=lambda m: f"{folder(m)}_preprocess", inputs={"pipeline_record": record},
            outputs={"config": lambda m: f"{L.preprocess_folder(m, fmt)}/config.pbtxt"},
            params=lambda m: {"folder": f"{folder(m)}_preprocess", **overrides(f"{fmt}_preprocess")(m),
                              **self.pipeline_config_params(m)})
        self.boxes_config = Step(
            basename="config", doc=f"Write config.pbtxt of {{name}}'s box-mapping model ({fmt}; CPU instance)",
            builder="pipeline.builders.triton_config:write_config", applies=applies,
            subname=lambda m: f"{folder(m)}_postprocess", inputs={"graph": lambda m: L.boxes_onnx(m, fmt)},
            outputs={"config": lambda m: f"{L.postprocess_folder(m, fmt)}/config.pbtxt"},
            # a few hundred multiply-adds per image: a CPU instance, no GPU copy of anything big
            params=lambda m: {"folder": f"{folder(m)}_postprocess", "platform": "onnxruntime_onnx",
                              "untrained": False, "tensorrt_accelerator": None, "cc_model_filenames": None,
                              "instance_group": {"kind": "cpu", "count": 1}, **overrides(f"{fmt}_postprocess")(m),
                              **settings("max_batch", "dynamic_batching")(m)})
        self.ensemble = Step(
            basename="config", doc=f"Write config.pbtxt of the {fmt} ensemble of {{name}} (encoded images in, "
                                   "boxes in original pixels out)",
            builder="pipeline.builders.triton_config:write_ensemble_config", applies=applies, subname=folder,
            inputs={"pipeline_record": record, "detector_graph": lambda m: end2end_graph(*self.detector(m)),
                    "boxes_graph": lambda m: L.boxes_onnx(m, fmt), "encoder_graph": self.encoder_graph},
            outputs={"config": lambda m: f"{L.folder_path(m, fmt)}/config.pbtxt",
                     "marker": lambda m: L.ensemble_marker(m, fmt)},
            params=lambda m: {"folder": folder(m), "max_batch": m["settings"]["max_batch"], "untrained": m["untrained"],
                              "members": self.members(m), **overrides(fmt)(m)})
        self.labels = Step(
            basename="labels", doc=f"Write labels.txt of the {fmt} ensemble of {{name}}",
            builder=LABELS.builder, applies=lambda m: applies(m) and m["settings"]["save_labels"], subname=folder,
            inputs={"checkpoint_record": lambda m: L.checkpoint_record(self.detector(m)[0])},
            outputs={"file": lambda m: f"{L.folder_path(m, fmt)}/labels.txt"})
        self.probes = (probe_step(f"{fmt}_preprocess", lambda m: f"{folder(m)}_preprocess", applies),
                       probe_step(f"{fmt}_postprocess", lambda m: f"{folder(m)}_postprocess", applies,
                                  lambda m: L.boxes_onnx(m, fmt)),
                       probe_step(fmt, folder, applies))
        return self

    @property
    def steps(self) -> tuple[Step, ...]:
        return (self.pipeline, self.boxes, self.pipeline_config, self.boxes_config, self.ensemble, self.labels,
                *self.probes)

    def group_deps(self, m: dict) -> list[str]:
        """What makes the ensemble servable: its three folders published, and its members' folders."""
        return publish_names(self.steps, m) + self.member_groups(m)

    def tasks(self, m: dict) -> list[dict]:
        """Its three folders' publications."""
        return publish_tasks(self.steps, m)


class DetectionEnsemble(Ensemble):
    """Track D: the detector's own End2End folder (`member`: onnx_end2end or trt_end2end), preprocessed by DALI."""
    builder = "pipeline.builders.dali_pipeline:serialize"

    def __init__(self, member: str):
        self.member = member

    def detector(self, m: dict) -> tuple[dict, str]:
        return m, self.member

    def member_folders(self, m):
        return [(m, self.member)]


class SearchEnsemble(Ensemble):
    """Track E: a detector and an image encoder of the manifest behind one decode (the `backend` picks the
    ONNX folders or the plans)."""
    builder = "pipeline.builders.dali_pipeline:serialize_search"
    encoder = True
    MEMBERS = {"onnx": ("onnx_end2end", "onnx"), "trt": ("trt_end2end", "trt")}  # backend -> (detector, encoder)

    def detector(self, m: dict) -> tuple[dict, str]:
        return m["detector"], self.MEMBERS[m["backend"]][0]

    def pipeline_inputs(self, m):
        return {"clip_record": lambda m: L.clip_record(m["image_encoder"])}

    def pipeline_params(self, m: dict) -> dict:
        enc = m["image_encoder"]
        fp16 = enc["folders"][self.MEMBERS[m["backend"]][1]]["plans"] and enc["settings"]["precision"] == "fp16"
        return {**super().pipeline_params(m), "clip_dtype": "FP16" if fp16 else "FP32"}

    def encoder_graph(self, m: dict) -> str:
        enc = m["image_encoder"]
        return L.encoder_onnx(enc) if m["backend"] == "onnx" else L.encoder_trt_onnx(enc)

    def members(self, m: dict) -> dict[str, str]:
        return {**super().members(m), "encoder": L.folder(m["image_encoder"], self.MEMBERS[m["backend"]][1])}

    def member_folders(self, m):
        if m is None:  # its members are other manifest entries' folders, added to theirs (manifest/records.py)
            return []
        det, enc = self.MEMBERS[m["backend"]]
        return [(m["detector"], det), (m["image_encoder"], enc)]

