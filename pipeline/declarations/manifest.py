"""The manifest schema: what a user may write, validated with pydantic, resolved to plain model records.

Imported only when a manifest is new or changed (see `manifest_cache.py`): pydantic and yaml cost more
than a no-op `doit` may spend. Every key, its default and its allowed values: manifests/README.md.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model,
                      field_validator, model_validator)

from ..engine.errors import UserError
from . import layout, triton_releases
from .layout import DALI_MEMBER, DEFAULT_FORMATS, ENCODER_FORMATS, FORMATS

# The documented built-in sizes: size -> (checkpoint letter, max_batch). topk 300 for all.
BUILTIN_SIZES: dict[str, tuple[str, int]] = {
    "nano": ("n", 128), "small": ("s", 64), "medium": ("m", 32), "large": ("l", 16), "xlarge": ("x", 8),
}
BUILTIN_RELEASE_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0/{file}"

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
Name = Annotated[str, StringConstraints(pattern=NAME_RE)]
Format = Literal[FORMATS]
EncoderFormat = Literal[ENCODER_FORMATS]
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
CLIP_MODELS = ("MobileCLIP2-S2", "MobileCLIP2-B")
ALLOWED = {
    "imgsz": f"a multiple of 32 between {IMGSZ_MIN} and {IMGSZ_MAX} (YOLO11's standard is 640)",
    "precision": "'fp16' (the default) or 'fp32'",
    "iou": "a number in (0, 1], e.g. 0.7",
    "conf": "a number in [0, 1], e.g. 0.25",
    "topk": f"an integer from 1 to {TOPK_MAX} (EfficientNMS_TRT keeps at most {TOPK_MAX} candidates); default 300",
    "max_batch": "a positive integer, e.g. 32",
    "formats": f"a list drawn from {', '.join(FORMATS)} (encoders: {', '.join(ENCODER_FORMATS)})",
    "opset": f"an ONNX opset from {OPSET_MIN} to {OPSET_MAX} (17 is what TensorRT 10/11 parse best)",
    "workspace_gb": "a positive number of GiB, e.g. 4",
    "allow_tf32": "true or false (false: FP32 layers of TensorRT plans really run in FP32)",
    "normalize_boxes": "true or false",
    "class_agnostic": "true or false",
    "save_labels": "true or false",
    "pt_file": "the path of an Ultralytics YOLO detection checkpoint (.pt), relative to the manifest's folder",
    "arch": "an Ultralytics architecture: yolo11n, yolo11s, yolo11m, yolo11l or yolo11x",
    "triton_name": "letters, digits, '_', '-' or '.', starting with a letter or digit, no '/', '..' or spaces",
    "num_classes": "a positive integer",
    "class_names": "a list of class-name strings, one per class",
    "builtins": f"a list of built-in sizes ({', '.join(BUILTIN_SIZES)}) or a mapping size -> settings",
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
    "detector": "the Triton name of a YOLO model of this manifest (e.g. yolov11_small, or a models key)",
    "encoder": "a key of the encoders block",
    "backend": "'onnx' (the End2End ONNX and encoder ONNX folders) or 'trt' (their TensorRT plans)",
    "engine_cache_path": "an absolute path, writable by the Triton server, e.g. /tmp/triton-onnxruntime-trt-cache",
}


PATTERN_WHAT = {"engine_cache_path": "an absolute path", "triton": "a Triton release (YY.MM)",
                "tensorrt": "a TensorRT 10.x or 11.x version"}


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


class Settings(Strict):
    """Every knob a model can set; the `defaults` block sets them for all models."""
    imgsz: int = 640
    precision: Literal["fp16", "fp32"] = "fp16"
    iou: Annotated[float, Field(gt=0, le=1)] = 0.7
    conf: Annotated[float, Field(ge=0, le=1)] = 0.25
    topk: Annotated[int, Field(ge=1, le=TOPK_MAX)] = 300
    normalize_boxes: bool = True
    class_agnostic: bool = False
    max_batch: Annotated[int, Field(gt=0)] = 32
    formats: list[Format] = Field(default_factory=lambda: list(DEFAULT_FORMATS))
    opset: Opset = 17
    workspace_gb: Annotated[float, Field(gt=0)] = 4.0
    allow_tf32: bool = False
    save_labels: bool = True
    dynamic_batching: DynamicBatching = DynamicBatching()
    instance_group: InstanceGroup = InstanceGroup()
    onnx_tensorrt: OnnxTensorRT = OnnxTensorRT()
    triton: TritonRelease | None = None        # the Triton release serving the plans (triton_releases.py)
    tensorrt: TensorRTVersion | None = None    # its TensorRT, for a release the table does not list
    gpu_targets: Any = None                    # compute capabilities of the fleet: one plan each (see _gpu_targets)

    @field_validator("gpu_targets")
    @classmethod
    def _gpu_targets(cls, v: Any) -> list[dict] | None:
        return gpu_targets(v)

    @field_validator("imgsz")
    @classmethod
    def _imgsz(cls, v: int) -> int:
        if v % 32 or not IMGSZ_MIN <= v <= IMGSZ_MAX:
            raise ValueError(f"{v} is not a multiple of 32 between {IMGSZ_MIN} and {IMGSZ_MAX}")
        return v

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("the list is empty")
        v = v + [DALI_MEMBER[f] for f in v if f in DALI_MEMBER]  # an ensemble's End2End folder comes with it
        return [f for f in FORMATS if f in v]  # canonical order, duplicates dropped


# Per-model overrides are taken as given here and validated after merging with the defaults, so that a
# bad value is reported at the key the user wrote (models.NAME.topk) with the same rules as `defaults`.
BuiltinEntry = create_model("BuiltinEntry", __base__=Strict, **{k: (Any, None) for k in Settings.model_fields},
                            trust_checkpoint=(bool, False))


class ModelEntry(BuiltinEntry):
    pt_file: str | None = None
    arch: Literal["yolo11n", "yolo11s", "yolo11m", "yolo11l", "yolo11x"] | None = None
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


class EncoderEntry(Strict):
    """A MobileCLIP2 model: an image and a text encoder (visual search)."""
    model: Literal["MobileCLIP2-S2", "MobileCLIP2-B"] = "MobileCLIP2-S2"
    # open_clip pretrained tag (downloaded by open_clip), a local checkpoint file, or 'untrained'.
    weights: Annotated[str, StringConstraints(min_length=1)] = "dfndr2b"
    formats: list[EncoderFormat] = Field(default_factory=lambda: list(ENCODER_FORMATS))
    image_max_batch: Annotated[int, Field(gt=0)] = 128
    text_max_batch: Annotated[int, Field(gt=0)] = 64
    precision: Literal["fp16", "fp32"] = "fp16"
    opset: Opset = 17
    workspace_gb: Annotated[float, Field(gt=0)] = 4.0
    allow_tf32: bool = False
    dynamic_batching: DynamicBatching = DynamicBatching()
    instance_group: InstanceGroup = InstanceGroup()
    trust_checkpoint: bool = False
    triton: TritonRelease | None = None       # None: the defaults' value
    tensorrt: TensorRTVersion | None = None
    gpu_targets: Any = None                   # None: the defaults' value

    @field_validator("gpu_targets")
    @classmethod
    def _gpu_targets(cls, v: Any) -> list[dict] | None:
        return gpu_targets(v)

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("the list is empty")
        return [f for f in ENCODER_FORMATS if f in v]


class SearchEntry(Strict):
    """Track E: one YOLO model and one MobileCLIP2 encoder behind one decode (a Triton ensemble)."""
    detector: Name                                # a YOLO model's Triton name (yolov11_small, a models key, ...)
    encoder: Name                                 # an `encoders` key
    backend: Literal["onnx", "trt"] = "onnx"     # the members: End2End ONNX + encoder ONNX, or the plans


class Manifest(Strict):
    defaults: Settings = Settings()
    builtins: dict[Literal["nano", "small", "medium", "large", "xlarge"], BuiltinEntry | None] = Field(
        default_factory=dict)
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


def _explain(error: ValidationError, file: str, prefix: str = "") -> UserError:
    """First pydantic error as a paragraph (key path, problem, fix); the count of any others."""
    errs = error.errors()
    first = errs[0]
    loc = [str(p) for p in first["loc"]
           if not str(p).startswith(("function-after", "literal", "int", "float", "[key]"))]
    key = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
    leaf = next((p for p in reversed(loc) if p in ALLOWED), None)
    msg = first["msg"].replace("Value error, ", "")
    if first["type"] == "extra_forbidden":
        parent = loc[-2] if len(loc) > 1 else ""
        allowed = _allowed_keys(prefix.split(".") + loc if prefix else loc)
        fix = f"remove '{loc[-1]}' or correct its spelling; allowed keys here: {allowed}"
        msg = f"unknown key '{loc[-1]}'" + (f" under '{parent}'" if parent else "")
    elif first["type"] == "string_pattern_mismatch" and leaf in PATTERN_WHAT:
        msg = f"{first.get('input')!r} is not {PATTERN_WHAT[leaf]}"
        fix = f"use {ALLOWED[leaf]}"
    elif first["type"] == "string_pattern_mismatch":
        msg = f"{first.get('input')!r} is not a usable Triton model name"
        fix = f"use {ALLOWED['triton_name']}"
    elif first["type"] == "missing":
        fix = f"add '{loc[-1]}'"
    else:
        given = first.get("input")
        if not isinstance(given, (dict, list)):
            msg = f"{msg} (got {given!r})"
        fix = f"use {ALLOWED[leaf]}" if leaf else "see manifests/README.md for the allowed values"
    more = f" ({len(errs) - 1} more problem(s) after this one)" if len(errs) > 1 else ""
    return UserError(msg + more, file=file, key=key, fix=fix)


def _allowed_keys(loc: list[str]) -> str:
    if len(loc) == 1:
        return ", ".join(Manifest.model_fields)
    if loc[0] == "models":
        return ", ".join(ModelEntry.model_fields)
    if loc[0] == "encoders":
        return ", ".join(EncoderEntry.model_fields)
    if loc[0] == "ensembles":
        return ", ".join(SearchEntry.model_fields)
    if loc[0] in ("defaults", "builtins"):
        tail = loc[-2]
        if tail == "dynamic_batching":
            return ", ".join(DynamicBatching.model_fields)
        if tail == "instance_group":
            return ", ".join(InstanceGroup.model_fields)
        if tail == "onnx_tensorrt":
            return ", ".join(OnnxTensorRT.model_fields)
        return ", ".join(Settings.model_fields)
    return "see manifests/README.md"


def parse_custom(value: str) -> dict[str, dict[str, Any]]:
    """`path[:name[:batch]]`, several separated by commas -> manifest `models:` entries (the documented
    `--custom-model` form)."""
    entries: dict[str, dict[str, Any]] = {}
    for item in filter(None, (s.strip() for s in value.split(","))):
        m = re.fullmatch(r"(?P<path>[^:]+?\.pt)(?::(?P<name>[^:]*))?(?::(?P<batch>[^:]*))?", item)
        if not m:
            raise UserError(f"'{item}' does not parse as path[:name[:batch]] with a .pt path",
                            file="command line", key="custom",
                            fix="write e.g. custom=/data/my_detector.pt:vehicle_detector:64 (name and batch optional)")
        entry: dict[str, Any] = {"pt_file": os.path.abspath(m["path"])}
        if m["name"]:
            entry["triton_name"] = m["name"]
        if m["batch"] is not None:
            if not m["batch"].isdigit() or int(m["batch"]) <= 0:
                raise UserError(f"the batch part '{m['batch']}' of '{item}' is not a positive integer",
                                file="command line", key="custom", fix="write e.g. custom=/data/my.pt:my_name:32")
            entry["max_batch"] = int(m["batch"])
        key = m["name"] or Path(m["path"]).stem
        entries[key] = entry
    if not entries:
        raise UserError("the value is empty", file="command line", key="custom",
                        fix="write e.g. custom=/data/my_detector.pt:vehicle_detector:64")
    return entries


def read_manifest(path: Path, custom: str | None = None) -> dict[str, Any]:
    """YAML (+ `custom=` models) -> raw dict. Without an explicit manifest, `custom=` models stand alone."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("the manifest file does not exist", file=str(path),
                        fix="pass an existing file with manifest=PATH, e.g. manifest=manifests/smoke.yaml") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        pos = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"the YAML is malformed{pos}: {problem}", file=str(path),
                        fix="correct the YAML syntax (indentation, ':' after keys, closed brackets and quotes)") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"the top level is a {type(raw).__name__}, not a mapping", file=str(path),
                        fix="start the file with 'builtins:', 'models:' or 'defaults:'")
    if custom:
        models = raw.get("models") or {}
        if not isinstance(models, dict):
            models = {}
        raw = {**raw, "models": {**models, **parse_custom(custom)}}
    return raw


