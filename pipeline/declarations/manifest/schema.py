"""The manifest schema: what a user may write, as pydantic models. Architectures, built-ins, encoder models and
formats come from the family and format registries; every key, its default and its allowed values are
in manifests/README.md.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator, model_validator

from ...tooling import dali_preprocess as dali_defaults
from ...tooling import triton_releases
from .. import families, formats

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
Name = Annotated[str, StringConstraints(pattern=NAME_RE)]
DETECTOR_FORMATS, ENCODER_FORMATS = formats.for_kind("detector"), formats.for_kind("encoder")
Format = Literal[DETECTOR_FORMATS]
EncoderFormat = Literal[ENCODER_FORMATS]
ARCHITECTURES = tuple(a for f in families.DETECTORS.values() for a in f.architectures)
BUILTINS = families.builtins()
CLIP_MODELS = tuple(m for f in families.ENCODERS.values() for m in f.models)
# Each numeric rule is declared once; the schema and the error messages both read it.
OPSET_MIN, OPSET_MAX = 14, 20
Opset = Annotated[int, Field(ge=OPSET_MIN, le=OPSET_MAX)]
TritonRelease = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}\.[0-9]{2}$")]
TensorRTVersion = Annotated[str, StringConstraints(pattern=r"^1[01]\.[0-9]+\.[0-9]+(\.[0-9]+)?$")]
# Compute capabilities TensorRT 10.x/11.x build engines for (Turing and newer), as CUDA names them.
COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "10.1", "10.3", "11.0", "12.0", "12.1")
GPU_TARGETS_EXAMPLE = 'gpu_targets: ["7.5", "8.6", "9.0"] or {"8.6": "NVIDIA A10", "9.0": null}'
IMGSZ_MIN, IMGSZ_MAX = 32, 4096
TOPK_MAX = 4096  # EfficientNMS_TRT keeps at most 4096 candidates

# A short "what is allowed" per key: it becomes the fix in error messages.
ALLOWED = {
    "imgsz": f"a multiple of 32 between {IMGSZ_MIN} and {IMGSZ_MAX} (YOLO's standard is 640)",
    "precision": "'fp16' (the default), 'fp32', 'int8' or 'fp8' (both need a calibration block; fp8 GPUs of compute "
                 "capability 8.9 or newer)",
    "calibration": "a mapping {images: FOLDER, count: 512, method: entropy | max | percentile}",
    "images": "a folder of images (JPEG, PNG, BMP, WebP), relative to the manifest's folder",
    "method": "'entropy' (the default), 'max' or 'percentile'",
    "validation": "a mapping {images: FOLDER, labels: FOLDER} (labels: YOLO-format .txt files, one per image; "
                  "without them the quantized graph is measured by its agreement with the FP32 graph)",
    "labels": "a folder of YOLO-format .txt label files named like the images",
    "max_accuracy_drop": "a non-negative number: mAP50-95 points (default 1.0), or agreement percent without labels "
                         "(default 2.0)",
    "accept_accuracy_drop": "true or false (true: a larger drop than max_accuracy_drop is recorded, not a failure)",
    "iou": "a number in (0, 1], e.g. 0.7",
    "conf": "a number in [0, 1], e.g. 0.25",
    "topk": f"an integer from 1 to {TOPK_MAX} (EfficientNMS_TRT keeps at most {TOPK_MAX} candidates); default 300",
    "max_batch": "a positive integer, e.g. 32",
    "formats": f"a list drawn from {', '.join(DETECTOR_FORMATS)} (encoders: {', '.join(ENCODER_FORMATS)})",
    "opset": f"an ONNX opset from {OPSET_MIN} to {OPSET_MAX} (17 is what TensorRT 10/11 parse best)",
    "workspace_gb": "a positive number of GiB, e.g. 4",
    "allow_tf32": "true or false (false: FP32 layers of TensorRT plans really run in FP32)",
    "normalize_boxes": "true or false",
    "class_agnostic": "true or false",
    "save_labels": "true or false",
    "nms_free": "true (the NMS-free one-to-one head, where the family has one) or false (NMS on the one-to-many "
                "head); default: what the family's own predict uses",
    "family": f"a detection family: {', '.join(families.DETECTORS)} (default: read from the checkpoint)",
    "pt_file": "the path of an Ultralytics YOLO detection checkpoint (.pt), relative to the manifest's folder",
    "arch": f"an architecture: {', '.join(ARCHITECTURES)}",
    "triton_name": "letters, digits, '_', '-' or '.', starting with a letter or digit, no '/', '..' or spaces",
    "num_classes": "a positive integer",
    "class_names": "a list of class-name strings, one per class",
    "builtins": f"a list of built-in models ({', '.join(BUILTINS)}) or a mapping of them to settings",
    "models": "a mapping key -> {pt_file | arch, triton_name?, max_batch?, topk?, num_classes?, class_names?}",
    "model": f"one of {', '.join(CLIP_MODELS)}",
    "weights": "an open_clip pretrained tag (dfndr2b), a checkpoint file path, or 'untrained'",
    "image_max_batch": "a positive integer, e.g. 128",
    "text_max_batch": "a positive integer, e.g. 64",
    "kind": "'gpu' or 'cpu'",
    "count": "a positive integer",
    "preferred_batch_sizes": "a list of positive integers, each at most max_batch",
    "max_queue_delay_us": "a non-negative integer of microseconds, e.g. 5000",
    "triton": f"a Triton release as a quoted YY.MM, e.g. \"24.12\" (known: {', '.join(triton_releases.TABLE)}; others "
              "need 'tensorrt' too)",
    "tensorrt": "the TensorRT version the serving Triton ships, e.g. \"10.13.3.9\" (10.x or 11.x)",
    "trust_checkpoint": "true or false (true: load the file with torch's full unpickler, which runs any code in it)",
    "gpu_targets": f"a list of GPU compute capabilities, or a mapping compute capability -> GPU model name (or null), "
                   f"e.g. {GPU_TARGETS_EXAMPLE}; known: {', '.join(COMPUTE_CAPABILITIES)}",
    "detector": "the Triton name of a detector of this manifest (e.g. yolov11_small, or a models key)",
    "encoder": "a key of the encoders block",
    "backend": "'onnx' (the End2End ONNX and encoder ONNX folders) or 'trt' (their TensorRT plans)",
    "engine_cache_path": "an absolute path, writable by the Triton server, e.g. /tmp/triton-onnxruntime-trt-cache",
    "num_threads": f"a positive integer of CPU threads per DALI model instance (default {dali_defaults.NUM_THREADS})",
    "hw_decoder_load": "a number from 0 to 1: the share of JPEGs nvJPEG's hardware decoder takes (0: none; default "
                       f"{dali_defaults.HW_DECODER_LOAD})",
    "instances": f"a positive integer of DALI model instances per GPU (default {dali_defaults.INSTANCES} on GPU), or null",
    "versions": "a mapping {serve: 'latest N' | 'all' | [version numbers], keep: N}",
    "serve": "'latest 1' (the default: the newest version), 'latest N', 'all', or a list of version numbers "
             "such as [3, 4]",
    "keep": "how many published versions each Triton folder keeps, at least 1 (default 2: one to roll back to)",
    "config_overrides": "a mapping folder role -> Triton ModelConfig fields as in config.pbtxt's JSON form, e.g. "
                        "{onnx_end2end: {dynamic_batching: {max_queue_delay_microseconds: 100}}}; roles are the "
                        "model's formats (and <format>_preprocess / _postprocess of an ensemble)",
}
PATTERN_WHAT = {"engine_cache_path": "an absolute path", "triton": "a Triton release (YY.MM)",
                "tensorrt": "a TensorRT 10.x or 11.x version", "serve": "a version policy"}


def gpu_targets(value: Any) -> list[dict] | None:
    """`gpu_targets` -> [{"cc": "8.6", "gpu": "NVIDIA A10" or None}, ...] sorted by compute capability.

    A list names compute capabilities (any GPU of that capability builds its plan); a mapping may also
    pin the GPU model (as nvidia-smi names it) whose host builds it: TensorRT tunes an engine for the
    GPU model that built it. YAML reads an unquoted 8.6 as a number: accepted, as written."""
    if value is None:
        return None
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):  # as written, or already resolved (defaults merged into an entry)
        items = [(v["cc"], v["gpu"]) if isinstance(v, dict) and set(v) == {"cc", "gpu"} else (v, None) for v in value]
    else:
        items = None
    if not items:
        raise ValueError("expected a non-empty list or mapping of compute capabilities")
    out = {}
    for cc, gpu in items:
        if isinstance(cc, bool) or not isinstance(cc, (str, int, float)):
            raise ValueError(f"{cc!r} is not a compute capability")
        text = str(cc).strip()
        if text not in COMPUTE_CAPABILITIES:
            raise ValueError(f"{text!r} is not a compute capability TensorRT 10/11 builds for (Turing, 7.5, and newer)")
        if gpu is not None and (not isinstance(gpu, str) or not gpu.strip()):
            raise ValueError(f"the GPU model for {text} must be a name like \"NVIDIA A10\" or null, got {gpu!r}")
        if text in out:
            raise ValueError(f"compute capability {text} is listed twice")
        out[text] = gpu.strip() if gpu else None
    return [{"cc": cc, "gpu": out[cc]} for cc in sorted(out, key=lambda c: tuple(map(int, c.split("."))))]


def canonical(kind: str, given: list[str]) -> list[str]:
    """Formats in canonical order, duplicates dropped, with the formats each one brings (a Track D ensemble's
    End2End folder)."""
    if not given:
        raise ValueError("the list is empty")
    wanted = set(given) | {b for f in given for b in formats.FORMATS[f].brings}
    return [f for f in formats.for_kind(kind) if f in wanted]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class DynamicBatching(Strict):
    preferred_batch_sizes: list[Annotated[int, Field(gt=0)]] | None = None  # None: 8/16/32/64 capped at max_batch
    max_queue_delay_us: Annotated[int, Field(ge=0)] = 5000


class InstanceGroup(Strict):
    kind: Literal["gpu", "cpu"] = "gpu"
    count: Annotated[int, Field(gt=0)] = 1


class OnnxTensorRT(Strict):
    """The TensorRT execution accelerator Triton's onnxruntime backend uses for the End2End ONNX folders
    (the only onnxruntime provider that runs EfficientNMS_TRT). None: the model's own setting."""
    precision: Literal["fp16", "fp32"] | None = None
    workspace_gb: Annotated[float, Field(gt=0)] | None = None
    engine_cache_path: Annotated[str, StringConstraints(pattern=r"^/")] = "/tmp/triton-onnxruntime-trt-cache"


