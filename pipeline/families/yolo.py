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


def load_detection_model(pt: Path, key: str):
    """Load an Ultralytics checkpoint as FP32 eval model; a clear UserError for anything else."""
    configure()
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import load_checkpoint

    try:
        model, _ = load_checkpoint(str(pt))
    except (TypeError, ModuleNotFoundError, RuntimeError, EOFError, ValueError, KeyError, AttributeError,
            AssertionError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"'{pt}' is not a loadable Ultralytics checkpoint ({first})", key=key,
                        fix="re-download or re-export the file; it must be saved by Ultralytics (model.save() or "
                            "training), not a bare state_dict, TorchScript or truncated copy") from None
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
