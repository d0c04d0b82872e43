"""A manifest resolved into plain, JSON-able model records: defaults applied, family and head chosen, Triton
folders named, every cross-entry rule checked. Imported only when a manifest is new or changed (cache.py):
pydantic and yaml cost more than a no-op `doit` may spend.

A record: key (where in the manifest), name, kind (detector / encoder / ensemble), family, settings, the
folders it makes ({format: {name, per_target, plans}}), and what its kind needs (checkpoint, weights, members).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ...engine.errors import UserError
from ...families.base import ANCHORS, TOPK
from ...tooling import dali_preprocess as dali_defaults
from ...tooling import triton_releases, trt_support
from .. import families, formats, layout
from ..steps.ensembles import SearchEnsemble
from . import config_overrides
from .custom import parse_custom
from .schema import ALLOWED, CALIBRATION_MIN, NAME_RE, BUILTINS, EncoderEntry, Manifest, SearchEntry, Settings
from .wording import explain



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
        raise explain(e, file) from None

    records: list[dict] = []
    base = manifest.defaults.model_dump()

    def settings(entry: BaseModel | None, extra: dict, key: str) -> dict:
        merged = {**base, **extra}
        given = entry.model_dump(include=set(Settings.model_fields), exclude_none=True) if entry else {}
        for k, v in given.items():
            merged[k] = {**merged[k], **v} if isinstance(merged[k], dict) and isinstance(v, dict) else v
        try:
            out = Settings.model_validate(merged).model_dump()
        except ValidationError as e:
            raise explain(e, file, prefix=key) from None
        if out["dali"]["instances"] is None:  # the DALI model's own count: its default is for GPUs
            gpu = out["instance_group"]["kind"] == "gpu"
            out["dali"]["instances"] = dali_defaults.INSTANCES if gpu else out["instance_group"]["count"]
        return out

    for key, entry in manifest.builtins.items():
        family, builtin = BUILTINS[key]
        records.append({
            "key": f"builtins.{key}", "name": builtin.name, "kind": "detector", "family": family.name,
            "source": "builtin", "pt": layout.builtin_checkpoint(builtin.file), "url": family.download_url(builtin.file),
            "num_classes": None, "class_names": None, "untrained": False,
            "trust_checkpoint": bool(entry and entry.trust_checkpoint),
            "settings": settings(entry, {"max_batch": builtin.max_batch, "topk": 300}, f"builtins.{key}"),
        })
    for key, entry in manifest.models.items():
        rec: dict[str, Any] = {"key": f"models.{key}", "kind": "detector", "num_classes": entry.num_classes,
                               "trust_checkpoint": entry.trust_checkpoint, "class_names": entry.class_names,
                               "settings": settings(entry, {}, f"models.{key}")}
        if entry.pt_file is not None:
            pt = Path(os.path.expanduser(entry.pt_file))
            pt = pt if pt.is_absolute() else (path.parent / pt)
            rec.update(source="file", pt=_portable(pt, root), untrained=False, name=entry.triton_name or pt.stem,
                       **_checkpoint_family(pt, entry.family))
        else:
            family = families.for_architecture(entry.arch)
            if entry.family and entry.family != family.name:
                raise UserError(f"arch {entry.arch} is a {family.title} architecture, but family says {entry.family}",
                                file=file, key=f"models.{key}.family", fix="remove family (arch implies it)")
            rec.update(source="arch", arch=entry.arch, name=entry.triton_name or key, untrained=True,
                       pt=layout.untrained_checkpoint(entry.triton_name or key), family=family.name)
        if not re.match(NAME_RE, rec["name"]) or ".." in rec["name"]:
            raise UserError(f"the Triton name '{rec['name']}' derived from the file name is not usable", file=file,
                            key=f"{rec['key']}.triton_name", fix=f"set triton_name to {ALLOWED['triton_name']}")
        records.append(rec)
    for rec in records:
        rec["head"] = _head(rec, file)

    for key, enc in manifest.encoders.items():
        records += _encoder_records(key, enc, path, root, manifest.defaults)
    searches = [(key, entry) for key, entry in manifest.ensembles.items()]
    for key, entry in searches:  # an ensemble's member folders join their members' formats first
        _add_members(key, entry, records, file)
    for rec in records:
        rec["manifest"] = file
        rec["folders"] = formats.folders(rec, rec["settings"]["formats"])
        _data_folders(rec, path, root, file)
    records += [_search_record(key, entry, records, file) for key, entry in searches]
    _check_names(records, file)
    for rec in records:
        _check(rec, file)
    return records


def _head(rec: dict, file: str) -> str:
    """The head kind a detector serves: the manifest's nms_free, or its family's own default."""
    family = families.DETECTORS[rec["family"]]
    nms_free = rec["settings"]["nms_free"]
    head = family.head(family.default_nms_free if nms_free is None else nms_free)
    if head not in family.heads:
        raise UserError(f"nms_free is {str(nms_free).lower()}, but a {family.title} model has no such head (it has "
                        f"{', '.join(family.heads)})", file=file, key=f"{rec['key']}.nms_free",
                        fix="remove nms_free (the family's default head is used)")
    rec["settings"]["nms_free"] = head == family.head(True)
    return head


def _checkpoint_family(pt: Path, given: str | None) -> dict:
    """The family of a checkpoint: the entry's `family`, or read from the file (the classes its pickle
    references; nothing runs). A file no family recognizes is given the first family, whose loading (the
    inspect step) then says in one paragraph what the file is. A family read from the file is valid only
    while the file is unchanged: its (mtime, size) is kept, and the cached resolution is redone when they
    change (cache.py)."""
    if given:
        return {"family": given}
    try:
        st = os.stat(pt)
    except OSError:  # missing: reported with the other inputs (cache.py)
        return {"family": next(iter(families.DETECTORS))}
    found = families.for_checkpoint(pt)
    return {"family": (found.name if found else next(iter(families.DETECTORS))),
            "checkpoint_stamp": [st.st_mtime_ns, st.st_size]}


def _data_folders(rec: dict, path: Path, root: Path, file: str) -> None:
    """A quantized graph's calibration and validation folders: relative to the manifest's folder, present."""
    s = rec["settings"]
    for block, keys in (("calibration", ("images",)), ("validation", ("images", "labels"))):
        given = dict(s[block]) if s.get(block) else None  # a copy: an encoder's two records share their settings
        s[block] = given
        for k in keys if given else ():
            if given.get(k) is None:
                continue
            folder = Path(os.path.expanduser(given[k]))
            folder = folder if folder.is_absolute() else path.parent / folder
            if not folder.is_dir():
                raise UserError(f"the {block} folder '{given[k]}' does not exist ({folder})", file=file,
                                key=f"{rec['key']}.{block}.{k}",
                                fix=f"give a folder of {'YOLO-format label files' if k == 'labels' else 'images'}, "
                                    "relative to the manifest's folder or absolute")
            given[k] = _portable(folder, root)
    if s["precision"] in ("int8", "fp8") and not s.get("calibration"):
        raise UserError(f"precision {s['precision']} needs calibration images: the quantized graph's activation "
                        "ranges are measured on them", file=file, key=f"{rec['key']}.precision",
                        fix="add calibration: {images: FOLDER} (at least "
                            f"{CALIBRATION_MIN} images like the ones served), or use precision fp16")
    if s["precision"] == "fp8":
        old = [t["cc"] for t in s.get("gpu_targets") or [] if tuple(map(int, t["cc"].split("."))) < (8, 9)]
        if old:
            raise UserError(f"precision fp8 runs on GPUs of compute capability 8.9 (Ada) or newer, but gpu_targets "
                            f"lists {', '.join(old)}", file=file, key=f"{rec['key']}.gpu_targets",
                            fix="remove those targets, or use precision int8 (every GPU TensorRT 10/11 builds for)")


def _check(rec: dict, file: str) -> None:
    s = rec["settings"]
    sizes = s["dynamic_batching"]["preferred_batch_sizes"]
    if sizes and max(sizes) > s["max_batch"]:
        raise UserError(f"preferred batch size {max(sizes)} exceeds max_batch {s['max_batch']}", file=file,
                        key=f"{rec['key']}.dynamic_batching.preferred_batch_sizes",
                        fix="lower the preferred sizes or raise max_batch")
    s["triton_target"] = _triton_target(s, rec["key"], file)
    if s["gpu_targets"] and s["triton_target"] is None and any(f["plans"] for f in rec["folders"].values()):
        raise UserError("gpu_targets is set but not which Triton serves the plans: hosts without TensorRT (the "
                        "assembler) must know which TensorRT the plans are built with to find them in the "
                        "artifact cache", file=file, key=f"{rec['key']}.gpu_targets",
                        fix="add triton: \"24.12\" (your server's release) or tensorrt: \"10.7.0.23\" beside "
                            "gpu_targets, in the same block")
    if rec.get("head") == TOPK:
        anchors = 21 * (s["imgsz"] // 32) ** 2  # the P3-P5 grid cells (8400 at 640)
        if s["topk"] > anchors:
            raise UserError(f"topk {s['topk']} exceeds the {anchors} candidates of an NMS-free head at imgsz "
                            f"{s['imgsz']}", file=file, key=f"{rec['key']}.topk",
                            fix=f"set topk to at most {anchors}, or raise imgsz")
        if s["topk"] >= trt_support.TOPK_MAX and any(f["plans"] for f in rec["folders"].values()):
            raise UserError(f"topk {s['topk']} is more than TensorRT's ONNX parser takes for a TopK (K below "
                            f"{trt_support.TOPK_MAX}), and the NMS-free head is a TopK", file=file,
                            key=f"{rec['key']}.topk", fix=f"set topk below {trt_support.TOPK_MAX} for the TensorRT formats")
    if s["config_overrides"]:
        config_overrides.check(rec, file)
    if s.get("class_agnostic") and "onnx_end2end" in s["formats"] and rec.get("head") == ANCHORS:
        raise UserError("class_agnostic NMS cannot be served by the onnx_end2end format: onnxruntime's schema "
                        "of EfficientNMS_TRT has no class_agnostic attribute, so Triton's onnxruntime backend "
                        "would refuse the graph", file=file, key=f"{rec['key']}.class_agnostic",
                        fix="set class_agnostic: false, or drop onnx_end2end from formats (the TensorRT plan, "
                            "trt_end2end, supports class_agnostic)")


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
    """One record per role of an encoder model (MobileCLIP2: image and text), sharing one weights record."""
    family = families.for_encoder_model(enc.model)
    weights = enc.weights
    if weights == "untrained":
        source = {"weights_source": "untrained", "weights": None}
    elif weights.endswith((".pt", ".pth", ".bin", ".safetensors")) or "/" in weights:
        file = Path(os.path.expanduser(weights))
        file = file if file.is_absolute() else path.parent / file
        source = {"weights_source": "file", "weights": _portable(file, root)}
    else:
        source = {"weights_source": "pretrained", "weights": weights}
    common = enc.model_dump(exclude={"image_max_batch", "text_max_batch", "weights", "trust_checkpoint", "model"})
    if enc.triton is None and enc.tensorrt is None:
        common.update(triton=defaults.triton, tensorrt=defaults.tensorrt)
    if enc.gpu_targets is None:
        common.update(gpu_targets=defaults.gpu_targets)
    batch = {"image": enc.image_max_batch, "text": enc.text_max_batch}
    return [{"key": f"encoders.{key}", "kind": "encoder", "family": family.name, "role": role, "encoder": key,
             "name": f"{key}_{role}_encoder", "clip_model": enc.model, **source,
             "untrained": source["weights_source"] == "untrained", "num_classes": None, "class_names": None,
             "trust_checkpoint": enc.trust_checkpoint,
             "settings": {**common, "max_batch": batch[role], "save_labels": False}} for role in family.roles]


def _members(key: str, entry: SearchEntry, records: list[dict], file: str) -> tuple[dict, dict]:
    detectors = {r["name"]: r for r in records if r["kind"] == "detector"}
    encoders = {r["encoder"]: r for r in records if r["kind"] == "encoder" and r["role"] == "image"}
    det = detectors.get(entry.detector)
    if det is None:
        raise UserError(f"ensemble '{key}' names detector '{entry.detector}', which no detector of this manifest is "
                        "called", file=file, key=f"ensembles.{key}.detector",
                        fix=f"use one of: {', '.join(detectors) or '(none: add a builtins or models entry)'}")
    enc = encoders.get(entry.encoder)
    if enc is None:
        raise UserError(f"ensemble '{key}' names encoder '{entry.encoder}', which is not an encoders key",
                        file=file, key=f"ensembles.{key}.encoder",
                        fix=f"use one of: {', '.join(encoders) or '(none: add an encoders entry)'}")
    return det, enc


def _add_members(key: str, entry: SearchEntry, records: list[dict], file: str) -> None:
    """Track E: the member folders an ensemble needs join its detector's and encoder's formats."""
    det, enc = _members(key, entry, records, file)
    det_fmt, enc_fmt = SearchEnsemble.MEMBERS[entry.backend]
    det["settings"]["formats"] = [f for f in formats.for_kind("detector") if f in det["settings"]["formats"] + [det_fmt]]
    for rec in records:
        if rec.get("encoder") == entry.encoder:
            rec["settings"]["formats"] = [f for f in formats.for_kind("encoder")
                                          if f in rec["settings"]["formats"] + [enc_fmt]]


def _search_record(key: str, entry: SearchEntry, records: list[dict], file: str) -> dict:
    """Track E: the ensemble's record, carrying copies of its members' records."""
    det, enc = _members(key, entry, records, file)
    s = det["settings"]
    settings = {k: s[k] for k in ("imgsz", "topk", "normalize_boxes", "opset", "precision", "dynamic_batching",
                                  "instance_group", "save_labels", "triton", "tensorrt", "dali")}
    settings.update(formats=["search"], max_batch=min(s["max_batch"], enc["settings"]["max_batch"]), gpu_targets=None,
                    versions=entry.versions.model_dump() if entry.versions else s["versions"],
                    config_overrides=entry.config_overrides)
    rec = {"key": f"ensembles.{key}", "kind": "ensemble", "name": key, "backend": entry.backend,
           "detector": dict(det), "image_encoder": dict(enc), "untrained": det["untrained"] or enc["untrained"],
           "num_classes": det["num_classes"], "class_names": det["class_names"], "settings": settings, "manifest": file}
    rec["folders"] = formats.folders(rec, ["search"])
    return rec


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
        names = [f["name"] for f in rec["folders"].values()]
        names += [f["name"] + suffix for fmt, f in rec["folders"].items()
                  for suffix in formats.FORMATS[fmt].folders[rec["kind"]].subfolders]
        for folder in names:
            if folder in owner:
                raise UserError(f"the Triton model folder '{folder}' would be written by both '{owner[folder]}' and "
                                f"'{rec['key']}'", file=file, key=f"{rec['key']}.triton_name",
                                fix="give one of them a different triton_name")
            owner[folder] = rec["key"]