class Dali(Strict):
    """Track D/E's DALI preprocessing model (`<folder>_preprocess`): how fast it serves on the GPU. num_threads and
    hw_decoder_load are baked into model.dali (num_threads also into config.pbtxt, which the DALI backend reads);
    instances is that model's own instance_group count (None: INSTANCES on GPU, instance_group.count on CPU)."""
    num_threads: Annotated[int, Field(gt=0)] = dali_defaults.NUM_THREADS
    hw_decoder_load: Annotated[float, Field(ge=0, le=1)] = dali_defaults.HW_DECODER_LOAD
    instances: Annotated[int, Field(gt=0)] | None = None


class Versions(Strict):
    """How many published versions each folder keeps and which ones Triton serves (`version_policy`)."""
    serve: Annotated[str, StringConstraints(pattern=r"^(latest [1-9][0-9]*|all)$")] | list[Annotated[int, Field(gt=0)]] \
        = "latest 1"
    keep: Annotated[int, Field(ge=1)] = 2

    @model_validator(mode="after")
    def _enough_kept(self) -> "Versions":
        if isinstance(self.serve, list) and not self.serve:
            raise ValueError("serve lists no version")
        if isinstance(self.serve, str) and self.serve.startswith("latest ") and int(self.serve.split()[1]) > self.keep:
            raise ValueError(f"serve '{self.serve}' needs keep: {self.serve.split()[1]} or more (keep is {self.keep})")
        return self


