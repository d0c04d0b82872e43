"""`doit custom=path[:name[:batch]]`: one-off checkpoints without a YAML file (the documented `--custom-model`)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...engine.errors import UserError


def parse_custom(value: str) -> dict[str, dict[str, Any]]:
    """`path[:name[:batch]]`, several separated by commas -> manifest `models:` entries (the documented
    `--custom-model` form)."""
    entries: dict[str, dict[str, Any]] = {}
    for item in filter(None, (s.strip() for s in value.split(","))):
        m = re.fullmatch(r"(?P<path>[^:]+?\.pt)(?::(?P<name>[^:]*))?(?::(?P<batch>[^:]*))?", item)
        if not m:
            raise UserError(f"'{item}' does not parse as path[:name[:batch]] with a .pt path",
                            file="command line", key="custom",
                            fix="write e.g. custom=/data/my_detector.pt:vehicle_detector:64 (name and batch optional)")
        entry: dict[str, Any] = {"pt_file": os.path.abspath(m["path"])}
        if m["name"]:
            entry["triton_name"] = m["name"]
        if m["batch"] is not None:
            if not m["batch"].isdigit() or int(m["batch"]) <= 0:
                raise UserError(f"the batch part '{m['batch']}' of '{item}' is not a positive integer",
                                file="command line", key="custom", fix="write e.g. custom=/data/my.pt:my_name:32")
            entry["max_batch"] = int(m["batch"])
        key = m["name"] or Path(m["path"]).stem
        entries[key] = entry
    if not entries:
        raise UserError("the value is empty", file="command line", key="custom",
                        fix="write e.g. custom=/data/my_detector.pt:vehicle_detector:64")
    return entries
