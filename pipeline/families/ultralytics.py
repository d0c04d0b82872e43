"""What every Ultralytics detection family shares: loading offline and safely, the export-ready model, the
raw graph and how it is checked, the letterbox its predict uses.

A family module (yolo11.py, ...) subclasses `UltralyticsDetector` with its declaration: architectures,
built-ins, the head classes it accepts. Raw graph of the one-to-many head (`anchors`): `images [B, 3, S, S]`
FP32 in [0, 1] -> `output0 [B, 4 + nc, anchors]` (cx, cy, w, h in input pixels, then the class scores,
already sigmoided). Checked against the unfused checkpoint model on a batch of 2 (not the export batch
of 1: proves the batch axis is really dynamic): boxes within BOX_TOL_PX pixels, scores within SCORE_TOL.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..engine import paths, threads
from ..engine.errors import UserError
from ..tooling.onnx_tools import GraphSpec
from .base import TOPK, Builtin, DetectorFamily

BOX_TOL_PX = 1e-2   # max |Δ| of box coordinates (pixels) ONNX Runtime vs PyTorch
SCORE_TOL = 1e-4    # max |Δ| of class scores
VERIFY_BATCH = 2
SIZES = {"nano": "n", "small": "s", "medium": "m", "balanced": "b", "large": "l", "xlarge": "x"}  # b: YOLOv10
# The Ultralytics detection families registered in declarations/families.py (a test holds the two equal).
ACCEPTED = "YOLO11, YOLOv8, YOLO26, YOLOv10"
RELEASE_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0/{file}"  # Ultralytics' assets
MAX_BATCH = {"n": 128, "s": 64, "m": 32, "b": 24, "l": 16, "x": 8}  # the documented batch per size (b: between)


def builtins(key: str, name: str, file: str, scales: str = "nsmlx") -> tuple[Builtin, ...]:
    """One built-in per scale letter: key/name/file patterns take {size} (nano...) and {s} (n...)."""
    sizes = {s: size for size, s in SIZES.items()}
    return tuple(Builtin(key.format(size=sizes[s], s=s), name.format(size=sizes[s], s=s), file.format(s=s),
                         MAX_BATCH[s]) for s in scales)


def configure() -> None:
    """Ultralytics offline and self-contained: no online checks, no pip installs, settings inside the
    project. Set before Ultralytics is imported (it reads these at import time)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(paths.state_dir("ultralytics")).absolute()))
    os.environ.setdefault("YOLO_VERBOSE", "0")
    # Importing Ultralytics sets OMP_NUM_THREADS=1 when it is unset (a default for its training loop); torch,
    # imported right after, would then run every later step of this process on one core. The budget of this
    # doit worker (every core, or its share under -n N) is set first; a value the user set wins.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads.threads() or threads.cores()))
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)


def differences(got, want) -> dict:
    """Largest box (pixels) and score differences of two raw `[B, 4 + nc, anchors]` outputs."""
    import numpy as np

    return {"max_abs_box_px": float(np.abs(got[:, :4] - want[:, :4]).max()),
            "max_abs_score": float(np.abs(got[:, 4:] - want[:, 4:]).max())}


def compare_raw(got, want) -> dict:
    d = differences(got, want)
    return {**d, "box_tolerance_px": BOX_TOL_PX, "score_tolerance": SCORE_TOL,
            "passed": d["max_abs_box_px"] <= BOX_TOL_PX and d["max_abs_score"] <= SCORE_TOL}


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


def _prepared(ckpt: dict, pt: Path):
    """The model as Ultralytics' `load_checkpoint` prepares it: FP32, eval, its args and task set."""
    import torch
    from ultralytics.cfg import DEFAULT_CFG_DICT
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
    return model


def _one2one(head) -> bool:
    """The head carries the one-to-one (NMS-free) branch (YOLOv10, YOLO26)."""
    return getattr(head, "one2one_cv2", None) is not None


