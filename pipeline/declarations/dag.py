"""The DAG, from the declarations: every declared step of every model is a doit task, every format's folder
a group task, and what plain `doit` builds on this host follows from the tools each format needs.

dodo.py hands this the resolved models and puts `task_creators()` into its namespace; a step that is
declared is therefore always a task (no hand-written `task_*` function to forget).
"""
from __future__ import annotations

from . import layout as L
from .formats import ALL as FORMATS_IN_ORDER
from .steps import checkpoints, encoders, graphs
from .steps.folders import TritonFolder
from .tools import TOOLS

# Steps that belong to no folder: checkpoints, graphs and intermediates (a folder's own steps come with it).
FREE_STEPS = (*checkpoints.STEPS, *graphs.STEPS, *encoders.STEPS)

# What `doit list` says of each task basename (a format's group says its format's doc).
DOCS = {
    "download": f"Download built-in detector weights (Ultralytics assets) into {L.WORK}/.",
    "materialize": "Build UNTRAINED models from an architecture (arch: in the manifest).",
    "inspect": "Check user checkpoints (pt_file:) are detection models of a known family; record their classes.",
    "export_onnx": "Raw ONNX export, verified against PyTorch in onnxruntime.",
    "end2end_onnx": "End2End ONNX: the raw graph + the tail its head needs (EfficientNMS_TRT), checked against a "
                    "NumPy reference.",
    "fp16_onnx": f"FP16 raw ONNX in {L.WORK}/: what the TensorRT plan is compiled from.",
    "fp16_end2end_onnx": f"FP16 End2End ONNX in {L.WORK}/: what the TensorRT End2End plan is compiled from.",
    "quantized_onnx": f"INT8 / FP8 Q/DQ raw ONNX in {L.WORK}/ (precision int8, fp8): calibrated, accuracy measured.",
    "quantized_end2end_onnx": f"The End2End tail on the Q/DQ graph, in {L.WORK}/: what an INT8 End2End plan is "
                              "compiled from.",
    "plan": "TensorRT plans (needs TensorRT 10.x/11.x and a GPU; built in a child process, one per GPU at a time).",
    "config": "config.pbtxt of each Triton folder, from the artifact's real inputs and outputs.",
    "labels": "labels.txt of each detection Triton folder (class names, one per line, by class id).",
    "clip_weights": "MobileCLIP2 weights through open_clip (pretrained tag, local file or untrained).",
    "encoder_onnx": f"MobileCLIP2 image/text encoders as ONNX in {L.WORK}/, reparameterized, checked vs PyTorch.",
    "encoder_trt_onnx": f"The encoder graphs TensorRT compiles (FP16, INT32 tokens) in {L.WORK}/.",
    "publish_onnx": "Encoder ONNX served from the Triton repository (<name>_onnx folders, for hosts without TensorRT).",
    "encoder_info": "encoder.json beside each encoder's config.pbtxt: logit_scale, preprocessing, tokenizer.",
    "dali_pipeline": "DALI preprocessing of the Track D/E ensembles: serialized GPU pipeline, its CPU twin checked.",
    "boxes_onnx": "The ensembles' last step: End2End boxes back to the original image's pixels (a small ONNX).",
    "publish": f"Every Triton folder, published from {L.STAGED}/ into {L.MODELS}/ as a new numbered version when its "
               "bytes changed (folders with several GPU targets once every target's plan is built).",
    "probe": "The request `doit deploy` sends each newly loaded version, with the answer the build expects.",
    "assemble": "The whole repository, every GPU target: built here or restored from the artifact cache; fails "
                "naming each missing (folder, GPU target) pair. For the job after a CI matrix of GPU hosts.",
}


def _unique(items):
    seen, out = set(), []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


def all_steps() -> list:
    """Every declared step, once: the free ones, then each format's folders' own."""
    return _unique([*FREE_STEPS, *(s for f in FORMATS_IN_ORDER for folder in f.folders.values() for s in folder.steps)])


