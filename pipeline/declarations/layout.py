"""Where every artifact lives, and what every Triton folder is called: the only module that knows paths.

The names follow the documented Model Export Scripts: `models/<name>_trt/1/model.plan`,
`models/<name>_end2end/1/model.onnx`, intermediates in `pytorch_models/`. Nothing imports heavy here.
"""
from __future__ import annotations

FORMATS = ("onnx", "onnx_end2end", "trt", "trt_end2end", "dali_end2end", "dali_trt_end2end")
DEFAULT_FORMATS = FORMATS[:4]  # the DALI ensembles (Track D) are asked for by name
ENCODER_FORMATS = ("onnx", "trt")
# Track D: a DALI ensemble format and the folder of the End2End model it feeds (added to formats with it)
DALI_MEMBER = {"dali_end2end": "onnx_end2end", "dali_trt_end2end": "trt_end2end"}
# Triton folder of each format, from the model's base name. MobileCLIP2 encoders: the plan folder has the
# documented name; the ONNX variant gets "_onnx" so the two can never collide.
FOLDER_SUFFIX = {"yolo": {"onnx": "", "onnx_end2end": "_end2end", "trt": "_trt", "trt_end2end": "_trt_end2end",
                          "dali_end2end": "_dali_end2end", "dali_trt_end2end": "_dali_trt_end2end"},
                 "search": {"search": ""},  # Track E ensembles (`ensembles:` entries): models/<key>/
                 "clip": {"onnx": "_onnx", "trt": ""}}
MODELS = "models"                # the Triton model repository (output)
WORK = "pytorch_models"          # weights and intermediates
STAGED = f"{WORK}/staged"        # TensorRT folders with several GPU targets, until every plan is there

DOIT_STATE = ".doit.json"        # doit's own state (task values, file states)
# Build state, all under one git-ignored folder of the project.
STATE = ".pipeline"
MANIFEST_CACHE = f"{STATE}/manifests"          # validated manifests, by content
CODE_INDEX = f"{STATE}/code-index.json"        # per-module AST hashes and imports (engine/codedeps.py)
ARTIFACT_CACHE = f"{STATE}/artifact-cache"     # default artifact cache
BUILD_LOCK = f"{STATE}/build.lock"
RUNS = f"{STATE}/runs"                          # this run's build times (engine/timings.py)
NOOP_SNAPSHOTS = f"{STATE}/noop"                # a no-op call's file stats, replayed by the next (engine/noop.py)
TRACKS = f"{STATE}/tracks"                      # doit compare-tracks: tracks.json, tracks.png
ULTRALYTICS_CONFIG = f"{STATE}/ultralytics"    # YOLO_CONFIG_DIR: settings stay inside the project


def family(model: dict) -> str:
    return model.get("family", "yolo")


def folder(model: dict, fmt: str) -> str:
    return model["name"] + FOLDER_SUFFIX[family(model)][fmt]


def gpu_targets(model: dict, fmt: str) -> list[dict]:
    """The compute capabilities a TensorRT folder holds one plan for (manifest `gpu_targets`); [] for one
    `model.plan` built for this host's GPU, and for ONNX folders."""
    return (model["settings"].get("gpu_targets") or []) if fmt in ("trt", "trt_end2end") else []


def folder_path(model: dict, fmt: str) -> str:
    """Where a folder's files are written. A folder with several GPU targets is assembled in staging and
    published into models/ only once every target's plan is there (publish.py)."""
    if gpu_targets(model, fmt):
        return f"{STAGED}/{folder(model, fmt)}"
    return published_path(model, fmt)


def published_path(model: dict, fmt: str) -> str:
    return f"{MODELS}/{folder(model, fmt)}"


def builtin_checkpoint(file_name: str) -> str:
    """Built-in weights (yolo11s.pt, ...) are downloaded here."""
    return f"{WORK}/{file_name}"


