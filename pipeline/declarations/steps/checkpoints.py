"""Checkpoints: every detector ends in pytorch_models/<name>.checkpoint.json (family, classes, names, SHA-256)."""
from __future__ import annotations

from ...engine.step import Step
from .. import layout as L
from .common import class_spec, detector, uses_family

DOWNLOAD = Step(
    basename="download", doc="Download the built-in weights {pt} and verify them",
    builder="pipeline.builders.checkpoint:download", applies=detector(lambda m: m["source"] == "builtin"),
    outputs={"checkpoint": lambda m: m["pt"]}, record=L.checkpoint_record, downloads=("checkpoint",),
    uses=uses_family, params=lambda m: {"url": m["url"], "trust_checkpoint": m["trust_checkpoint"], **class_spec(m)})

MATERIALIZE = Step(
    basename="materialize", doc="Build the UNTRAINED {arch} model {pt} (random weights, for smoke tests)",
    builder="pipeline.builders.checkpoint:materialize", applies=detector(lambda m: m["source"] == "arch"),
    outputs={"checkpoint": lambda m: m["pt"]}, record=L.checkpoint_record, uses=uses_family,
    params=lambda m: {"arch": m["arch"], **class_spec(m)})

INSPECT = Step(
    basename="inspect", doc="Check the user checkpoint {pt} is a {family} detection model; record classes and SHA-256",
    builder="pipeline.builders.checkpoint:inspect", applies=detector(lambda m: m["source"] == "file"),
    inputs={"checkpoint": lambda m: m["pt"]}, outputs={}, record=L.checkpoint_record, uses=uses_family,
    params=lambda m: {"trust_checkpoint": m["trust_checkpoint"], **class_spec(m)})

STEPS = (DOWNLOAD, MATERIALIZE, INSPECT)
