"""TensorRT plans: one `model.plan` for this host's GPU, or one plan per GPU target of the fleet."""
from __future__ import annotations

from ...engine.step import Step
from ...engine.tools import plan_identity
from .. import layout as L
from ..tools import TENSORRT, needs
from .common import settings

PLAN_SETTINGS = settings("max_batch", "workspace_gb", "allow_tf32", "triton_target")  # precision: its ONNX's
BUILDER = "pipeline.builders.tensorrt_plan:build"


def gpu_targets(m: dict, fmt: str) -> list[dict]:
    """The compute capabilities a plan folder holds one plan each for ([] for one model.plan)."""
    return m["settings"]["gpu_targets"] if L.per_target(m, fmt) else []


def host_plan(fmt: str, source, applies) -> Step:
    """One model.plan for this host's GPU: the TensorRT version and GPU here are part of its recipe."""
    return Step(
        basename="plan", doc=f"TensorRT plan of {{name}} ({fmt}) from its {{settings[precision]}} ONNX — needs TensorRT + GPU",
        builder=BUILDER, isolate=True, requires=needs(TENSORRT),
        applies=lambda m: applies(m) and not L.per_target(m, fmt), subname=lambda m: L.folder(m, fmt),
        inputs={"onnx": source}, outputs={"plan": lambda m: L.plan(m, fmt)},
        record=lambda m: L.verification_record(L.plan(m, fmt)),
        params=lambda m: {**PLAN_SETTINGS(m), "gpu_target": None, **plan_identity()})


def target_plans(fmt: str, source, applies) -> Step:
    """One plan per GPU target (manifest gpu_targets): its recipe names the target (compute capability,
    pinned GPU model, the target Triton's TensorRT), not this host, so every host computes the same one:
    the host with that GPU builds it, every other host restores it from the shared artifact cache."""
    return Step(
        basename="plan", doc=f"TensorRT plan of {{name}} ({fmt}) for GPUs of compute capability {{gpu_target[cc]}}",
        builder=BUILDER, isolate=True, applies=lambda m: applies(m) and L.per_target(m, fmt),
        variants=lambda m: [{"gpu_target": t} for t in gpu_targets(m, fmt)],
        subname=lambda m: f"{L.folder(m, fmt)}.sm{m['gpu_target']['cc'].replace('.', '')}",
        inputs={"onnx": source}, outputs={"plan": lambda m: L.target_plan(m, fmt)},
        record=lambda m: L.verification_record(L.target_plan(m, fmt)),
        params=lambda m: {**PLAN_SETTINGS(m), "gpu_target": m["gpu_target"]},
        tools=lambda m: {"tensorrt": m["settings"]["triton_target"]["tensorrt"]},
        buildable="pipeline.tooling.gpu_targets:buildable_here")
