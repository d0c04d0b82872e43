"""A detector trained inside the tests on synthetic shapes, and the shapes it is measured on.

Random weights detect nothing meaningful (NOTES: degenerate scores); accuracy claims (mAP of a quantized graph)
need a model that really detects what its labels say. Three classes — filled rectangle, ellipse, triangle — in
random colours and sizes on textured backgrounds; YOLO-format labels. A few CPU epochs of a nano model at 160 px
learn them (mAP50 well above 0.5 on held images)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["rectangle", "ellipse", "triangle"]


def draw(rng, size: int = 160) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """One BGR image (not square: letterboxing matters) and its labels (class, cx, cy, w, h normalised)."""
    import cv2

    h, w = size, int(size * rng.uniform(1.0, 1.5))
    img = rng.integers(40, 200, (h, w, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 3)
    labels = []
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(0, 3))
        bw, bh = int(rng.uniform(0.15, 0.4) * w), int(rng.uniform(0.15, 0.4) * h)
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if cls == 0:
            cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), colour, -1)
        elif cls == 1:
            cv2.ellipse(img, (x0 + bw // 2, y0 + bh // 2), (bw // 2, bh // 2), 0, 0, 360, colour, -1)
        else:
            pts = np.array([[x0 + bw // 2, y0], [x0, y0 + bh], [x0 + bw, y0 + bh]], np.int32)
            cv2.fillPoly(img, [pts], colour)
        labels.append((cls, (x0 + bw / 2) / w, (y0 + bh / 2) / h, bw / w, bh / h))
    return img, labels


def write_set(folder: Path, n: int, seed: int, labels: bool = True, size: int = 160) -> Path:
    """folder/images/*.jpg (+ folder/labels/*.txt): a held or calibration set."""
    import cv2

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    if labels:
        (folder / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, boxes = draw(rng, size)
        cv2.imwrite(str(folder / "images" / f"{i:04d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if labels:
            (folder / "labels" / f"{i:04d}.txt").write_text(
                "".join(f"{c} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for c, x, y, bw, bh in boxes))
    return folder


def train_shapes_detector(root: Path, epochs: int = 12, imgsz: int = 160, arch: str = "yolo11n") -> Path:
    """Train on 240 synthetic images (seeded); returns the best checkpoint. ~1-2 minutes on 2 CPU cores."""
    import yaml
    from ultralytics import YOLO

    from pipeline.declarations.families import for_architecture

    write_set(root / "data" / "train", 240, seed=1)
    write_set(root / "data" / "val", 40, seed=2)
    (root / "data.yaml").write_text(yaml.safe_dump({
        "path": str(root / "data"), "train": "train/images", "val": "val/images", "names": dict(enumerate(CLASSES))}))
    cfg, name = for_architecture(arch).architecture(arch, len(CLASSES))
    (root / name).write_text(yaml.safe_dump(cfg))
    model = YOLO(str(root / name), task="detect")
    model.train(data=str(root / "data.yaml"), epochs=epochs, imgsz=imgsz, batch=16, workers=0, device="cpu",
                project=str(root / "runs"), name="shapes", exist_ok=True, seed=0, deterministic=True, plots=False,
                val=False, amp=False, verbose=False)
    return root / "runs" / "shapes" / "weights" / "best.pt"