def resolve(path: Path, root: Path, custom: str | None = None, standalone_custom: bool = False) -> list[dict]:
    """Validate the manifest and return one plain, JSON-able record per model, defaults applied."""
    raw = read_manifest(path, custom)
    if standalone_custom:
        raw = {k: v for k, v in raw.items() if k == "defaults"} | {"models": parse_custom(custom)}
    file = f"command line custom={custom}" if standalone_custom else str(path)
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as e:
        raise _explain(e, file) from None

    records: list[dict] = []
    base = manifest.defaults.model_dump()

    def settings(entry: BaseModel | None, extra: dict, key: str) -> dict:
        merged = {**base, **extra}
        given = entry.model_dump(include=set(Settings.model_fields), exclude_none=True) if entry else {}
        for k, v in given.items():
            merged[k] = {**merged[k], **v} if isinstance(merged[k], dict) and isinstance(v, dict) else v
        try:
            return Settings.model_validate(merged).model_dump()
        except ValidationError as e:
            raise _explain(e, file, prefix=key) from None

    for size, entry in manifest.builtins.items():
        letter, max_batch = BUILTIN_SIZES[size]
        file_name = f"yolo11{letter}.pt"
        records.append({
            "key": f"builtins.{size}", "name": f"yolov11_{size}", "source": "builtin", "size": size,
            "pt": layout.builtin_checkpoint(file_name), "url": BUILTIN_RELEASE_URL.format(file=file_name),
            "num_classes": None, "class_names": None, "untrained": False,
            "trust_checkpoint": bool(entry and entry.trust_checkpoint),
            "settings": settings(entry, {"max_batch": max_batch, "topk": 300}, f"builtins.{size}"),
        })
    for key, entry in manifest.models.items():
        rec: dict[str, Any] = {"key": f"models.{key}", "num_classes": entry.num_classes,
                               "trust_checkpoint": entry.trust_checkpoint,
                               "class_names": entry.class_names, "settings": settings(entry, {}, f"models.{key}")}
        if entry.pt_file is not None:
            pt = Path(os.path.expanduser(entry.pt_file))
            pt = pt if pt.is_absolute() else (path.parent / pt)
            rec.update(source="file", pt=_portable(pt, root), untrained=False,
                       name=entry.triton_name or pt.stem)
        else:
            rec.update(source="arch", arch=entry.arch, name=entry.triton_name or key, untrained=True,
                       pt=layout.untrained_checkpoint(entry.triton_name or key))
        if not re.match(NAME_RE, rec["name"]) or ".." in rec["name"]:
            raise UserError(f"the Triton name '{rec['name']}' derived from the file name is not usable", file=file,
                            key=f"{rec['key']}.triton_name", fix=f"set triton_name to {ALLOWED['triton_name']}")
        records.append(rec)

    for key, enc in manifest.encoders.items():
        records += _encoder_records(key, enc, path, root, manifest.defaults)
    records += [_search_record(key, entry, records, file) for key, entry in manifest.ensembles.items()]
    for rec in records:
        rec["manifest"] = file
    _check_names(records, file)
    for rec in records:
        s = rec["settings"]
        sizes = s["dynamic_batching"]["preferred_batch_sizes"]
        if sizes and max(sizes) > s["max_batch"]:
            raise UserError(f"preferred batch size {max(sizes)} exceeds max_batch {s['max_batch']}", file=file,
                            key=f"{rec['key']}.dynamic_batching.preferred_batch_sizes",
                            fix="lower the preferred sizes or raise max_batch")
        s["triton_target"] = _triton_target(s, rec["key"], file)
        if s["gpu_targets"] and s["triton_target"] is None and {"trt", "trt_end2end"} & set(s["formats"]):
            raise UserError("gpu_targets is set but not which Triton serves the plans: hosts without TensorRT (the "
                            "assembler) must know which TensorRT the plans are built with to find them in the "
                            "artifact cache", file=file, key=f"{rec['key']}.gpu_targets",
                            fix="add triton: \"24.12\" (your server's release) or tensorrt: \"10.7.0.23\" beside "
                                "gpu_targets, in the same block")
        if s.get("class_agnostic") and "onnx_end2end" in s["formats"]:
            raise UserError("class_agnostic NMS cannot be served by the onnx_end2end format: onnxruntime's schema "
                            "of EfficientNMS_TRT has no class_agnostic attribute, so Triton's onnxruntime backend "
                            "would refuse the graph", file=file, key=f"{rec['key']}.class_agnostic",
                            fix="set class_agnostic: false, or drop onnx_end2end from formats (the TensorRT plan, "
                                "trt_end2end, supports class_agnostic)")
    return records


