"""`doit compare-tracks NAME`: the same images through each track of one YOLO model, on this host.

The documented `make test-all-tracks`. Tracks, each from the artifacts this project built:
* A   — PyTorch: `YOLO(pt).predict` (Ultralytics' own letterbox and NMS, square letterbox as served);
* raw — the raw ONNX in onnxruntime, with the client doing letterbox, NMS and box scaling (Ultralytics'
        functions), as a Triton client of `models/<name>/` must;
* C   — the End2End ONNX (EfficientNMS_TRT through the pipeline's NumPy reference on CPU), client letterbox;
* D   — the Track D ensemble's computation in-process: DALI CPU twin, End2End ONNX, box-mapping ONNX.
Agreement: the share of Track A's detections each track reproduces (same class, every coordinate within
1 px of the original image). Latency: one image at a time, median; throughput: batches of `batch` images.
All on this host's CPU: no GPU, no TensorRT, no Triton in the loop — CPU numbers, not serving numbers.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from doit.cmd_base import DoitCmdBase

from ..declarations import layout
from ..engine import paths
from .specs import step_specs



def _detections_match(got, want, tol: float = 1.0) -> int:
    import numpy as np

    (gb, gc), (wb, wc) = got, want
    used, found = set(), 0
    for box, cls in zip(wb, wc):
        d = np.abs(gb - box).max(axis=1) if len(gb) else np.array([])
        free = [i for i in np.argsort(d) if i not in used and gc[i] == cls and d[i] <= tol]
        if free:
            used.add(free[0])
            found += 1
    return found


def sample_images(folder: Path, n: int = 16) -> list[Path]:
    """Synthetic scenes (PNG and JPEG, several shapes) when no --images folder is given."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shapes = [(480, 640), (640, 480), (720, 1280), (300, 300), (1080, 1920), (240, 500)]
    files = []
    for i in range(n):
        h, w = shapes[i % len(shapes)]
        img = np.full((h, w, 3), int(rng.integers(60, 200)), np.uint8)
        for _ in range(4):
            x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(min(h, w) // 12, min(h, w) // 4))
            cv2.rectangle(img, (x - r, y - r), (x + r, y + r), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
        f = folder / f"scene{i:02d}{'.jpg' if i % 2 else '.png'}"
        cv2.imwrite(str(f), img)
        files.append(f)
    return files


def compare(family, head: str, pt: str, raw: str, end2end: str, settings: dict, files: list[Path], batch: int,
            dali: dict | None) -> list[dict]:
    """Run every track on `files` (`family`: the model's family, `head` its head kind); dali: {"definition",
    "boxes_onnx"} or None (DALI not installed here)."""
    import cv2
    import numpy as np
    import onnx
    import onnxruntime as ort

    from ..builders.boxes_onnx import letterbox_params, reference
    from ..tooling.efficient_nms import cpu_session

    imgsz, conf, topk = settings["imgsz"], settings["conf"], settings["topk"]
    iou = settings.get("iou", 0.7)  # an NMS-free head has none: predict and the client ignore it
    scale = float(imgsz) if settings["normalize_boxes"] else 1.0
    predict = family.predictor(pt, head)
    raw_s = ort.InferenceSession(raw, providers=["CPUExecutionProvider"])
    e2e_s = cpu_session(onnx.load(end2end))
    blobs = [f.read_bytes() for f in files]
    originals = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in blobs]

    def letterbox(imgs):
        return np.stack([family.letterbox(i, imgsz) for i in imgs])

    def track_a(idx):
        return predict([originals[i] for i in idx], imgsz=imgsz, conf=conf, iou=iou, max_det=topk)

    def track_raw(idx):
        out = raw_s.run(None, {raw_s.get_inputs()[0].name: letterbox([originals[i] for i in idx])})[0]
        return family.client_detections(out, [originals[i].shape for i in idx], imgsz=imgsz, conf=conf, iou=iou,
                                        max_det=topk, head=head)

    def track_c(idx):
        infos = np.asarray([letterbox_params(*originals[i].shape[:2], imgsz) for i in idx], np.float32)
        n, b, _, c = e2e_s.run(None, {"images": letterbox([originals[i] for i in idx])})
        boxes = reference(b, infos, scale)  # the box-mapping model's own reference (scale_boxes + clip)
        return [(boxes[k, :int(n[k, 0])], c[k, :int(n[k, 0])].astype(int)) for k in range(len(idx))]

    tracks = {"A: PyTorch (YOLO.predict)": track_a, "raw ONNX + client NMS": track_raw,
              "C: End2End ONNX": track_c}
    if dali:
        from ..tooling import dali_preprocess as D
        from ..tooling.dali_preprocess import run_twin
        from ..tooling.onnx_tools import run

        twin = D.pipeline(dali["definition"], "cpu", max_batch=max(batch, 1))
        twin.build()

        def track_d(idx):
            images, sizes = run_twin(twin, [np.frombuffer(blobs[i], np.uint8) for i in idx])[:2]
            n, b, _, c = e2e_s.run(None, {"images": np.stack(images)})
            boxes = run(Path(dali["boxes_onnx"]), {"boxes": b, "image_size": np.stack(sizes)})[0]
            return [(boxes[k, :int(n[k, 0])], c[k, :int(n[k, 0])].astype(int)) for k in range(len(idx))]

        tracks["D: DALI + End2End (CPU twin)"] = track_d

    every = list(range(len(files)))
    baseline = track_a(every)
    rows = []
    for name, fn in tracks.items():
        fn([0])  # warm-up
        per_image, dets = [], []
        for i in every:
            t = time.perf_counter()
            dets += fn([i])
            per_image.append(time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(0, len(every), batch):
            fn(every[i:i + batch])
        throughput = len(every) / (time.perf_counter() - t)
        found = sum(_detections_match(g, w) for g, w in zip(dets, baseline))
        total = sum(len(w[0]) for w in baseline)
        rows.append({"track": name, "agreement": found / total if total else 1.0, "matched": found,
                     "track_a_detections": total, "detections": sum(len(g[0]) for g in dets),
                     "latency_ms": 1000 * statistics.median(per_image), "images_per_s": throughput})
    return rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    os.environ.setdefault("MPLCONFIGDIR", str(Path(paths.state_dir("matplotlib")).absolute()))  # not in $HOME
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["track"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, key, label in zip(axes, ("agreement", "latency_ms", "images_per_s"),
                              ("agreement with Track A (share of its detections)", "latency, 1 image (ms, median)",
                               "throughput (images/s)")):
        ax.barh(names, [r[key] for r in rows], color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][:len(rows)])
        ax.set_title(label, fontsize=10)
        ax.invert_yaxis()
        for y, r in enumerate(rows):
            ax.text(r[key], y, f" {r[key]:.3g}", va="center", fontsize=9)
    axes[1].set_yticklabels([])
    axes[2].set_yticklabels([])
    fig.suptitle(title + " — CPU numbers on this host, not GPU serving numbers", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write(rows: list[dict], out: Path, title: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "tracks.json").write_text(json.dumps({"title": title, "rows": rows}, indent=1) + "\n")
    plot(rows, out / "tracks.png", title)
    return out / "tracks.json", out / "tracks.png"


opt_images = {"name": "images", "long": "images", "type": str, "default": "",
              "help": "a folder of images (default: synthetic scenes, PNG and JPEG)"}
opt_out = {"name": "out", "long": "out", "type": str, "default": layout.TRACKS,
           "help": "where tracks.json and tracks.png go"}
opt_batch = {"name": "batch", "long": "batch", "type": int, "default": 8, "help": "batch size for throughput"}


class CompareTracks(DoitCmdBase):
    doc_purpose = "the same images through Track A (PyTorch), raw ONNX + client NMS, End2End ONNX and Track D: " \
                  "agreement, latency, throughput, a plot (CPU numbers)"
    doc_usage = "NAME"
    doc_description = None
    cmd_options = (opt_images, opt_out, opt_batch)

    def _execute(self, pos_args=None, images="", out=layout.TRACKS, batch=8):
        import importlib

        from ..declarations.tools import DALI
        from ..engine.errors import UserError, exit_with

        specs = step_specs(self.task_list)
        self.dep_manager.close()
        names = sorted(t.split(":", 1)[1] for t in specs if t.startswith("end2end_onnx:"))
        if not pos_args or len(pos_args) != 1 or pos_args[0] not in names:
            exit_with(UserError("compare-tracks needs the name of one detector with an End2End ONNX",
                                key="NAME", fix=f"doit compare-tracks NAME, NAME one of: {', '.join(names) or '(none)'}"))
        name = pos_args[0]
        raw, e2e = specs[f"export_onnx:{name}"], specs[f"end2end_onnx:{name}"]
        pre = specs.get(f"dali_pipeline:{name}_dali_end2end_preprocess")
        boxes = specs.get(f"boxes_onnx:{name}_dali_end2end_postprocess")
        need = [raw["outputs"]["onnx"], e2e["outputs"]["onnx"], raw["inputs"]["checkpoint"]]
        dali = None
        if pre and boxes and DALI.present:
            need += [pre["record"], boxes["outputs"]["onnx"]]
            dali = {"record": pre["record"], "boxes_onnx": boxes["outputs"]["onnx"]}
        missing = [p for p in need if not os.path.exists(p)]
        if missing:
            groups = f"onnx:{name} onnx_end2end:{name}" + (f" dali_end2end:{name}" if dali else "")
            exit_with(UserError(f"compare-tracks {name} needs {', '.join(missing)}", key=name,
                                fix=f"build them first: doit {groups}"))
        if dali:
            dali["definition"] = json.loads(Path(dali["record"]).read_text())["verification"]["definition"]
        files = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
            if images else sample_images(Path(out) / "images")
        settings = {**e2e["params"], "imgsz": raw["params"]["imgsz"]}
        module, attr = raw["uses"]["family"].split(":")
        family = getattr(importlib.import_module(module), attr)
        rows = compare(family, raw["params"]["head"], raw["inputs"]["checkpoint"], raw["outputs"]["onnx"],
                       e2e["outputs"]["onnx"], settings, files, batch, dali)
        title = f"{name}: {len(files)} images, imgsz {settings['imgsz']}, conf {settings['conf']}" + (
            f", iou {settings['iou']}" if 'iou' in settings else ", NMS-free head")
        from rich.console import Console
        from rich.table import Table

        table = Table("track", "agreement with A", "detections", "latency (ms, 1 image)", "images/s (batch "
                      f"{batch})", title=title + " — CPU, this host")
        for r in rows:
            table.add_row(r["track"], f"{100 * r['agreement']:.1f} % ({r['matched']}/{r['track_a_detections']})",
                          str(r["detections"]), f"{r['latency_ms']:.1f}", f"{r['images_per_s']:.1f}")
        Console(file=self.outstream, width=140).print(table)
        if not dali:
            self.outstream.write("Track D left out: " + ("NVIDIA DALI is not installed here" if not DALI.present
                                 else f"no dali_end2end format for {name}") + "\n")
        j, png = write(rows, Path(out), title)
        self.outstream.write(f"wrote {j} and {png}\n")
        return 0
