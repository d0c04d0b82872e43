"""YOLOv10 detection: the `v10Detect` head, trained with dual assignments — its one-to-one branch is the
NMS-free head the family is made for (the default here, `nms_free: true`); `nms_free: false` serves the
one-to-many branch with NMS appended, which Ultralytics 8.4's default predict (nms=None) runs."""
from __future__ import annotations

from .base import ANCHORS, TOPK
from .ultralytics import UltralyticsDetector, builtins


class Yolov10(UltralyticsDetector):
    name = "yolov10"
    title = "YOLOv10"
    yaml = "v10/{arch}.yaml"  # one architecture file per scale
    head_classes = ("v10Detect",)
    one2one = True
    heads = (ANCHORS, TOPK)
    default_nms_free = True
    architectures = ("yolov10n", "yolov10s", "yolov10m", "yolov10b", "yolov10l", "yolov10x")
    builtins = builtins("yolov10{s}", "yolov10_{size}", "yolov10{s}.pt", scales="nsmblx")


FAMILY = Yolov10()
