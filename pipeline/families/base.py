"""What a model family declares, once (Hugging Face Optimum's `OnnxConfig`, for this pipeline's families).

A family is one subclass and one module-level `FAMILY` instance, registered in declarations/families.py.
Its class attributes are its declaration — read when dodo.py loads, so nothing heavy is imported here or
at the top of a family module; its methods do the work for the builders, which are handed the family of
their model by their step (`ctx.use("family")`) and never import one by name.
"""
from __future__ import annotations

from typing import NamedTuple


class Builtin(NamedTuple):
    """A built-in model: the manifest's `builtins:` key, its Triton name, the weights file it downloads and
    its default max_batch."""
    key: str
    name: str
    file: str
    max_batch: int


# Head kinds of detectors: what the raw graph outputs, and so which End2End tail serves it.
ANCHORS = "anchors"  # [B, 4 + nc, anchors]: cx, cy, w, h in input pixels, then class scores; needs NMS
TOPK = "topk"        # [B, max_det, 6]: x1, y1, x2, y2, score, class; NMS-free (one-to-one head)


class Family:
    """name: the registry key; kind: "detector" or "encoder" (which formats apply); title: for people."""
    name = ""
    kind = ""
    title = ""


class DetectorFamily(Family):
    """A detection family. architectures: what `arch:` accepts (untrained models); builtins: what
    `builtins:` accepts; heads: the head kinds it can serve; default_nms_free: the head the family's own
    default predict uses (the manifest's `nms_free` default)."""
    kind = "detector"
    architectures: tuple[str, ...] = ()
    builtins: tuple[Builtin, ...] = ()
    heads: tuple[str, ...] = (ANCHORS,)
    default_nms_free = False

    def head(self, nms_free: bool) -> str:
        return TOPK if nms_free else ANCHORS

    def recognizes(self, classes: set[str], one2one: bool) -> bool:
        """A checkpoint of this family, from the class names it holds and whether its head has a one-to-one
        branch."""
        return False


class EncoderFamily(Family):
    """An embedding family (visual search): models: what an `encoders:` entry's `model` accepts; roles:
    the encoders each model makes (one Triton folder each)."""
    kind = "encoder"
    models: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
