"""YOLO11 detection (Ultralytics 8.3+): C3k2/C2PSA blocks, a one-to-many `Detect` head, NMS appended for End2End."""
from __future__ import annotations

from .ultralytics import UltralyticsDetector, builtins


class Yolo11(UltralyticsDetector):
    name = "yolo11"
    title = "YOLO11"
    yaml = "11/yolo11.yaml"
    blocks = ("C3k2",)
    architectures = ("yolo11n", "yolo11s", "yolo11m", "yolo11l", "yolo11x")
    # The documented sizes: `builtins: [small]` -> yolov11_small from yolo11s.pt, max_batch 64.
    builtins = builtins("{size}", "yolov11_{size}", "yolo11{s}.pt")


FAMILY = Yolo11()
