"""An encoder's ONNX served from the Triton repository (`<name>_onnx` folders, for hosts without TensorRT):
a hard link to the checked graph in pytorch_models/ (a copy across devices), so it costs no disk."""
from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine.context import StepContext


def publish(ctx: StepContext) -> dict:
    """Step builder."""
    source = ctx.input("onnx")
    try:
        os.link(source, ctx.output())
        how = "hard link"
    except OSError:
        shutil.copyfile(source, ctx.output())
        how = "copy"
    return {"source": str(source), "how": how}
