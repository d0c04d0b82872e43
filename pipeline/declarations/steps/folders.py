"""A Triton folder: the step making its model file, config.pbtxt written from that model's real I/O, a
sidecar file for clients (labels.txt, encoder.json), the deploy probe — and for plans, one plan per GPU
target, the folder published only complete."""
from __future__ import annotations

from ...engine.step import Step
from ...tooling.gpu_targets import where_to_build
from .. import layout as L
from .common import settings
from .plans import gpu_targets, host_plan, target_plans
from .publication import overrides, probe_step, publish_names, publish_tasks


class Sidecar:
    """A small client-facing file beside config.pbtxt, written from a record."""

    def __init__(self, basename, filename, builder, source, wanted=lambda m: True, params=lambda m: {}):
        self.basename, self.filename, self.builder, self.source = basename, filename, builder, source
        self.wanted, self.params = wanted, params


LABELS = Sidecar("labels", "labels.txt", "pipeline.builders.labels:write_labels",
                 {"checkpoint_record": L.checkpoint_record}, lambda m: m["settings"]["save_labels"])
ENCODER_INFO = Sidecar("encoder_info", "encoder.json", "pipeline.builders.encoder_info:write_info",
                       {"clip_record": L.clip_record}, params=lambda m: {"role": m["role"]})


def task_names(step: Step, m: dict) -> list[str]:
    return [f"{step.basename}:{step.subname(i)}" for i in step.instances(m)]


class TritonFolder:
    """model: the step(s) writing the folder's model file (one per head kind, say; a model has one of them),
    or plans_from: the ONNX its TensorRT plans are compiled from (one plan for this host's GPU, or one per GPU
    target); io: the ONNX whose I/O the config describes (for plans, their ONNX: a config-only change never
    touches a plan); accelerator: model -> the TensorRT accelerator parameters an onnxruntime folder needs,
    or None. Bound to its format by the format's declaration (formats.py), which makes its config, sidecar
    and probe steps; everything is built in staging and published as a version (publication.py)."""

    subfolders: tuple[str, ...] = ()  # other Triton folders it makes (suffixes of its own name)

    def __init__(self, model: Step | tuple[Step, ...] = (), *, io, platform: str, sidecar: Sidecar, plans_from=None,
                 accelerator=None):
        self.model_steps = model if isinstance(model, tuple) else (model,)
        self.io, self.platform, self.sidecar = io, platform, sidecar
        self.plans_from, self.accelerator = plans_from, accelerator

    def bind(self, fmt: str, applies) -> "TritonFolder":
        self.format, self.applies = fmt, applies
        if self.plans_from is not None:
            self.model_steps = (host_plan(fmt, self.plans_from, applies), target_plans(fmt, self.plans_from, applies))
        self.config = Step(
            basename="config", doc=f"Write config.pbtxt of the {fmt} folder of {{name}} (Triton ModelConfig)",
            builder="pipeline.builders.triton_config:write_config", applies=applies,
            subname=lambda m: L.folder(m, fmt), inputs={"graph": self.io},
            outputs={"config": lambda m: f"{L.folder_path(m, fmt)}/config.pbtxt"},
            params=lambda m: {"folder": L.folder(m, fmt), "platform": self.platform, "untrained": m["untrained"],
                              "tensorrt_accelerator": self.accelerator(m) if self.accelerator else None,
                              "cc_model_filenames": self._cc_model_filenames(m), **overrides(fmt)(m),
                              **settings("max_batch", "dynamic_batching", "instance_group")(m)})
        side = self.sidecar
        self.side = Step(
            basename=side.basename, doc=f"Write {side.filename} of the {fmt} folder of {{name}}",
            builder=side.builder, applies=lambda m: applies(m) and side.wanted(m),
            subname=lambda m: L.folder(m, fmt), inputs=side.source,
            outputs={"file": lambda m: f"{L.folder_path(m, fmt)}/{side.filename}"}, params=side.params)
        runs_here = self.plans_from is None  # an ONNX folder: its answer is computed here
        self.probe = probe_step(fmt, lambda m: L.folder(m, fmt), applies, self.io if runs_here else (lambda m: None))
        return self

    @property
    def steps(self) -> tuple[Step, ...]:
        return (*self.model_steps, self.config, self.side, self.probe)

    def model_tasks(self, m: dict) -> list[str]:
        return [t for s in self.model_steps for t in task_names(s, m)]

    def _cc_model_filenames(self, m: dict) -> dict[str, str] | None:
        return {t["cc"]: L.plan_filename(t["cc"]) for t in gpu_targets(m, self.format)} or None

    def member_folders(self, m: dict | None) -> list[tuple[dict | None, str]]:
        """(record, format) of other folders this one is made of: none."""
        return []

    def group_deps(self, m: dict) -> list[str]:
        """What makes the folder complete: its publication."""
        return publish_names(self.steps, m)

    def tasks(self, m: dict) -> list[dict]:
        """Tasks besides the steps': the folder's publication."""
        return publish_tasks(self.steps, m)

    def staged_targets(self, m: dict) -> list[dict]:
        """For `doit assemble`: each GPU target's staged plan and where to build it."""
        target = m["settings"]["triton_target"]
        return [{"plan": L.target_plan(m, self.format, t["cc"]), "cc": t["cc"], "where": where_to_build(t, target)}
                for t in gpu_targets(m, self.format)]
