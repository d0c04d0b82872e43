"""labels.txt of a detection folder: one class name per line, in class-id order, from the checkpoint record.

`label_filename` is not set in config.pbtxt: Triton uses it only for its classification extension, which
does not apply to detection outputs; clients read labels.txt themselves.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..engine.errors import UserError

if TYPE_CHECKING:
    from ..engine.context import StepContext


def write_labels(ctx: StepContext) -> dict:
    """Step builder."""
    names = json.loads(ctx.input("checkpoint_record").read_text())["verification"]["names"]
    bad = [n for n in names if "\n" in n or not n.strip()]
    if bad:
        raise UserError(f"class name {bad[0]!r} cannot be a line of labels.txt", key=f"{ctx.key}.class_names",
                        fix="use non-empty names without line breaks")
    ctx.output().write_text("".join(f"{n}\n" for n in names))
    return {"classes": len(names)}
