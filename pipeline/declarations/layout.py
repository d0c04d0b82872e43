"""Where every artifact lives: the only module that knows artifact paths.

The names follow the documented Model Export Scripts: `models/<name>_trt/1/model.plan`,
`models/<name>_end2end/1/model.onnx`, intermediates in `pytorch_models/`. A model record carries the names
of its Triton folders (`folders`, made from each format's declared suffix when the manifest is resolved:
declarations/formats.py); this module turns names into paths. The engine keeps its own state paths
(engine/paths.py). Nothing imports heavy here.
"""
from __future__ import annotations

MODELS = "models"                # the Triton model repository (output): published versions only
WORK = "pytorch_models"          # weights and intermediates
STAGED = f"{WORK}/staged"        # every Triton folder is built here; engine/publish.py publishes it as a version
MANIFEST_CACHE = ".pipeline/manifests"   # validated manifests, by content (manifest_cache.py)
TRACKS = ".pipeline/tracks"              # doit compare-tracks: tracks.json, tracks.png


def folder(model: dict, fmt: str) -> str:
    """The Triton folder (model name) of one of the model's formats."""
    return model["folders"][fmt]["name"]


def per_target(model: dict, fmt: str) -> bool:
    """A folder with one plan per GPU target (manifest gpu_targets): published only once every plan is there."""
    return model["folders"][fmt]["per_target"]


def folder_path(model: dict, fmt: str) -> str:
    """Where a folder's files are built: its staging folder, with one version folder `1/`."""
    return f"{STAGED}/{folder(model, fmt)}"


def published_path(model: dict, fmt: str) -> str:
    """Where Triton reads it: models/<folder>/, with numbered versions (engine/publish.py)."""
    return f"{MODELS}/{folder(model, fmt)}"


def published(staged_folder: str) -> str:
    """The published folder of a staging folder."""
    return f"{MODELS}/{staged_folder[len(STAGED) + 1:]}"


def probe(staged_folder: str) -> str:
    """A version's probe: a request and the answer the build expects (`doit deploy` sends it)."""
    return f"{staged_folder}/1/probe.npz"


def verification_record(artifact: str) -> str:
    return artifact + ".verification.json"


# ---- detectors
def builtin_checkpoint(file_name: str) -> str:
    """Built-in weights (yolo11s.pt, ...) are downloaded here."""
    return f"{WORK}/{file_name}"


def untrained_checkpoint(name: str) -> str:
    return f"{WORK}/{name}.untrained.pt"


def checkpoint_record(model: dict) -> str:
    return f"{WORK}/{model['name']}.checkpoint.json"


def _served_or_work(model: dict, fmt: str, stem: str) -> str:
    """A graph that is the Triton model of `fmt` when that format is wanted, else an intermediate."""
    if fmt in model["settings"]["formats"]:
        return f"{folder_path(model, fmt)}/1/model.onnx"
    return f"{WORK}/{stem}.onnx"


def raw_onnx(model: dict) -> str:
    return _served_or_work(model, "onnx", model["name"])


def end2end_onnx(model: dict) -> str:
    return _served_or_work(model, "onnx_end2end", f"{model['name']}_end2end")


def fp16_onnx(model: dict) -> str:
    return f"{WORK}/{model['name']}.fp16.onnx"


def fp16_end2end_onnx(model: dict) -> str:
    return f"{WORK}/{model['name']}_end2end.fp16.onnx"


def quantized_onnx(model: dict) -> str:
    """The INT8 (or FP8) Q/DQ raw graph: pytorch_models/<name>.int8.onnx."""
    return f"{WORK}/{model['name']}.{model['settings']['precision']}.onnx"


def quantized_end2end_onnx(model: dict) -> str:
    return f"{WORK}/{model['name']}_end2end.{model['settings']['precision']}.onnx"


def plan(model: dict, fmt: str) -> str:
    return f"{folder_path(model, fmt)}/1/model.plan"


def plan_filename(cc: str) -> str:
    """Triton's convention for per-GPU plans (`cc_model_filenames`): model.sm86.plan for 8.6."""
    return f"model.sm{cc.replace('.', '')}.plan"


def target_plan(model: dict, fmt: str, cc: str | None = None) -> str:
    """The plan of one GPU target (a target plan task's record carries `gpu_target`)."""
    return f"{folder_path(model, fmt)}/1/{plan_filename(cc or model['gpu_target']['cc'])}"


# ---- encoders
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


# ---- ensembles: an ensemble folder (images in, boxes in original pixels out) and its two own members
def preprocess_folder(model: dict, fmt: str) -> str:
    """The DALI preprocessing model of one ensemble (its output dtype is its consumer's)."""
    return f"{folder_path(model, fmt)}_preprocess"


def dali_pipeline(model: dict, fmt: str) -> str:
    return f"{preprocess_folder(model, fmt)}/1/model.dali"


def postprocess_folder(model: dict, fmt: str) -> str:
    """The member mapping End2End boxes back to the original image's pixels."""
    return f"{folder_path(model, fmt)}_postprocess"


def boxes_onnx(model: dict, fmt: str) -> str:
    return f"{postprocess_folder(model, fmt)}/1/model.onnx"


def ensemble_marker(model: dict, fmt: str) -> str:
    """Triton needs a version folder even for an ensemble; a file keeps it through copies and uploads that
    drop empty folders."""
    return f"{folder_path(model, fmt)}/1/ENSEMBLE.txt"