def _triton_target(s: dict, key: str, file: str) -> dict | None:
    """`triton` (+ `tensorrt`) -> the TensorRT version the plans must be built with, checked here."""
    release, tensorrt = s["triton"], s["tensorrt"]
    row = triton_releases.TABLE.get(release) if release else None
    if release and not row and not tensorrt:
        raise UserError(f"Triton release {release} is not in the pipeline's table of which TensorRT each release "
                        f"ships (it knows {', '.join(triton_releases.TABLE)})", file=file, key=f"{key}.triton",
                        fix=f"also set tensorrt to that release's TensorRT version, e.g. tensorrt: \"10.13.3.9\" (find "
                            f"it with: docker run --rm nvcr.io/nvidia/tritonserver:{release}-py3 "
                            "bash -c 'dpkg -l | grep libnvinfer')")
    if row and tensorrt and triton_releases.engine_version(tensorrt) != triton_releases.engine_version(row[1]):
        raise UserError(f"Triton {release} ships TensorRT {row[1]}, but tensorrt says {tensorrt}", file=file,
                        key=f"{key}.tensorrt", fix="remove tensorrt (the release implies it) or correct triton")
    return triton_releases.target(release, tensorrt)


def _encoder_records(key: str, enc: EncoderEntry, path: Path, root: Path, defaults: Settings) -> list[dict]:
    """Two records per MobileCLIP2 model, image and text encoder, sharing one weights record."""
    weights = enc.weights
    if weights == "untrained":
        source = {"weights_source": "untrained", "weights": None}
    elif weights.endswith((".pt", ".pth", ".bin", ".safetensors")) or "/" in weights:
        file = Path(os.path.expanduser(weights))
        file = file if file.is_absolute() else path.parent / file
        source = {"weights_source": "file", "weights": _portable(file, root)}
    else:
        source = {"weights_source": "pretrained", "weights": weights}
    common = enc.model_dump(exclude={"image_max_batch", "text_max_batch", "weights", "trust_checkpoint"})
    if enc.triton is None and enc.tensorrt is None:
        common.update(triton=defaults.triton, tensorrt=defaults.tensorrt)
    if enc.gpu_targets is None:
        common.update(gpu_targets=defaults.gpu_targets)
    out = []
    for role, max_batch in (("image", enc.image_max_batch), ("text", enc.text_max_batch)):
        out.append({
            "key": f"encoders.{key}", "family": "clip", "role": role, "encoder": key,
            "name": f"{key}_{role}_encoder", "clip_model": enc.model, **source,
            "untrained": source["weights_source"] == "untrained", "num_classes": None, "class_names": None,
            "trust_checkpoint": enc.trust_checkpoint,
            "settings": {**common, "max_batch": max_batch, "save_labels": False},
        })
    return out