from ...tooling.quantize import CALIBRATION_MIN  # noqa: E402


class Calibration(Strict):
    """The images a quantized graph's activation ranges are measured on (letterboxed as served)."""
    images: Annotated[str, StringConstraints(min_length=1)]
    count: Annotated[int, Field(ge=CALIBRATION_MIN)] = 512
    method: Literal["entropy", "max", "percentile"] = "entropy"


class Validation(Strict):
    """A held set: FP32, FP16 and the quantized graph measured on it (mAP with labels, agreement without)."""
    images: Annotated[str, StringConstraints(min_length=1)]
    labels: Annotated[str, StringConstraints(min_length=1)] | None = None


class Serving(Strict):
    """What every served model sets, detector or encoder: TensorRT build, the Triton serving it, batching."""
    precision: Literal["fp16", "fp32", "int8", "fp8"] = "fp16"
    opset: Opset = 17
    workspace_gb: Annotated[float, Field(gt=0)] = 4.0
    allow_tf32: bool = False
    dynamic_batching: DynamicBatching = DynamicBatching()
    instance_group: InstanceGroup = InstanceGroup()
    triton: TritonRelease | None = None        # the Triton release serving the plans (tooling/triton_releases.py)
    tensorrt: TensorRTVersion | None = None    # its TensorRT, for a release the table does not list
    gpu_targets: Any = None                    # compute capabilities of the fleet: one plan each
    versions: Versions = Versions()            # published versions kept and served (engine/publish.py)
    calibration: Calibration | None = None     # precision int8 / fp8: the calibration images
    validation: Validation | None = None       # a held set the quantized graph's accuracy is measured on
    max_accuracy_drop: Annotated[float, Field(ge=0)] | None = None  # None: 1.0 mAP point, or 2 % agreement
    accept_accuracy_drop: bool = False
    config_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)  # role -> ModelConfig fields

    @field_validator("gpu_targets")
    @classmethod
    def _gpu_targets(cls, v: Any) -> list[dict] | None:
        return gpu_targets(v)