def _folders(models: list[dict]):
    """(format, folder declaration, model) of every Triton folder the manifest makes."""
    for fmt in FORMATS_IN_ORDER:
        for folder in fmt.folders.values():
            for m in models:
                if folder.applies(m):
                    yield fmt, folder, m


class Dag:
    def __init__(self, models: list[dict]):
        self.models = models
        self.steps = all_steps()
        self.folders = list(_folders(models))

    def tasks(self, basename: str):
        """The tasks of one basename, in declaration order."""
        for step in self.steps:
            if step.basename == basename:
                for m in self.models:
                    for instance in step.instances(m):  # none, the model, or one per GPU target
                        yield step.task(instance)
        for fmt, folder, m in self.folders:
            if basename == "publish":
                yield from folder.tasks(m)
            elif basename == fmt.group:
                # up to date by itself (doit still runs what it depends on first): not re-run and re-saved as a
                # task without dependencies would be on every call
                yield {"name": m["name"], "actions": None, "task_dep": folder.group_deps(m), "uptodate": [True],
                       "doc": f"{fmt.name}: Triton folder {L.published_path(m, fmt.name)}/ complete"}

    def basenames(self) -> list[str]:
        names = [s.basename for s in self.steps] + ["publish"] + [f.group for f in FORMATS_IN_ORDER]
        return list(dict.fromkeys(names))

    def task_creators(self) -> dict:
        """{"task_<basename>": creator} for dodo.py's namespace, each documented for `doit list`."""
        out = {}
        for basename in self.basenames():
            def create(basename=basename):
                yield from self.tasks(basename)
            fmt = next((f for f in FORMATS_IN_ORDER if f.group == basename), None)
            create.__doc__ = fmt.doc if fmt else DOCS[basename]
            out[f"task_{basename}"] = create
        out["task_assemble"] = self._assemble
        return out

    def _assemble(self):
        from ..engine.assemble import check_published

        expected = [(L.published_path(m, fmt.name), folder.staged_targets(m)) for fmt, folder, m in self.folders
                    if isinstance(folder, TritonFolder) and L.per_target(m, fmt.name)]
        manifest = self.models[0]["manifest"] if self.models else None
        return {"actions": [(check_published, [expected, manifest])],
                "task_dep": list(dict.fromkeys(f.group for f in FORMATS_IN_ORDER)), "uptodate": [False],
                "verbosity": 2}

    # ---- what plain `doit` builds on this host
    def default_tasks(self) -> list[str]:
        """Every folder whose tools are all here, and every free step (graphs, intermediates: the FP16 graphs a
        GPU host compiles) that needs no missing tool."""
        out = [f"{fmt.group}:{m['name']}" for fmt, folder, m in self.folders
               if all(TOOLS[t].present for t in fmt.tools(m))]
        for step in FREE_STEPS:
            if all(t.present for t in getattr(step.requires, "tools", ())):
                out += [f"{step.basename}:{step.subname(i)}" for m in self.models for i in step.instances(m)]
        return out

    def notices(self) -> list[str]:
        """One line per missing tool that makes plain `doit` skip folders."""
        lines = []
        for tool in TOOLS.values():
            if tool.present:
                continue
            own = [(fmt, m) for fmt, _, m in self.folders if tool.name in fmt.own_tools]
            dependent = [(fmt, m) for fmt, _, m in self.folders
                         if tool.name in fmt.tools(m) and tool.name not in fmt.own_tools]
            if not own and not dependent:
                continue
            example = (own or dependent)[0][0].group
            more = f" and {len(dependent)} folder(s) made of them ({', '.join(sorted({f.name for f, _ in dependent}))})" \
                if dependent else ""
            lines.append(f"notice: {tool.title} is not installed here: skipping {len(own)} {tool.items}{more} "
                         f"(doit {example}:NAME names one and fails, saying what to do; see README '{tool.readme}')")
        return lines