def _search_record(key: str, entry: SearchEntry, records: list[dict], file: str) -> dict:
    """Track E: the ensemble's record; the member folders it needs are added to its members' formats."""
    detectors = {r["name"]: r for r in records if layout.family(r) == "yolo"}
    encoders = {r["encoder"]: r for r in records if layout.family(r) == "clip" and r["role"] == "image"}
    det = detectors.get(entry.detector)
    if det is None:
        raise UserError(f"ensemble '{key}' names detector '{entry.detector}', which no YOLO model of this manifest is "
                        "called", file=file, key=f"ensembles.{key}.detector",
                        fix=f"use one of: {', '.join(detectors) or '(none: add a builtins or models entry)'}")
    enc = encoders.get(entry.encoder)
    if enc is None:
        raise UserError(f"ensemble '{key}' names encoder '{entry.encoder}', which is not an encoders key",
                        file=file, key=f"ensembles.{key}.encoder",
                        fix=f"use one of: {', '.join(encoders) or '(none: add an encoders entry)'}")
    wants = {"onnx": ("onnx_end2end", "onnx"), "trt": ("trt_end2end", "trt")}[entry.backend]
    det["settings"]["formats"] = [f for f in FORMATS if f in det["settings"]["formats"] + [wants[0]]]
    for rec in records:
        if rec.get("encoder") == entry.encoder:
            rec["settings"]["formats"] = [f for f in ENCODER_FORMATS if f in rec["settings"]["formats"] + [wants[1]]]
    s = det["settings"]
    settings = {k: s[k] for k in ("imgsz", "topk", "normalize_boxes", "opset", "precision", "dynamic_batching",
                                  "instance_group", "save_labels", "triton", "tensorrt")}
    settings.update(formats=["search"], max_batch=min(s["max_batch"], enc["settings"]["max_batch"]), gpu_targets=None,
                    encoder_precision=enc["settings"]["precision"])
    return {"key": f"ensembles.{key}", "family": "search", "name": key, "backend": entry.backend,
            "detector": dict(det), "image_encoder": dict(enc), "untrained": det["untrained"] or enc["untrained"],
            "num_classes": det["num_classes"], "class_names": det["class_names"], "settings": settings}


