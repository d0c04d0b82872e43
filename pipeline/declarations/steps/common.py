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


def role_name(m: dict, role: str) -> str:
    """A folder's name in `config_overrides`: its format (or `<format>_preprocess` / `_postprocess` of an
    ensemble's own members); an encoder's, prefixed by its role (image_onnx, text_trt): one encoders entry makes
    both encoders' folders."""
    return f"{m['role']}_{role}" if m["kind"] == "encoder" else role
