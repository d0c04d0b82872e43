"""The Ultralytics YOLO11 detection family: how to load it offline, its raw graph, and how that graph is checked.

Raw graph: `images [B, 3, S, S]` FP32 in [0, 1] -> `output0 [B, 4 + nc, anchors]` (cx, cy, w, h in input
pixels, then the class scores, already sigmoided). Checked against the unfused checkpoint model on a
batch of 2 (not the export batch of 1: proves the batch axis is really dynamic): boxes within
BOX_TOL_PX pixels, scores within SCORE_TOL.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..declarations import layout
from ..engine import threads
from ..engine.errors import UserError
from ..tooling.onnx_tools import GraphSpec

BOX_TOL_PX = 1e-2   # max |Δ| of box coordinates (pixels) ONNX Runtime vs PyTorch
SCORE_TOL = 1e-4    # max |Δ| of class scores
VERIFY_BATCH = 2


def configure() -> None:
    """Ultralytics offline and self-contained: no online checks, no pip installs, settings inside the
    project. Set before Ultralytics is imported (it reads these at import time)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(layout.ULTRALYTICS_CONFIG).absolute()))
    os.environ.setdefault("YOLO_VERBOSE", "0")
    # Importing Ultralytics sets OMP_NUM_THREADS=1 when it is unset (a default for its training loop); torch,
    # imported right after, would then run every later step of this process on one core. The budget of this
    # doit worker (every core, or its share under -n N) is set first; a value the user set wins.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads.threads() or threads.cores()))
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)


def compare_raw(got, want) -> dict:
    import numpy as np

    box = float(np.abs(got[:, :4] - want[:, :4]).max())
    score = float(np.abs(got[:, 4:] - want[:, 4:]).max())
    return {"max_abs_box_px": box, "max_abs_score": score, "box_tolerance_px": BOX_TOL_PX,
            "score_tolerance": SCORE_TOL, "passed": box <= BOX_TOL_PX and score <= SCORE_TOL}


RAW_GRAPH = GraphSpec(inputs=("images",), outputs=("output0",), compare=compare_raw)


def verification_images(batch: int, imgsz: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, imgsz, imgsz, generator=g)


# What a legitimate Ultralytics detection checkpoint may reference besides tensors and plain data (which
# torch's weights-only unpickler allows anyway): its model classes, torch.nn layers and containers, the
# train-args namespace, numpy scalars in metrics, paths, loss/assigner objects of a training run. The same
# families Ultralytics' own opt-in restricted loader (`ULTRALYTICS_SAFE_LOAD`, 8.4) accepts for detection.
_MODULE_PACKAGES = ("torch.nn.modules.", "ultralytics.nn.modules.")
_CLASS_MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal")  # plain classes defined there


def checkpoint_global(name: str):
    """The object a checkpoint may reference as `name` (module.attr), or None: refused."""
    import importlib
    import pathlib

    import numpy as np
    import torch.nn as nn

    module, _, attr = name.rpartition(".")
    if name in ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"):
        return np.float64(0).__reduce__()[0]
    if name == "numpy.dtype":
        return np.dtype
    if module == "numpy.dtypes":  # np.dtype(np.float64) pickles as numpy.dtypes.Float64DType
        obj = getattr(np.dtypes, attr, None)
        return obj if isinstance(obj, type) and issubclass(obj, np.dtype) else None
    if name in ("pathlib.PosixPath", "pathlib.WindowsPath", "pathlib._local.PosixPath",
                "pathlib._local.WindowsPath"):
        return type(pathlib.Path())
    if name in ("ultralytics.utils.IterableSimpleNamespace", "ultralytics.yolo.utils.IterableSimpleNamespace"):
        from ultralytics.utils import IterableSimpleNamespace
        return IterableSimpleNamespace
    if name == "builtins.getattr":
        return _module_getattr
    model_module = module.startswith(_MODULE_PACKAGES) or module in ("torch.nn.modules", "ultralytics.nn.modules",
                                                                      "ultralytics.nn.tasks")
    if not (model_module or module in _CLASS_MODULES) or attr.startswith("_"):
        return None
    try:
        obj = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None
    if not isinstance(obj, type):
        return None
    if model_module:
        return obj if issubclass(obj, nn.Module) else None
    return obj if obj.__module__ == module else None


def _module_getattr(obj, name: str):
    """`getattr` as some checkpoints pickle it (a layer's bound `forward`): nn.Module classes and
    instances only, never dunder names."""
    import torch.nn as nn

    if name.startswith("_") or not (isinstance(obj, nn.Module) or (isinstance(obj, type)
                                                                   and issubclass(obj, nn.Module))):
        import pickle
        raise pickle.UnpicklingError(f"getattr({type(obj).__name__}, {name!r}) is not allowed in a checkpoint")
    return getattr(obj, name)


