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
import statistics
import time
from pathlib import Path


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


def compare(pt: str, raw: str, end2end: str, settings: dict, files: list[Path], batch: int,
            dali: dict | None) -> list[dict]:
    """Run every track on `files`; dali: {"definition", "boxes_onnx"} or None (DALI not installed here)."""
    import cv2
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import nms, ops

    from .builders.boxes_onnx import letterbox_params, reference
    from .tooling.efficient_nms import cpu_session

    imgsz, conf, iou, topk = settings["imgsz"], settings["conf"], settings["iou"], settings["topk"]
    scale = float(imgsz) if settings["normalize_boxes"] else 1.0
    model = YOLO(pt)
    raw_s = ort.InferenceSession(raw, providers=["CPUExecutionProvider"])
    e2e_s = cpu_session(onnx.load(end2end))
    blobs = [f.read_bytes() for f in files]
    originals = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in blobs]

    def letterbox(imgs):
        lb = LetterBox((imgsz, imgsz), auto=False)
        return np.stack([np.ascontiguousarray(lb(image=i)[..., ::-1].transpose(2, 0, 1)) for i in imgs]).astype(
            np.float32) / 255.0

    def track_a(idx):
        res = model.predict([originals[i] for i in idx], imgsz=imgsz, conf=conf, iou=iou, max_det=topk, rect=False,
                            verbose=False)
        return [(r.boxes.xyxy.numpy(), r.boxes.cls.numpy().astype(int)) for r in res]

    def track_raw(idx):
        x = letterbox([originals[i] for i in idx])
        out = raw_s.run(None, {raw_s.get_inputs()[0].name: x})[0]
        res = nms.non_max_suppression(torch.from_numpy(out), conf, iou, max_det=topk)
        dets = []
        for i, p in zip(idx, res):
            boxes = ops.scale_boxes((imgsz, imgsz), p[:, :4].clone(), originals[i].shape)
            dets.append((boxes.numpy(), p[:, 5].numpy().astype(int)))
        return dets

    def track_c(idx):
        infos = np.asarray([letterbox_params(*originals[i].shape[:2], imgsz) for i in idx], np.float32)
        n, b, _, c = e2e_s.run(None, {"images": letterbox([originals[i] for i in idx])})
        boxes = reference(b, infos, scale)  # the box-mapping model's own reference (scale_boxes + clip)
        return [(boxes[k, :int(n[k, 0])], c[k, :int(n[k, 0])].astype(int)) for k in range(len(idx))]

    tracks = {"A: PyTorch (YOLO.predict)": track_a, "raw ONNX + client NMS": track_raw,
              "C: End2End ONNX": track_c}
    if dali:
        from .builders.dali_pipeline import run_twin
        from .tooling import dali_preprocess as D
        from .tooling.onnx_tools import run

        twin = D.pipeline(dali["definition"], "cpu", max_batch=max(batch, 1))
        twin.build()

        def track_d(idx):
            images, infos = run_twin(twin, [np.frombuffer(blobs[i], np.uint8) for i in idx])[:2]
            n, b, _, c = e2e_s.run(None, {"images": np.stack(images)})
            boxes = run(Path(dali["boxes_onnx"]), {"boxes": b, "letterbox": np.stack(infos)})[0]
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