def _portable(p: Path, root: Path) -> str:
    """Inside the project: a path relative to it (the doit state then survives a move); else absolute."""
    p = Path(os.path.normpath(p.absolute()))
    try:
        return p.relative_to(root.absolute()).as_posix()
    except ValueError:
        return str(p)


def _check_names(records: list[dict], file: str) -> None:
    """Every Triton folder a model makes must be unique: `a_trt` collides with the `trt` folder of `a`."""
    owner: dict[str, str] = {}
    for rec in records:
        if ".." in rec["name"]:
            raise UserError(f"the Triton name '{rec['name']}' contains '..'", file=file, key=f"{rec['key']}",
                            fix=f"use {ALLOWED['triton_name']}")
        folders = [layout.folder(rec, fmt) for fmt in rec["settings"]["formats"]]
        folders += [f"{layout.folder(rec, fmt)}_{member}" for fmt in rec["settings"]["formats"]
                    if fmt in layout.DALI_MEMBER or fmt == "search" for member in ("preprocess", "postprocess")]
        for folder in folders:
            if folder in owner:
                raise UserError(f"the Triton model folder '{folder}' would be written by both '{owner[folder]}' and "
                                f"'{rec['key']}'", file=file, key=f"{rec['key']}.triton_name",
                                fix="give one of them a different triton_name")
            owner[folder] = rec["key"]