UNLOADABLE_FIX = ("re-download or re-export the file; it must be saved by Ultralytics (model.save() or training), "
                  "not a bare state_dict, TorchScript or truncated copy")


def load_checkpoint(pt: Path, key: str, trust: bool = False) -> dict:
    """The checkpoint dict, through the weights-only unpickler unless the manifest trusts the file."""
    from ..tooling import safe_checkpoint

    configure()
    ckpt = safe_checkpoint.load(pt, checkpoint_global, key=key, what="checkpoint", fix=UNLOADABLE_FIX, trust=trust)
    import torch.nn as nn

    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, nn.Module):
        raise UserError(f"'{pt}' is not a loadable Ultralytics checkpoint (it holds no model: "
                        f"{type(ckpt).__name__} without 'model' or 'ema')", key=key, fix=UNLOADABLE_FIX)
    if ckpt.get("modelopt"):
        raise UserError(f"'{pt}' is a quantization-aware-trained (NVIDIA ModelOpt) checkpoint, which this pipeline "
                        "does not export", key=key, fix="export the model with Ultralytics' own exporter, or use the "
                                                         "checkpoint from before QAT")
    return ckpt


_LOADED: dict = {}  # the last checkpoint loaded in this process: (file identity, trust) -> prepared model


def load_detection_model(pt: Path, key: str, trust: bool = False, *, take: bool = False):
    """An Ultralytics checkpoint as FP32 eval model, the way Ultralytics' `load_checkpoint` prepares it;
    a clear UserError for anything else.

    A file just loaded by an earlier step of the same run (same inode, size and mtime: artifacts are
    replaced by rename, never rewritten) is not unpickled again: a step that only reads the model shares
    it; `take=True` (a step that changes it, e.g. fuses it for export) takes it out of the memo."""
    st = os.stat(pt)
    ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, bool(trust))
    model = _LOADED.pop(ident, None)
    if model is None:
        model = _load_detection_model(pt, key, trust)
    _LOADED.clear()
    if not take:
        _LOADED[ident] = model
    return model


def _load_detection_model(pt: Path, key: str, trust: bool):
    ckpt = load_checkpoint(pt, key, trust)
    import torch
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import guess_model_task

    model = (ckpt.get("ema") or ckpt["model"]).float()
    model.args = {**DEFAULT_CFG_DICT, **(ckpt.get("train_args") or {})}
    model.pt_path = str(pt)
    model.task = getattr(model, "task", None) or guess_model_task(model)
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    model = model.eval()
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = True
        elif isinstance(m, torch.nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None  # torch 1.11.0 compatibility
    head = model.model[-1] if hasattr(model, "model") else None
    task = getattr(model, "task", "unknown")
    if task != "detect" or type(head) is not Detect:
        kind = {"segment": "a segmentation", "pose": "a pose", "obb": "an oriented-box (OBB)",
                "classify": "a classification"}.get(task, f"a {task}")
        raise UserError(f"'{pt}' is {kind} model ({type(head).__name__} head); this pipeline exports detection "
                        "models only (segmentation, pose, OBB and classification are not supported)",
                        key=key, fix="point it at a YOLO11 detection checkpoint (yolo11n/s/m/l/x.pt or one trained "
                                     "from them)")
    if getattr(head, "end2end", False):
        raise UserError(f"'{pt}' has an NMS-free end-to-end head (YOLOv10/YOLO26 style), whose outputs are not the "
                        "raw [B, 4+nc, anchors] tensor this pipeline serves", key=key,
                        fix="use a YOLO11 (or YOLOv8) detection checkpoint")
    return model


def export_ready(model, imgsz: int):
    """Fuse and put the Detect head in export mode, as Ultralytics' exporter does (dynamic batch).
    Returns (model, fixed output dims [4 + nc, anchors], ONNX metadata)."""
    from ultralytics.nn.modules.head import Detect

    for p in model.parameters():
        p.requires_grad = False
    model = model.eval().fuse(verbose=False)
    for m in model.modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic, m.shape = True, "onnx", True, None
    nc, anchors = int(model.model[-1].nc), sum((imgsz // int(s)) ** 2 for s in model.stride)
    meta = {"producer": "triton-export-pipeline", "task": "detect", "imgsz": str([imgsz, imgsz]),
            "names": str({int(k): v for k, v in dict(model.names).items()}), "stride": str(int(max(model.stride)))}
    return model, [4 + nc, anchors], meta
