"""The artifact kinds, declared once: named inputs and outputs, the parameters each builder reads, its builder.

Adding a model family or an artifact means adding a declaration here and its builder module in
builders/; the engine does the atomic write, the record, the staleness and the cache for all of them.
The code and tools each step depends on are derived from its builder (engine/codedeps.py), never listed
here; a builder reading a parameter or input not declared here fails at once (engine/context.py).
"""
from __future__ import annotations

from ..engine.step import Step
from ..engine.tools import plan_identity
from . import layout as L


def _settings(*keys: str):
    return lambda m: {k: m["settings"][k] for k in keys}


def _class_spec(m: dict) -> dict:
    return {"num_classes": m["num_classes"], "class_names": m["class_names"], "untrained": m["untrained"]}


def yolo(test=lambda m: True):
    return lambda m: L.family(m) == "yolo" and test(m)


def clip(test=lambda m: True):
    return lambda m: L.family(m) == "clip" and test(m)


def _user_weights(m: dict) -> str | None:
    """A local open_clip checkpoint is an input (by content); a tag or 'untrained' is a parameter."""
    return m["weights"] if m["weights_source"] == "file" else None


def _clip_source(m: dict) -> dict:
    return {"clip_model": m["clip_model"], "weights_source": m["weights_source"],
            "weights": None if m["weights_source"] == "file" else m["weights"],
            "download_dir": L.clip_download_dir(m) if m["weights_source"] == "pretrained" else None,
            "trust_checkpoint": m["weights_source"] == "file" and m["trust_checkpoint"]}


# ---- checkpoints: every YOLO model ends in pytorch_models/<name>.checkpoint.json (classes, names, SHA-256)
DOWNLOAD = Step(
    basename="download", doc="Download the built-in weights {pt} (Ultralytics assets) and verify them",
    builder="pipeline.builders.checkpoint:download", applies=yolo(lambda m: m["source"] == "builtin"),
    outputs={"checkpoint": lambda m: m["pt"]}, record=L.checkpoint_record, downloads=("checkpoint",),
    params=lambda m: {"url": m["url"], "trust_checkpoint": m["trust_checkpoint"], **_class_spec(m)})

MATERIALIZE = Step(
    basename="materialize", doc="Build the UNTRAINED {arch} model {pt} (random weights, for smoke tests)",
    builder="pipeline.builders.checkpoint:materialize", applies=yolo(lambda m: m["source"] == "arch"),
    outputs={"checkpoint": lambda m: m["pt"]}, record=L.checkpoint_record,
    params=lambda m: {"arch": m["arch"], **_class_spec(m)})

INSPECT = Step(
    basename="inspect", doc="Check the user checkpoint {pt} is a detection model; record classes and SHA-256",
    builder="pipeline.builders.checkpoint:inspect", applies=yolo(lambda m: m["source"] == "file"),
    inputs={"checkpoint": lambda m: m["pt"]}, outputs={}, record=L.checkpoint_record,
    params=lambda m: {"trust_checkpoint": m["trust_checkpoint"], **_class_spec(m)})

# ---- graphs
EXPORT_ONNX = Step(
    basename="export_onnx", doc="Export {name} to raw ONNX [B,4+nc,anchors] and check it against PyTorch",
    builder="pipeline.builders.raw_onnx:export", applies=yolo(),
    inputs={"checkpoint": lambda m: m["pt"], "checkpoint_record": L.checkpoint_record},
    outputs={"onnx": L.raw_onnx}, record=lambda m: L.verification_record(L.raw_onnx(m)),
    params=lambda m: {**_settings("imgsz", "opset")(m), "untrained": m["untrained"],
                      "trust_checkpoint": m["trust_checkpoint"]})

_NMS = _settings("imgsz", "topk", "iou", "conf", "normalize_boxes", "class_agnostic")

END2END_ONNX = Step(
    basename="end2end_onnx", doc="Append EfficientNMS_TRT to {name}'s raw ONNX (graph surgery), check its detections",
    builder="pipeline.builders.end2end_onnx:build", applies=yolo(L.wants_end2end_onnx),
    inputs={"onnx": L.raw_onnx}, outputs={"onnx": L.end2end_onnx},
    record=lambda m: L.verification_record(L.end2end_onnx(m)), params=_NMS)

