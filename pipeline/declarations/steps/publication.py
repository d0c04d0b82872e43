"""Each Triton folder's publication: one publish task per staging folder, and one probe per folder.

What a folder is made of is derived from the steps that write into its staging folder (their outputs and
records), never listed by hand: a new sidecar or model file is published because its step writes there.
"""
from __future__ import annotations

from ...engine import publish
from ...engine.step import Step
from ...tooling.gpu_targets import where_to_build
from .. import layout as L
from .common import role_name


def staging_folder(path: str) -> str | None:
    """pytorch_models/staged/<folder> of a path inside one, else None."""
    if not path.startswith(L.STAGED + "/"):
        return None
    return f"{L.STAGED}/{path[len(L.STAGED) + 1:].split('/', 1)[0]}"


def publications(steps, m: dict) -> dict[str, dict]:
    """{staging folder: {"files", "deps", "targets"}} of the folders these steps write into."""
    out: dict[str, dict] = {}
    for step in steps:
        for inst in step.instances(m):
            task = f"{step.basename}:{step.subname(inst)}"
            paths = [fn(inst) for fn in step.outputs.values()] + [step.record(inst)]
            for n, path in enumerate(p for p in paths if p):
                folder = staging_folder(path)
                if folder is None:
                    continue
                pub = out.setdefault(folder, {"files": [], "deps": [], "targets": {}})
                rel = path[len(folder) + 1:]
                pub["files"].append(rel)
                if task not in pub["deps"]:
                    pub["deps"].append(task)
                if n == 0 and "gpu_target" in inst:  # one plan per GPU target: where to build the missing ones
                    pub["targets"][rel] = {"cc": inst["gpu_target"]["cc"],
                                           "where": where_to_build(inst["gpu_target"], m["settings"]["triton_target"])}
    return out


def publish_tasks(steps, m: dict) -> list[dict]:
    out = []
    for folder, pub in publications(steps, m).items():
        published = L.published(folder)
        doc = (f"Publish {published}/ as a new version once every GPU target's plan is in {folder}/" if pub["targets"]
               else f"Publish {published}/ as a new version when {folder}/ changed")
        out.append(publish.task(folder.rsplit("/", 1)[1], folder, published, sorted(pub["files"]), pub["targets"],
                                pub["deps"], doc, m["settings"]["versions"], m.get("manifest"), m.get("key", "")))
    return out


def publish_names(steps, m: dict) -> list[str]:
    return [f"publish:{folder.rsplit('/', 1)[1]}" for folder in publications(steps, m)]


def overrides(role: str):
    """Config step `params`: the manifest's `config_overrides` of this folder role (a format name, or
    `<format>_preprocess` / `<format>_postprocess` for an ensemble's own members)."""
    return lambda m: {"overrides": (m["settings"].get("config_overrides") or {}).get(role_name(m, role))}


def probe_step(role: str, folder, applies, graph=lambda m: None) -> Step:
    """The request `doit deploy` sends a freshly loaded version, and the answer it must get: computed from
    the served ONNX graph here (onnxruntime, CPU), or for what cannot run here (TensorRT plans, DALI,
    ensembles) only the outputs' names, types and shapes."""
    return Step(
        basename="probe", doc=f"The deploy probe of {{name}}'s {role} folder: a request and its expected answer",
        builder="pipeline.builders.probe:build", applies=applies, subname=folder,
        inputs={"config": lambda m: f"{L.STAGED}/{folder(m)}/config.pbtxt", "graph": graph},
        outputs={"probe": lambda m: L.probe(f"{L.STAGED}/{folder(m)}")},
        params=lambda m: {"folder": folder(m)})