def _topk_differences(got, want) -> dict:
    """Two [B, K, 6] top-k outputs (x1, y1, x2, y2, score, class): the sorted scores of each image, and
    every row strictly above the k-th score — where no tie can decide membership — matched to a row of the
    other with the same class, box and score (a tie may order rows, or pick the k-th, either way)."""
    import numpy as np

    score_diff, box_diff, unmatched = 0.0, 0.0, 0
    for g, w in zip(got, want):
        gs, ws = np.sort(g[:, 4])[::-1], np.sort(w[:, 4])[::-1]
        score_diff = max(score_diff, float(np.abs(gs - ws).max()) if len(gs) else 0.0)
        cut = ws[-1] + SCORE_TOL if len(ws) else np.inf
        for row in g[g[:, 4] > cut]:
            same = w[(w[:, 5] == row[5]) & (np.abs(w[:, 4] - row[4]) <= SCORE_TOL)]
            d = np.abs(same[:, :4] - row[:4]).max(axis=1) if len(same) else np.array([np.inf])
            box_diff = max(box_diff, float(d.min()))
            unmatched += int(d.min() > BOX_TOL_PX)
    return {"max_abs_box_px": box_diff, "max_abs_score": score_diff, "unmatched_rows": unmatched}


def _compare_topk(got, want) -> dict:
    d = _topk_differences(got, want)
    return {**d, "box_tolerance_px": BOX_TOL_PX, "score_tolerance": SCORE_TOL,
            "passed": d["unmatched_rows"] == 0 and d["max_abs_score"] <= SCORE_TOL}


TOPK_GRAPH = GraphSpec(inputs=("images",), outputs=("output0",), compare=_compare_topk)