FP16_ONNX = Step(
    basename="fp16_onnx", doc="FP16 copy of {name}'s raw ONNX for TensorRT (FP16 input, FP32 box decoding)",
    builder="pipeline.builders.fp16_onnx:convert", applies=yolo(L.wants_fp16),
    inputs={"onnx": L.raw_onnx}, outputs={"onnx": L.fp16_onnx},
    record=lambda m: L.verification_record(L.fp16_onnx(m)), params=_settings("imgsz"))

FP16_END2END_ONNX = Step(
    basename="fp16_end2end_onnx", doc="EfficientNMS_TRT on {name}'s FP16 ONNX (FP32 NMS and outputs), for TensorRT",
    builder="pipeline.builders.end2end_onnx:build",
    applies=yolo(lambda m: L.wants_fp16(m) and "trt_end2end" in m["settings"]["formats"]),
    inputs={"onnx": L.fp16_onnx}, outputs={"onnx": L.fp16_end2end_onnx},
    record=lambda m: L.verification_record(L.fp16_end2end_onnx(m)), params=_NMS)


_PLAN_SETTINGS = _settings("max_batch", "workspace_gb", "precision", "allow_tf32", "triton_target")


def _plan(fmt: str, source, family) -> Step:
    """One model.plan for this host's GPU: the TensorRT version and GPU here are part of its recipe."""
    return Step(
        basename="plan", doc=f"TensorRT plan of {{name}} ({fmt}) from its {{settings[precision]}} ONNX — needs TensorRT + GPU",
        builder="pipeline.builders.tensorrt_plan:build", isolate=True,
        applies=family(lambda m: fmt in m["settings"]["formats"] and not L.gpu_targets(m, fmt)),
        subname=lambda m: L.folder(m, fmt),
        inputs={"onnx": source}, outputs={"plan": lambda m: L.plan(m, fmt)},
        record=lambda m: L.verification_record(L.plan(m, fmt)),
        params=lambda m: {**_PLAN_SETTINGS(m), "gpu_target": None, **plan_identity()})


def _target_plans(fmt: str, source, family) -> Step:
    """One plan per GPU target (manifest gpu_targets): its recipe names the target (compute capability,
    pinned GPU model, the target Triton's TensorRT), not this host, so every host computes the same one:
    the host with that GPU builds it, every other host restores it from the shared artifact cache."""
    return Step(
        basename="plan", doc=f"TensorRT plan of {{name}} ({fmt}) for GPUs of compute capability {{gpu_target[cc]}}",
        builder="pipeline.builders.tensorrt_plan:build", isolate=True,
        applies=family(lambda m: fmt in m["settings"]["formats"] and bool(L.gpu_targets(m, fmt))),
        variants=lambda m: [{"gpu_target": t} for t in L.gpu_targets(m, fmt)],
        subname=lambda m: f"{L.folder(m, fmt)}.sm{m['gpu_target']['cc'].replace('.', '')}",
        inputs={"onnx": source}, outputs={"plan": lambda m: L.target_plan(m, fmt)},
        record=lambda m: L.verification_record(L.target_plan(m, fmt)),
        params=lambda m: {**_PLAN_SETTINGS(m), "gpu_target": m["gpu_target"]},
        tools=lambda m: {"tensorrt": m["settings"]["triton_target"]["tensorrt"]},
        buildable="pipeline.builders.tensorrt_plan:buildable_here", withdraws=lambda m: [L.published_path(m, fmt)])


PLAN = _plan("trt", lambda m: L.trt_source(m, False), yolo)
PLAN_END2END = _plan("trt_end2end", lambda m: L.trt_source(m, True), yolo)
TARGET_PLANS = _target_plans("trt", lambda m: L.trt_source(m, False), yolo)
TARGET_PLANS_END2END = _target_plans("trt_end2end", lambda m: L.trt_source(m, True), yolo)

# ---- MobileCLIP2 encoders (visual search): two records per model, role image / text
CLIP_WEIGHTS = Step(
    basename="clip_weights", doc="Load {clip_model} weights ({weights_source}) through open_clip; record "
                                 "logit_scale, preprocessing, tokenizer",
    builder="pipeline.builders.clip_weights:weights", applies=clip(lambda m: m["role"] == "image"),
    subname=lambda m: m["encoder"], inputs={"weights": _user_weights}, outputs={}, record=L.clip_record,
    params=_clip_source)

