"""YOLO26 detection (Ultralytics 8.4's default family): a `Detect` head with two branches — one-to-many (NMS
appended, what Ultralytics 8.4's default predict runs) and one-to-one (`nms_free: true`: top-k, no NMS)."""
from __future__ import annotations

from .base import ANCHORS, TOPK
from .ultralytics import UltralyticsDetector, builtins


class Yolo26(UltralyticsDetector):
    name = "yolo26"
    title = "YOLO26"
    yaml = "26/yolo26.yaml"
    blocks = ("C3k2",)
    one2one = True
    heads = (ANCHORS, TOPK)
    default_nms_free = False  # a loaded checkpoint reports end2end False: predict's default is one-to-many + NMS
    architectures = ("yolo26n", "yolo26s", "yolo26m", "yolo26l", "yolo26x")
    builtins = builtins("yolo26{s}", "yolo26_{size}", "yolo26{s}.pt")


FAMILY = Yolo26()
