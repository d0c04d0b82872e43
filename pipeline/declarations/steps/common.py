"""What every step declaration reads off a model record."""
from __future__ import annotations

from .. import families


def settings(*keys: str):
    """Step `params`: these manifest settings of the model."""
    return lambda m: {k: m["settings"][k] for k in keys}


def class_spec(m: dict) -> dict:
    return {"num_classes": m["num_classes"], "class_names": m["class_names"], "untrained": m["untrained"]}


def detector(test=lambda m: True):
    """Step `applies`: a detector model (any detection family) passing `test`."""
    return lambda m: m["kind"] == "detector" and test(m)


def encoder(test=lambda m: True):
    return lambda m: m["kind"] == "encoder" and test(m)


def wants(fmt: str):
    """The model asks for this format (or another format brought it: manifest resolution)."""
    return lambda m: fmt in m["settings"]["formats"]


def plans(m: dict) -> bool:
    """Any of the model's folders holds TensorRT plans."""
    return any(f["plans"] for f in m["folders"].values())


uses_family = families.uses