ENCODER_ONNX = Step(
    basename="encoder_onnx", doc="Export the reparameterized {clip_model} {role} encoder to ONNX, checked vs PyTorch",
    builder="pipeline.builders.encoder_onnx:export", applies=clip(),
    inputs={"clip_record": L.clip_record, "weights": _user_weights},
    outputs={"onnx": L.encoder_onnx}, record=lambda m: L.verification_record(L.encoder_onnx(m)),
    params=lambda m: {"opset": m["settings"]["opset"], "role": m["role"], **_clip_source(m)})

ENCODER_TRT_ONNX = Step(
    basename="encoder_trt_onnx", doc="The {role} encoder graph TensorRT compiles ({settings[precision]}; INT32 tokens)",
    builder="pipeline.builders.encoder_trt_onnx:trt_graph", applies=clip(lambda m: "trt" in m["settings"]["formats"]),
    inputs={"onnx": L.encoder_onnx, "clip_record": L.clip_record}, outputs={"onnx": L.encoder_trt_onnx},
    record=lambda m: L.verification_record(L.encoder_trt_onnx(m)),
    params=lambda m: {"precision": m["settings"]["precision"], "role": m["role"]})

PUBLISH_ENCODER = Step(
    basename="publish_onnx", doc="Serve {name}.onnx from the Triton repository (hard link)",
    builder="pipeline.builders.published_onnx:publish", applies=clip(lambda m: "onnx" in m["settings"]["formats"]),
    subname=lambda m: L.folder(m, "onnx"), inputs={"onnx": L.encoder_onnx}, outputs={"onnx": L.served_onnx})

PLAN_ENCODER = _plan("trt", L.encoder_trt_onnx, clip)
TARGET_PLANS_ENCODER = _target_plans("trt", L.encoder_trt_onnx, clip)


# ---- Triton folders: one per format, each = model artifact + config.pbtxt + a sidecar file
class Sidecar:
    """A small client-facing file beside config.pbtxt (labels.txt, encoder.json), written from a record."""

    def __init__(self, basename, filename, builder, source, wanted=lambda m: True, params=lambda m: {}):
        self.basename, self.filename, self.builder, self.source = basename, filename, builder, source
        self.wanted, self.params = wanted, params


LABELS = Sidecar("labels", "labels.txt", "pipeline.builders.labels:write_labels",
                 {"checkpoint_record": L.checkpoint_record}, lambda m: m["settings"]["save_labels"])
ENCODER_INFO = Sidecar("encoder_info", "encoder.json", "pipeline.builders.encoder_info:write_info",
                       {"clip_record": L.clip_record}, params=lambda m: {"role": m["role"]})


def onnxruntime_tensorrt(m: dict) -> dict:
    """Triton's onnxruntime backend runs EfficientNMS_TRT only through its TensorRT execution accelerator:
    the parameters of `optimization { execution_accelerators { gpu_execution_accelerator ... } }`."""
    s, o = m["settings"], m["settings"]["onnx_tensorrt"]
    return {"precision_mode": (o["precision"] or s["precision"]).upper(),
            "max_workspace_size_bytes": str(int((o["workspace_gb"] or s["workspace_gb"]) * (1 << 30))),
            "trt_engine_cache_enable": "true",
            "trt_engine_cache_path": f"{o['engine_cache_path'].rstrip('/')}/{L.folder(m, 'onnx_end2end')}"}


