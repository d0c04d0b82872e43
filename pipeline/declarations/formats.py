"""The formats: each one declaration — its name (what `formats:` lists), the Triton folder it makes for each
kind of model (the folder's suffix and the steps that fill it), whether models get it by default, and the
formats it brings along. The tools it needs (TensorRT, DALI) are derived from its steps.

Everything that speaks of formats reads this registry: the manifest's allowed values and defaults, folder
names, default tasks, skip notices and the failure of a named task whose tool is missing
(declarations/dag.py). Adding a format is one `Format(...)` here, plus its steps if they are new.
"""
from __future__ import annotations

import functools

from ..families.base import ANCHORS
from . import layout as L
from .steps import encoders, graphs
from .steps.ensembles import DetectionEnsemble, SearchEnsemble
from .steps.folders import ENCODER_INFO, LABELS, TritonFolder
from .tools import TOOLS

KINDS = ("detector", "encoder", "ensemble")


class Format:
    """name: the manifest's name of it; doc: for `doit list`; folders: {model kind: (folder suffix, folder)};
    default: in a model's formats unless the manifest says otherwise; brings: formats whose folders it
    needs (derived: a Track D ensemble's End2End folder, added to the model's formats with it); group: the doit task basename of its complete folders."""

    def __init__(self, name: str, doc: str, folders: dict, *, default: bool = True, group: str | None = None):
        self.name, self.doc, self.default, self.group = name, doc, default, group or name
        self.suffix = {kind: suffix for kind, (suffix, _) in folders.items()}
        self.folders = {kind: folder.bind(name, self._applies(kind)) for kind, (_, folder) in folders.items()}

    def _applies(self, kind: str):
        name = self.name
        return lambda m: m["kind"] == kind and name in m["settings"]["formats"]

    @property
    def brings(self) -> tuple[str, ...]:
        """Formats whose folders this one's are made of, for any model (a Track D ensemble's End2End folder)."""
        return tuple(f for folder in self.folders.values() for _, f in folder.member_folders(None))

    @functools.cached_property
    def own_tools(self) -> frozenset[str]:
        """The tools its own steps need."""
        return frozenset(t.name for folder in self.folders.values() for s in folder.steps
                         for t in getattr(s.requires, "tools", ()))

    def tools(self, m: dict) -> set[str]:
        """Every tool the model's folder of this format needs: its own steps' and its member folders'."""
        members = self.folders[m["kind"]].member_folders(m)
        return self.own_tools.union(*(FORMATS[f].tools(r) for r, f in members))

    def plans(self, kind: str) -> bool:
        """Its folder for this kind holds TensorRT plans (one per GPU target when the manifest has targets)."""
        return getattr(self.folders.get(kind), "plans_from", None) is not None


def _onnxruntime_tensorrt(m: dict) -> dict | None:
    """Triton's onnxruntime backend runs EfficientNMS_TRT only through its TensorRT execution accelerator:
    the parameters of `optimization { execution_accelerators { gpu_execution_accelerator ... } }`. An
    NMS-free head's End2End graph needs none: plain onnxruntime runs it, on CPU and GPU alike."""
    if m["head"] != ANCHORS:
        return None
    s, o = m["settings"], m["settings"]["onnx_tensorrt"]
    precision = o["precision"] or (s["precision"] if s["precision"] in ("fp16", "fp32") else "fp16")  # int8 plans only
    return {"precision_mode": precision.upper(),
            "max_workspace_size_bytes": str(int((o["workspace_gb"] or s["workspace_gb"]) * (1 << 30))),
            "trt_engine_cache_enable": "true",
            "trt_engine_cache_path": f"{o['engine_cache_path'].rstrip('/')}/{m['folders']['onnx_end2end']['name']}"}


def _raw_plan_source(m: dict) -> str:
    return graphs.trt_source(m, False)


def _end2end_plan_source(m: dict) -> str:
    return graphs.trt_source(m, True)