def untrained_checkpoint(name: str) -> str:
    return f"{WORK}/{name}.untrained.pt"


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
    """Like raw_onnx: the served End2End graph, or an intermediate when only an FP32 plan needs it."""
    if "onnx_end2end" in model["settings"]["formats"]:
        return f"{folder_path(model, 'onnx_end2end')}/1/model.onnx"
    return f"{WORK}/{model['name']}_end2end.onnx"


def wants_end2end_onnx(model: dict) -> bool:
    s = model["settings"]
    return "onnx_end2end" in s["formats"] or ("trt_end2end" in s["formats"] and s["precision"] == "fp32")


def wants_fp16(model: dict) -> bool:
    """FP16 graphs exist for the TensorRT formats when the model's precision is fp16."""
    s = model["settings"]
    return s["precision"] == "fp16" and any(f in s["formats"] for f in ("trt", "trt_end2end"))


def fp16_onnx(model: dict) -> str:
    return f"{WORK}/{model['name']}.fp16.onnx"


def fp16_end2end_onnx(model: dict) -> str:
    return f"{WORK}/{model['name']}_end2end.fp16.onnx"


def trt_source(model: dict, end2end: bool) -> str:
    """The ONNX a plan is compiled from: its precision is the engine's (strongly typed networks)."""
    if model["settings"]["precision"] == "fp16":
        return fp16_end2end_onnx(model) if end2end else fp16_onnx(model)
    return end2end_onnx(model) if end2end else raw_onnx(model)


def plan(model: dict, fmt: str) -> str:
    return f"{folder_path(model, fmt)}/1/model.plan"


def plan_filename(cc: str) -> str:
    """Triton's convention for per-GPU plans (`cc_model_filenames`): model.sm86.plan for 8.6."""
    return f"model.sm{cc.replace('.', '')}.plan"


def target_plan(model: dict, fmt: str) -> str:
    """The plan of one GPU target (the model record of a target plan task carries `gpu_target`)."""
    return f"{folder_path(model, fmt)}/1/{plan_filename(model['gpu_target']['cc'])}"


def served_onnx(model: dict) -> str:
    return f"{folder_path(model, 'onnx')}/1/model.onnx"


def clip_record(model: dict) -> str:
    return f"{WORK}/{model['encoder']}.clip.json"


def clip_download_dir(model: dict) -> str:
    """Where open_clip downloads a pretrained tag's weights (a download: `doit clean` keeps it)."""
    return f"{WORK}/{model['encoder']}"


def encoder_onnx(model: dict) -> str:
    """The documented intermediates: pytorch_models/<name>_{image,text}_encoder.onnx."""
    return f"{WORK}/{model['name']}.onnx"


def encoder_trt_onnx(model: dict) -> str:
    return f"{WORK}/{model['name']}.trt.onnx"


# ---- Track D: an ensemble folder (images in, boxes in original pixels out) and its two own members
def dali_preprocess_folder(model: dict, fmt: str) -> str:
    """The DALI preprocessing model of one ensemble (its output dtype is its consumer's)."""
    return f"{folder_path(model, fmt)}_preprocess"


def dali_pipeline(model: dict, fmt: str) -> str:
    return f"{dali_preprocess_folder(model, fmt)}/1/model.dali"


def boxes_folder(model: dict, fmt: str) -> str:
    """The member mapping End2End boxes back to the original image's pixels."""
    return f"{folder_path(model, fmt)}_postprocess"


def boxes_onnx(model: dict, fmt: str) -> str:
    return f"{boxes_folder(model, fmt)}/1/model.onnx"


def ensemble_marker(model: dict, fmt: str) -> str:
    """Triton needs a version folder even for an ensemble; a file keeps it through copies and uploads that
    drop empty folders."""
    return f"{folder_path(model, fmt)}/1/ENSEMBLE.txt"


def detector_graph(model: dict, fmt: str) -> str:
    """The ONNX whose I/O is an ensemble's detector's (`model` its YOLO record, `fmt` the detector folder's
    format): the End2End graph served (ONNX) or compiled (plan)."""
    return end2end_onnx(model) if fmt == "onnx_end2end" else trt_source(model, True)