class Settings(Serving):
    """Every knob a detector can set; the `defaults` block sets them for all models."""
    imgsz: int = 640
    iou: Annotated[float, Field(gt=0, le=1)] = 0.7
    conf: Annotated[float, Field(ge=0, le=1)] = 0.25
    topk: Annotated[int, Field(ge=1, le=TOPK_MAX)] = 300
    normalize_boxes: bool = True
    class_agnostic: bool = False
    nms_free: bool | None = None               # None: the family's own default
    max_batch: Annotated[int, Field(gt=0)] = 32
    formats: list[Format] = Field(default_factory=lambda: formats.defaults("detector"))
    save_labels: bool = True
    onnx_tensorrt: OnnxTensorRT = OnnxTensorRT()
    dali: Dali = Dali()

    @field_validator("imgsz")
    @classmethod
    def _imgsz(cls, v: int) -> int:
        if v % 32 or not IMGSZ_MIN <= v <= IMGSZ_MAX:
            raise ValueError(f"{v} is not a multiple of 32 between {IMGSZ_MIN} and {IMGSZ_MAX}")
        return v

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        return canonical("detector", v)


# Per-model overrides are taken as given here and validated after merging with the defaults, so that a
# bad value is reported at the key the user wrote (models.NAME.topk) with the same rules as `defaults`.
BuiltinEntry = create_model("BuiltinEntry", __base__=Strict, **{k: (Any, None) for k in Settings.model_fields},
                            trust_checkpoint=(bool, False))


class ModelEntry(BuiltinEntry):
    pt_file: str | None = None
    arch: Literal[ARCHITECTURES] | None = None
    family: Literal[tuple(families.DETECTORS)] | None = None
    triton_name: Name | None = None
    num_classes: Annotated[int, Field(gt=0)] | None = None
    class_names: list[Annotated[str, StringConstraints(min_length=1)]] | None = None

    @model_validator(mode="after")
    def _source(self) -> "ModelEntry":
        if (self.pt_file is None) == (self.arch is None):
            raise ValueError("give exactly one of 'pt_file' (a checkpoint) or 'arch' (an untrained architecture)")
        if self.class_names is not None and self.num_classes is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names but num_classes is {self.num_classes}")
        if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class_names contains duplicates")
        return self


class EncoderEntry(Serving):
    """An embedding model (MobileCLIP2): an image and a text encoder (visual search). Its own defaults,
    except triton, tensorrt and gpu_targets: unset, they are the `defaults` block's."""
    model: Literal[CLIP_MODELS] = CLIP_MODELS[0]
    # open_clip pretrained tag (downloaded by open_clip), a local checkpoint file, or 'untrained'.
    weights: Annotated[str, StringConstraints(min_length=1)] = "dfndr2b"
    formats: list[EncoderFormat] = Field(default_factory=lambda: formats.defaults("encoder"))
    image_max_batch: Annotated[int, Field(gt=0)] = 128
    text_max_batch: Annotated[int, Field(gt=0)] = 64
    trust_checkpoint: bool = False

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        return canonical("encoder", v)


class SearchEntry(Strict):
    """Track E: one detector and one MobileCLIP2 encoder behind one decode (a Triton ensemble)."""
    detector: Name                                # a detector's Triton name (yolov11_small, a models key, ...)
    encoder: Name                                 # an `encoders` key
    backend: Literal["onnx", "trt"] = "onnx"     # the members: End2End ONNX + encoder ONNX, or the plans
    versions: Versions | None = None              # None: the defaults block's
    config_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Manifest(Strict):
    defaults: Settings = Settings()
    builtins: dict[Literal[tuple(BUILTINS)], BuiltinEntry | None] = Field(default_factory=dict)
    models: dict[Name, ModelEntry] = Field(default_factory=dict)
    encoders: dict[Name, EncoderEntry] = Field(default_factory=dict)
    ensembles: dict[Name, SearchEntry] = Field(default_factory=dict)

    @field_validator("builtins", mode="before")
    @classmethod
    def _builtin_list(cls, v: Any) -> Any:
        return {size: None for size in v} if isinstance(v, list) else v

    @model_validator(mode="after")
    def _not_empty(self) -> "Manifest":
        if not self.builtins and not self.models and not self.encoders:
            raise ValueError("the manifest declares no model: add 'builtins: [small]', a 'models:' or an "
                             "'encoders:' entry")
        return self