ALL = (
    Format("onnx", f"Triton folder {L.MODELS}/<name>/ (raw detector ONNX) or {L.MODELS}/<encoder>_onnx/ (encoder ONNX)", {
        "detector": ("", TritonFolder(graphs.EXPORT_ONNX, io=L.raw_onnx, platform="onnxruntime_onnx",
                                      sidecar=LABELS)),
        # the plan folder has the documented name; the ONNX variant gets "_onnx" so the two never collide
        "encoder": ("_onnx", TritonFolder(encoders.PUBLISH_ENCODER, io=L.served_onnx,
                                          platform="onnxruntime_onnx", sidecar=ENCODER_INFO))}),
    Format("onnx_end2end", f"Triton folder {L.MODELS}/<name>_end2end/: End2End ONNX + config.pbtxt + labels.txt", {
        "detector": ("_end2end", TritonFolder(graphs.END2END_ONNX, io=L.end2end_onnx, platform="onnxruntime_onnx",
                                              sidecar=LABELS, accelerator=_onnxruntime_tensorrt))}),
    Format("trt", f"Triton folder {L.MODELS}/<name>_trt/ (detector plan) or {L.MODELS}/<encoder>/ (encoder plan)", {
        "detector": ("_trt", TritonFolder(plans_from=_raw_plan_source, io=_raw_plan_source, platform="tensorrt_plan",
                                          sidecar=LABELS)),
        "encoder": ("", TritonFolder(plans_from=L.encoder_trt_onnx, io=L.encoder_trt_onnx,
                                     platform="tensorrt_plan", sidecar=ENCODER_INFO))}),
    Format("trt_end2end", f"Triton folder {L.MODELS}/<name>_trt_end2end/: TensorRT plan with compiled NMS + config.pbtxt "
                          "+ labels.txt", {
        "detector": ("_trt_end2end", TritonFolder(plans_from=_end2end_plan_source, io=_end2end_plan_source,
                                                  platform="tensorrt_plan", sidecar=LABELS))}),
    Format("dali_end2end", f"Track D ensemble {L.MODELS}/<name>_dali_end2end/: encoded images -> DALI -> End2End ONNX -> "
                           "boxes in original pixels", {
        "detector": ("_dali_end2end", DetectionEnsemble("onnx_end2end"))}, default=False),
    Format("dali_trt_end2end", f"Track D ensemble {L.MODELS}/<name>_dali_trt_end2end/: encoded images -> DALI -> TensorRT "
                               "End2End plan -> boxes in original pixels", {
        "detector": ("_dali_trt_end2end", DetectionEnsemble("trt_end2end"))}, default=False),
    Format("search", f"Track E ensemble {L.MODELS}/<key>/ (manifest ensembles:): one decode, detections + image embeddings",
           {"ensemble": ("", SearchEnsemble())}, group="ensemble"),
)
FORMATS = {f.name: f for f in ALL}


def for_kind(kind: str) -> tuple[str, ...]:
    """The formats a kind of model may list, in canonical order."""
    return tuple(f.name for f in ALL if kind in f.folders)


def defaults(kind: str) -> list[str]:
    return [f.name for f in ALL if kind in f.folders and f.default]


def folders(m: dict, formats: list[str]) -> dict[str, dict]:
    """A record's Triton folders: {format: {"name", "per_target", "plans"}} (per_target: one plan per GPU
    target, published only complete)."""
    out = {}
    for name in formats:
        f = FORMATS[name]
        plans = f.plans(m["kind"])
        out[name] = {"name": m["name"] + f.suffix[m["kind"]], "plans": plans,
                     "per_target": plans and bool(m["settings"].get("gpu_targets"))}
    return out


def missing_tools(m: dict, fmt: str) -> list:
    """The tools the model's folder of this format needs and this host lacks."""
    return [TOOLS[t] for t in sorted(FORMATS[fmt].tools(m)) if not TOOLS[t].present]
