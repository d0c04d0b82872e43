"""Ultralytics offline and self-contained: no online checks, no pip installs, settings inside the project."""
from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR = Path(".pipeline") / "ultralytics"


def configure() -> None:
    """Set before Ultralytics is imported (it reads these at import time)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(CONFIG_DIR.absolute()))
    os.environ.setdefault("YOLO_VERBOSE", "0")
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