class TritonFolder:
    """One Triton folder kind: the step making its model file, the ONNX whose I/O its config describes
    (`io_source`: the model file itself for ONNX folders, the plan's ONNX for plan folders), its sidecar,
    and the TensorRT accelerator its onnxruntime folder needs (model -> parameters, or None)."""

    def __init__(self, family, format, platform, model_step, io_source, sidecar=LABELS, accelerator=None,
                 target_step=None):
        self.family, self.format, self.platform, self.model_step = family, format, platform, model_step
        self.io_source, self.sidecar, self.accelerator, self.target_step = io_source, sidecar, accelerator, target_step

    def applies(self, m: dict) -> bool:
        return L.family(m) == self.family and self.format in m["settings"]["formats"]

    def staged(self, m: dict) -> bool:
        """A folder with one plan per GPU target: built in staging, published when complete (publish.py)."""
        return bool(L.gpu_targets(m, self.format))

    def model_tasks(self, m: dict) -> list[str]:
        steps = [self.target_step] if self.staged(m) else [self.model_step]
        return [f"{s.basename}:{s.subname(i)}" for s in steps for i in s.instances(m)]

    def model_task(self, m: dict) -> list[str]:
        """config.pbtxt and the sidecar run after the model file's task (order only: a new plan does not
        make them stale): no Triton folder without its model, even when the plan cannot be built. (A
        staged folder is not served before publish.py finds every file there.)"""
        return [] if self.staged(m) else self.model_tasks(m)

    def cc_model_filenames(self, m: dict) -> dict[str, str] | None:
        return {t["cc"]: L.plan_filename(t["cc"]) for t in L.gpu_targets(m, self.format)} or None

    def config_step(self) -> Step:
        fmt = self.format
        return Step(
            basename="config", doc=f"Write config.pbtxt of the {fmt} folder of {{name}} (Triton ModelConfig)",
            builder="pipeline.builders.triton_config:write_config", applies=self.applies,
            subname=lambda m: L.folder(m, fmt), inputs={"graph": self.io_source}, after=self.model_task,
            outputs={"config": lambda m: f"{L.folder_path(m, fmt)}/config.pbtxt"},
            params=lambda m: {"folder": L.folder(m, fmt), "platform": self.platform, "untrained": m["untrained"],
                              "tensorrt_accelerator": self.accelerator(m) if self.accelerator else None,
                              "cc_model_filenames": self.cc_model_filenames(m),
                              **_settings("max_batch", "dynamic_batching", "instance_group")(m)})

    def sidecar_step(self) -> Step:
        fmt, side = self.format, self.sidecar
        return Step(
            basename=side.basename, doc=f"Write {side.filename} of the {fmt} folder of {{name}}",
            builder=side.builder, applies=lambda m: self.applies(m) and side.wanted(m),
            subname=lambda m: L.folder(m, fmt), inputs=side.source, after=self.model_task,
            outputs={"file": lambda m: f"{L.folder_path(m, fmt)}/{side.filename}"}, params=side.params)


FOLDERS = (
    TritonFolder("yolo", "onnx", "onnxruntime_onnx", EXPORT_ONNX, L.raw_onnx),
    TritonFolder("yolo", "onnx_end2end", "onnxruntime_onnx", END2END_ONNX, L.end2end_onnx,
                 accelerator=onnxruntime_tensorrt),
    # A plan's I/O is its ONNX's (the config is written from that, so a config-only change never
    # touches the plan, and the config exists wherever the plan's ONNX does).
    TritonFolder("yolo", "trt", "tensorrt_plan", PLAN, lambda m: L.trt_source(m, False), target_step=TARGET_PLANS),
    TritonFolder("yolo", "trt_end2end", "tensorrt_plan", PLAN_END2END, lambda m: L.trt_source(m, True),
                 target_step=TARGET_PLANS_END2END),
    TritonFolder("clip", "onnx", "onnxruntime_onnx", PUBLISH_ENCODER, L.served_onnx, sidecar=ENCODER_INFO),
    TritonFolder("clip", "trt", "tensorrt_plan", PLAN_ENCODER, L.encoder_trt_onnx, sidecar=ENCODER_INFO,
                 target_step=TARGET_PLANS_ENCODER),
)



# ---- Track D / E: images in, boxes in the original image's pixels out (and image embeddings for Track E)
def _dali_dtype(fmt: str):
    """The DALI output must be the detector's input dtype: FP16 for FP16 plans, FP32 for the ONNX."""
    return lambda m: "FP16" if fmt == "dali_trt_end2end" and m["settings"]["precision"] == "fp16" else "FP32"


