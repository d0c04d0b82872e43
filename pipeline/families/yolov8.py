"""YOLOv8 detection: C2f blocks and the `Detect` head in its legacy form (one-to-many, NMS appended for End2End)."""
from __future__ import annotations

from .ultralytics import UltralyticsDetector, builtins


class Yolov8(UltralyticsDetector):
    name = "yolov8"
    title = "YOLOv8"
    yaml = "v8/yolov8.yaml"
    blocks = ("C2f",)
    architectures = ("yolov8n", "yolov8s", "yolov8m", "yolov8l", "yolov8x")
    builtins = builtins("yolov8{s}", "yolov8_{size}", "yolov8{s}.pt")


FAMILY = Yolov8()