class UltralyticsDetector(DetectorFamily):
    """An Ultralytics detection family. yaml: its architecture file under ultralytics/cfg/models/ (the
    scale letter is read from the file name, yolo11n.yaml -> n); head_classes: the Detect head classes its
    checkpoints carry; blocks: module classes of which one marks its checkpoints (C3k2: YOLO11 and YOLO26;
    C2f: YOLOv8); one2one: its head carries the one-to-one branch.

    Heads (the step's `head` parameter): {"kind": "anchors"} — the one-to-many branch, `output0
    [B, 4 + nc, anchors]`, NMS appended for End2End; {"kind": "topk", "max_det": K, "agnostic": bool} — the
    one-to-one branch, `output0 [B, K, 6]` (x1, y1, x2, y2, score, class), no NMS at all."""
    yaml = ""
    head_classes: tuple[str, ...] = ("Detect",)
    blocks: tuple[str, ...] = ()
    one2one = False

    def recognizes(self, classes: set[str], one2one: bool) -> bool:
        """A checkpoint of this family, from the class names it holds and whether its head has the one-to-one
        branch (read from the file without running it, or from the loaded model)."""
        return (bool(set(self.head_classes) & classes) and one2one == self.one2one
                and (not self.blocks or bool(set(self.blocks) & classes)))

    # ---- loading
    def load(self, pt: Path, key: str, trust: bool = False, *, take: bool = False):
        """The checkpoint as FP32 eval model; a clear UserError for anything this family does not serve.

        A file just loaded by an earlier step of the same run (same inode, size and mtime: artifacts are
        replaced by rename, never rewritten) is not unpickled again: a step that only reads the model
        shares it; `take=True` (a step that changes it, e.g. fuses it for export) takes it out of the memo."""
        st = os.stat(pt)
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, bool(trust))
        model = _LOADED.pop(ident, None)
        if model is None:
            model = _prepared(load_checkpoint(pt, key, trust), pt)
            self.check(model, pt, key)
        _LOADED.clear()
        if not take:
            _LOADED[ident] = model
        return model

    def check(self, model, pt: Path, key: str) -> None:
        """A detection model of this family, or one paragraph naming what the file is."""
        head = model.model[-1] if hasattr(model, "model") else None
        task = getattr(model, "task", "unknown")
        if task != "detect" or not isinstance(head, _detect()):
            kind = {"segment": "a segmentation", "pose": "a pose", "obb": "an oriented-box (OBB)",
                    "classify": "a classification", "detect": "a detection"}.get(task, f"a {task}")
            raise UserError(f"'{pt}' is {kind} model ({type(head).__name__} head); this pipeline exports detection "
                            f"models only ({ACCEPTED}; segmentation, pose, OBB and classification are not supported)",
                            key=key, fix=f"point it at a {ACCEPTED} detection checkpoint")
        classes = {type(m).__name__ for m in model.modules()}
        if not self.recognizes(classes, _one2one(head)):
            branch = "with" if _one2one(head) else "without"
            raise UserError(f"'{pt}' is not a {self.title} detection model: its head is {type(head).__name__} {branch} "
                            "a one-to-one (NMS-free) branch", key=key.removesuffix(".pt_file") + ".family",
                            fix=f"remove 'family' from the entry (the family is read from the checkpoint) or set it to "
                                f"the checkpoint's own ({ACCEPTED})")

    def describe(self, model) -> dict:
        """Classes, names and strides of a loaded model, for its checkpoint record."""
        names = {int(k): str(v) for k, v in dict(model.names).items()}
        nc = int(model.model[-1].nc)
        return {"num_classes": nc, "names": [names.get(i, f"class{i}") for i in range(nc)],
                "stride": [float(s) for s in model.stride]}

    def architecture(self, arch: str, nc: int) -> tuple[dict, str]:
        """(architecture YAML with `nc` classes, the file name it must be built from) of an `arch:` entry."""
        import yaml
        from ultralytics.utils import ROOT

        cfg = yaml.safe_load((ROOT / "cfg/models" / self.yaml.format(arch=arch)).read_text())
        cfg["nc"] = nc
        return cfg, f"{arch}.yaml"

    def download_url(self, file_name: str) -> str:
        """Where a built-in's weights come from (Ultralytics' asset code picks the release itself)."""
        return RELEASE_URL.format(file=file_name)

    def download(self, file_name: str, folder: Path) -> Path:
        """A built-in's weights through Ultralytics' asset code (retries, .part files, disk-space check)."""
        configure()
        from ultralytics.utils.downloads import attempt_download_asset

        return Path(attempt_download_asset(str(folder / file_name), retry=3))

    def untrained(self, arch: str, names: list[str], out: Path, scratch: Path, key: str) -> None:
        """Write an untrained `arch` checkpoint with these classes to `out`: seeded random weights, the same
        bytes every time (Model.save's date fixed, no temporary path inside)."""
        import io

        configure()
        import torch
        import yaml
        from ultralytics import YOLO

        cfg, cfg_name = self.architecture(arch, len(names))
        # A fixed name (not the pid-stamped temporary one): Ultralytics keeps traces of the path in the model.
        cfg_file = scratch / cfg_name
        cfg_file.write_text(yaml.safe_dump(cfg))
        torch.manual_seed(0)
        yolo = YOLO(str(cfg_file), task="detect")
        yolo.model.names = dict(enumerate(names))
        yolo.model.yaml["yaml_file"] = cfg_name
        yolo.save(str(out))
        # Model.save stamps the current date; fixed, so that a rebuild does not cascade through every artifact.
        ckpt = load_checkpoint(out, key)  # weights-only: Model.save()'s output passes the allowlist
        ckpt["date"] = "untrained"
        buffer = io.BytesIO()  # torch names the zip's folder after the file: saved unnamed (pid-free)
        torch.save(ckpt, buffer)
        out.write_bytes(buffer.getvalue())

    # ---- the raw graph of a head (the step's `head` parameter)
    verify_batch = VERIFY_BATCH

    def graph(self, head: dict) -> GraphSpec:
        """The raw graph of a head: names, dynamic axes, how it is compared with PyTorch."""
        return TOPK_GRAPH if head["kind"] == TOPK else RAW_GRAPH

    def verification_images(self, batch: int, imgsz: int):
        return verification_images(batch, imgsz)

    def select(self, model, head: dict):
        """Put the model's Detect head on the branch `head` names (one-to-one: with its top-k settings)."""
        detect = model.model[-1]
        if head["kind"] == TOPK:
            detect.end2end, detect.max_det, detect.agnostic_nms = True, int(head["max_det"]), bool(head["agnostic"])
        elif _one2one(detect):
            detect.end2end = False
        return model

    def reference_outputs(self, model, x, head: dict):
        """What the unfused checkpoint model computes on `x` with this head (NumPy): the export's truth."""
        import torch

        with torch.inference_mode():
            return self.select(model, head)(x)[0].numpy()

    def differences(self, got, want, head: dict) -> dict:
        """How far two raw outputs of this head are apart (an FP16 graph from the FP32 one, say)."""
        return _topk_differences(got, want) if head["kind"] == TOPK else differences(got, want)

    def summary(self, reference, head: dict) -> dict:
        """A few numbers of the reference worth a line in the record (e.g. that anything scores at all)."""
        return {"max_score": float(reference[..., 4].max() if head["kind"] == TOPK else reference[:, 4:].max())}

    def export_ready(self, model, imgsz: int, head: dict):
        """Fuse (dropping the other branch) and put the Detect head in export mode, as Ultralytics' exporter
        does (dynamic batch). Returns (model, fixed output dims without the batch, ONNX metadata)."""
        from ultralytics.nn.modules.head import Detect

        for p in model.parameters():
            p.requires_grad = False
        model = self.select(model.eval(), head).fuse(verbose=False)
        for m in model.modules():
            if isinstance(m, Detect):
                m.export, m.format, m.dynamic, m.shape = True, "onnx", True, None
        nc, anchors = int(model.model[-1].nc), sum((imgsz // int(s)) ** 2 for s in model.stride)
        dims = [min(int(head["max_det"]), anchors), 6] if head["kind"] == TOPK else [4 + nc, anchors]
        meta = {"producer": "triton-export-pipeline", "task": "detect", "imgsz": str([imgsz, imgsz]),
                "names": str({int(k): v for k, v in dict(model.names).items()}), "stride": str(int(max(model.stride))),
                "family": self.name, "head": head["kind"]}
        return model, dims, meta

    def fp32_nodes(self, graph) -> list[str]:
        """Nodes of the exported graph that stay FP32 in the FP16 graph for TensorRT: the Detect head's
        decoding (reshape, DFL softmax, anchors x stride; the top-k selection of a one-to-one head), not its
        learned convolutions (cv2, cv3 or their one-to-one twins)."""
        out = graph.graph.output[0].name
        producer = next(n for n in graph.graph.node if out in n.output)
        prefix = producer.name.split("/")[:2]  # the Detect module's scope in a torch-exported graph: /model.23/
        prefix = "/".join(prefix) + "/"
        convs = tuple(prefix + c for c in ("cv2", "cv3", "one2one_cv2", "one2one_cv3"))
        return [n.name for n in graph.graph.node if n.name.startswith(prefix) and not n.name.startswith(convs)]

    # ---- what predict does, for references
    def letterbox(self, bgr, imgsz: int):
        """What Ultralytics' predictor feeds the model for one BGR image: RGB, CHW, [0, 1], FP32."""
        import numpy as np

        configure()
        from ultralytics.data.augment import LetterBox

        img = LetterBox((imgsz, imgsz), auto=False)(image=bgr)
        return np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)).astype(np.float32) / 255.0

    def predictor(self, pt: str, head: dict):
        """Ultralytics' own predict on original BGR images, with the head this pipeline serves (nms=False
        selects the one-to-one head): (images, imgsz, conf, iou, max_det) -> [(boxes x1y1x2y2 in original
        pixels, classes)]."""
        configure()
        from ultralytics import YOLO

        model = YOLO(pt)
        topk = head["kind"] == TOPK

        def predict(images, *, imgsz, conf, iou, max_det):
            res = model.predict(images, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, rect=False, verbose=False,
                                **({"nms": False, "agnostic_nms": bool(head["agnostic"])} if topk else {}))
            return [(r.boxes.xyxy.numpy(), r.boxes.cls.numpy().astype(int)) for r in res]
        return predict

    def client_detections(self, raw, shapes, *, imgsz: int, conf: float, iou: float, max_det: int, head: dict):
        """What a client of the raw folder does with its output: NMS (Ultralytics'; for a one-to-one head only
        its score filter), then boxes scaled back to each original image (`shapes`: their HxWxC)."""
        return [(boxes, classes) for boxes, _, classes in
                self.detections(raw, shapes, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, head=head)]

    def detections(self, raw, shapes, *, imgsz: int, conf: float, iou: float, max_det: int, head: dict):
        """client_detections with the scores: [(boxes x1y1x2y2 in original pixels, scores, classes)]."""
        configure()
        import torch
        from ultralytics.utils import nms, ops

        out = []
        raw = torch.from_numpy(raw.astype("float32"))
        kept = nms.non_max_suppression(raw, conf, iou, max_det=max_det, end2end=head["kind"] == TOPK)
        for shape, p in zip(shapes, kept):
            boxes = ops.scale_boxes((imgsz, imgsz), p[:, :4].clone(), shape)
            out.append((boxes.numpy(), p[:, 4].numpy(), p[:, 5].numpy().astype(int)))
        return out

    def mean_ap(self, detections, labels, shapes) -> dict:
        """mAP50 and mAP50-95 as Ultralytics' detection validator computes them (its matching, its
        ap_per_class), from [(boxes, scores, classes)] and YOLO labels ([n, 5]: class, cx, cy, w, h normalised)."""
        configure()
        import types

        import numpy as np
        import torch
        from ultralytics.engine.validator import BaseValidator
        from ultralytics.utils.metrics import ap_per_class, box_iou

        matcher = types.SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
        tp, conf, pred_cls, target_cls = [], [], [], []
        for (boxes, scores, classes), lab, (h, w, *_) in zip(detections, labels, shapes):
            lab = np.asarray(lab, np.float32).reshape(-1, 5)
            gt = np.stack([(lab[:, 1] - lab[:, 3] / 2) * w, (lab[:, 2] - lab[:, 4] / 2) * h,
                           (lab[:, 1] + lab[:, 3] / 2) * w, (lab[:, 2] + lab[:, 4] / 2) * h], 1)
            order = np.argsort(-scores)
            boxes, scores, classes = boxes[order], scores[order], classes[order]
            if len(classes) and len(gt):
                iou = box_iou(torch.from_numpy(gt), torch.from_numpy(boxes.astype(np.float32)))
                correct = BaseValidator.match_predictions(matcher, torch.from_numpy(classes),
                                                          torch.from_numpy(lab[:, 0].astype(int)), iou).numpy()
            else:
                correct = np.zeros((len(classes), 10), bool)
            tp.append(correct)
            conf.append(scores)
            pred_cls.append(classes)
            target_cls.append(lab[:, 0].astype(int))
        result = ap_per_class(np.concatenate(tp), np.concatenate(conf), np.concatenate(pred_cls),
                              np.concatenate(target_cls))
        ap = result[5]
        return {"map50": float(ap[:, 0].mean()) if len(ap) else 0.0, "map50_95": float(ap.mean()) if len(ap) else 0.0}


def _detect():
    from ultralytics.nn.modules.head import Detect

    return Detect