class DaliEnsemble:
    """A Triton ensemble fed encoded images: a DALI preprocessing model and a box-mapping model beside the
    End2End folder it feeds — Track D, formats dali_end2end / dali_trt_end2end, `models/<name>_<fmt>/` —
    or, for an `ensembles:` entry (Track E, fmt "search"), also a MobileCLIP2 image encoder fed by a second
    branch of the same DALI model, `models/<key>/`."""

    def __init__(self, fmt: str):
        self.format = fmt
        search = fmt == "search"
        if search:
            wanted = lambda m: L.family(m) == "search"  # noqa: E731
            self.detector = lambda m: (m["detector"], "onnx_end2end" if m["backend"] == "onnx" else "trt_end2end")
        else:
            wanted = yolo(lambda m: fmt in m["settings"]["formats"])
            self.detector = lambda m: (m, L.DALI_MEMBER[fmt])
        folder = lambda m: L.folder(m, fmt)  # noqa: E731
        self.applies = wanted
        record = lambda m: L.verification_record(L.dali_pipeline(m, fmt))  # noqa: E731

        def det_dtype(m):
            det, det_fmt = self.detector(m)
            return "FP16" if det_fmt == "trt_end2end" and det["settings"]["precision"] == "fp16" else "FP32"

        def enc_dtype(m):
            return "FP16" if m["backend"] == "trt" and m["settings"]["encoder_precision"] == "fp16" else "FP32"

        self.pipeline = Step(
            basename="dali_pipeline", doc=f"Serialize the DALI preprocessing of {{name}} ({fmt}): decode, letterbox, "
                                          "normalise; its CPU twin checked against Ultralytics' LetterBox",
            builder=f"pipeline.builders.dali_pipeline:{'serialize_search' if search else 'serialize'}", applies=wanted,
            subname=lambda m: f"{folder(m)}_preprocess", outputs={"pipeline": lambda m: L.dali_pipeline(m, fmt)},
            inputs={"clip_record": lambda m: L.clip_record(m["image_encoder"])} if search else None, record=record,
            params=lambda m: {**_settings("imgsz", "max_batch")(m), "dtype": det_dtype(m),
                              **({"clip_dtype": enc_dtype(m)} if search else {})})
        self.boxes = Step(
            basename="boxes_onnx", doc=f"The ONNX mapping {{name}}'s End2End boxes back to original pixels ({fmt})",
            builder="pipeline.builders.boxes_onnx:build", applies=wanted, subname=lambda m: f"{folder(m)}_postprocess",
            outputs={"onnx": lambda m: L.boxes_onnx(m, fmt)},
            record=lambda m: L.verification_record(L.boxes_onnx(m, fmt)),
            params=_settings("imgsz", "topk", "normalize_boxes", "opset"))
        self.pipeline_config = Step(
            basename="config", doc=f"Write config.pbtxt of {{name}}'s DALI preprocessing model ({fmt})",
            builder="pipeline.builders.triton_config:write_dali_config", applies=wanted,
            subname=lambda m: f"{folder(m)}_preprocess", inputs={"pipeline_record": record},
            outputs={"config": lambda m: f"{L.dali_preprocess_folder(m, fmt)}/config.pbtxt"},
            params=lambda m: {"folder": f"{folder(m)}_preprocess",
                              **_settings("max_batch", "dynamic_batching", "instance_group")(m)})
        self.boxes_config = Step(
            basename="config", doc=f"Write config.pbtxt of {{name}}'s box-mapping model ({fmt}; CPU instance)",
            builder="pipeline.builders.triton_config:write_config", applies=wanted,
            subname=lambda m: f"{folder(m)}_postprocess", inputs={"graph": lambda m: L.boxes_onnx(m, fmt)},
            outputs={"config": lambda m: f"{L.boxes_folder(m, fmt)}/config.pbtxt"},
            # a few hundred multiply-adds per image: a CPU instance, no GPU copy of anything big
            params=lambda m: {"folder": f"{folder(m)}_postprocess", "platform": "onnxruntime_onnx",
                              "untrained": False, "tensorrt_accelerator": None, "cc_model_filenames": None,
                              "instance_group": {"kind": "cpu", "count": 1},
                              **_settings("max_batch", "dynamic_batching")(m)})

        def members(m):
            det, det_fmt = self.detector(m)
            out = {"preprocess": f"{folder(m)}_preprocess", "detector": L.folder(det, det_fmt),
                   "postprocess": f"{folder(m)}_postprocess"}
            if search:
                out["encoder"] = L.folder(m["image_encoder"], m["backend"])
            return out

        def encoder_graph(m):
            if not search:
                return None
            enc = m["image_encoder"]
            return L.encoder_onnx(enc) if m["backend"] == "onnx" else L.encoder_trt_onnx(enc)

        self.members = members
        self.ensemble = Step(
            basename="config", doc=f"Write config.pbtxt of the {fmt} ensemble of {{name}} (encoded images in, "
                                   "boxes in original pixels out)",
            builder="pipeline.builders.triton_config:write_ensemble_config", applies=wanted, subname=folder,
            inputs={"pipeline_record": record, "detector_graph": lambda m: L.detector_graph(*self.detector(m)),
                    "boxes_graph": lambda m: L.boxes_onnx(m, fmt), "encoder_graph": encoder_graph},
            outputs={"config": lambda m: f"{L.folder_path(m, fmt)}/config.pbtxt",
                     "marker": lambda m: L.ensemble_marker(m, fmt)},
            params=lambda m: {"folder": folder(m), "max_batch": m["settings"]["max_batch"], "untrained": m["untrained"],
                              "members": members(m)})
        self.labels = Step(
            basename="labels", doc=f"Write labels.txt of the {fmt} ensemble of {{name}}",
            builder=LABELS.builder, applies=lambda m: wanted(m) and m["settings"]["save_labels"], subname=folder,
            inputs={"checkpoint_record": lambda m: L.checkpoint_record(self.detector(m)[0])},
            outputs={"file": lambda m: f"{L.folder_path(m, fmt)}/labels.txt"})

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.pipeline, self.boxes, self.pipeline_config, self.boxes_config, self.ensemble, self.labels

    def group_deps(self, m: dict) -> list[str]:
        """What makes the ensemble servable: its own steps and its members' complete folders."""
        det, det_fmt = self.detector(m)
        deps = [f"{s.basename}:{s.subname(m)}" for s in self.steps if s.applies(m)] + [f"{det_fmt}:{det['name']}"]
        if self.format == "search":
            deps.append(f"{m['backend']}:{m['image_encoder']['name']}")
        return deps


