"""The registry of model families: every family module, by name. Adding a family is one module in families/
and one line here.

Only the declarations are read here (no torch); a step hands its builder the family of its model by
reference ("module:FAMILY"), so a builder's code is its own plus its family's — never another family's.
"""
from __future__ import annotations

from ..families import mobileclip2, yolo11, yolo26, yolov8, yolov10
from ..families.base import DetectorFamily, EncoderFamily, Family
from ..tooling.safe_checkpoint import referenced

# Static imports: the manifest's validation (cached by its code, manifest/cache.py) depends on them.
MODULES = (yolo11, yolov8, yolo26, yolov10, mobileclip2)

FAMILIES: dict[str, Family] = {m.FAMILY.name: m.FAMILY for m in MODULES}
_REFS = {m.FAMILY.name: f"{m.__name__}:FAMILY" for m in MODULES}
DETECTORS = {n: f for n, f in FAMILIES.items() if isinstance(f, DetectorFamily)}
ENCODERS = {n: f for n, f in FAMILIES.items() if isinstance(f, EncoderFamily)}


def of(model: dict) -> Family:
    return FAMILIES[model["family"]]


def uses(model: dict) -> dict[str, str]:
    """Step `uses`: the model's family, handed to its builder as `ctx.use("family")`."""
    return {"family": _REFS[model["family"]]}


def for_architecture(arch: str) -> DetectorFamily | None:
    return next((f for f in DETECTORS.values() if arch in f.architectures), None)


def builtins() -> dict[str, tuple[DetectorFamily, object]]:
    """{manifest builtins key: (family, Builtin)} over every detector family."""
    return {b.key: (f, b) for f in DETECTORS.values() for b in f.builtins}


def for_checkpoint(path) -> DetectorFamily | None:
    """The detector family a checkpoint file belongs to, from the classes its pickle references (read without
    running it); None when no family recognizes it (its loading then says what it is)."""
    found = referenced(path)
    if found is None:
        return None
    globals_, strings = found
    classes = {g.rpartition(".")[2] for g in globals_ if g.startswith("ultralytics.")}
    return next((f for f in DETECTORS.values() if f.recognizes(classes, "one2one_cv2" in strings)), None)


def for_encoder_model(name: str) -> EncoderFamily | None:
    return next((f for f in ENCODERS.values() if name in f.models), None)