DALI_ENSEMBLES = (DaliEnsemble("dali_end2end"), DaliEnsemble("dali_trt_end2end"), DaliEnsemble("search"))

# Every step, config and sidecar steps included, built once: dodo.py and the commands read these.
FOLDER_CONFIGS = tuple(folder.config_step() for folder in FOLDERS)  # in the order of FOLDERS
CONFIGS = FOLDER_CONFIGS + tuple(s for e in DALI_ENSEMBLES for s in (e.pipeline_config, e.boxes_config, e.ensemble))
SIDECARS = tuple(folder.sidecar_step() for folder in FOLDERS)
STEPS = (DOWNLOAD, MATERIALIZE, INSPECT, EXPORT_ONNX, END2END_ONNX, FP16_ONNX, FP16_END2END_ONNX, PLAN, PLAN_END2END,
         TARGET_PLANS, TARGET_PLANS_END2END, CLIP_WEIGHTS, ENCODER_ONNX, ENCODER_TRT_ONNX, PUBLISH_ENCODER, PLAN_ENCODER,
         TARGET_PLANS_ENCODER) + CONFIGS + SIDECARS + tuple(
    s for e in DALI_ENSEMBLES for s in (e.pipeline, e.boxes, e.labels))


def publish_task(folder: TritonFolder, config: Step, sidecar: Step, m: dict) -> dict:
    """The doit task publishing a staged folder (several GPU targets) into models/ once complete."""
    from ..engine import publish

    fmt, staged = folder.format, L.folder_path(m, folder.format)
    targets = {f"1/{L.plan_filename(t['cc'])}": {**t, "tensorrt": m["settings"]["triton_target"]["tensorrt"]}
               for t in L.gpu_targets(m, fmt)}
    files = ["config.pbtxt"] + ([sidecar.outputs["file"](m)[len(staged) + 1:]] if sidecar.applies(m) else [])
    files += [f for plan in targets for f in (plan, L.verification_record(plan))]
    deps = [f"{config.basename}:{config.subname(m)}"] + folder.model_tasks(m)
    if sidecar.applies(m):
        deps.append(f"{sidecar.basename}:{sidecar.subname(m)}")
    return publish.task(L.folder(m, fmt), staged, L.published_path(m, fmt), files, targets, deps,
                        f"Publish {L.published_path(m, fmt)}/ once the plan of every GPU target is in {staged}/")
