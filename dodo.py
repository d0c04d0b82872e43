"""The build DAG: PyTorch checkpoints -> ONNX -> Triton model repository (models/).

    doit                                   # everything in manifests/default.yaml
    doit manifest=manifests/smoke.yaml     # offline smoke build (untrained model)
    doit custom=/data/my.pt:my_name:32     # one-off custom checkpoint, no YAML
    doit onnx:yolov11_small                # one Triton folder and what it needs
    doit list --all                        # every task;  doit info TASK  says why it would run
    doit shard=2/4 cache=s3://bucket/x     # this CI job's share of the models (GPU targets: its GPU's plans)
    doit assemble cache=s3://bucket/x      # the whole repository from the cache; fails naming what is missing

Each task is one artifact, declared in pipeline/declarations/kinds.py and built by its module in
pipeline/builders/. Loading this file imports no torch, ultralytics, onnx or tensorrt: builders import
them when they run.
"""
import atexit
import os
import sys
from pathlib import Path

from doit import get_var

# Some machines set PYTHONDONTWRITEBYTECODE: every doit call would then recompile the pipeline's modules
# (~15 ms, an eighth of doit's own startup). Their bytecode is a cache in the git-ignored __pycache__.
sys.dont_write_bytecode = False

ROOT = Path(__file__).resolve().parent
os.chdir(ROOT)  # every path in the DAG is relative to the project: the state survives a move
sys.path.insert(0, str(ROOT))

from pipeline.declarations import kinds, layout, sharding  # noqa: E402
from pipeline.declarations.manifest_cache import load_models, manifest_key  # noqa: E402
from pipeline.engine.errors import UserError, exit_with  # noqa: E402
from pipeline.engine.lock import hold_build_lock  # noqa: E402
from pipeline.engine import noop, quick_exit  # noqa: E402
from pipeline.engine import timings  # noqa: E402
from pipeline.engine.step import SHA256Checker  # noqa: E402
from pipeline.engine.threads import share_cores  # noqa: E402
from pipeline.engine.tools import dali_version, installed, tensorrt_version  # noqa: E402

TENSORRT = tensorrt_version()  # from its dist-info: nothing is imported
DALI = dali_version()
TRT_FORMATS = ("trt", "trt_end2end")
DALI_FORMATS = ("dali_end2end", "dali_trt_end2end")


DOIT_CONFIG = {
    "backend": "json-atomic",        # doit's JSON state (portable: CI caches, other machines), written
                                     # atomically; a damaged file is set aside (pipeline/engine/state.py)
    "dep_file": layout.DOIT_STATE,
    # content, not mtime: a restored checkout with new mtimes is up to date (doit's md5 logic, SHA-256
    # shared with the runner so no file is hashed twice)
    "check_file_uptodate": SHA256Checker,
    # Without TensorRT (or DALI), plain `doit` builds everything else (FP16 graphs included); naming such a
    # task still runs it, and it fails with a clear error.
    "default_tasks": ["onnx", "onnx_end2end", "fp16_onnx", "fp16_end2end_onnx", "encoder_trt_onnx"]
                     + (list(TRT_FORMATS) if TENSORRT else []) + (["dali_end2end"] if DALI else [])
                     + (["dali_trt_end2end"] if DALI and TENSORRT else []),
    "verbosity": 2,
    "reporter": noop.SnapshotReporter,  # doit's console output; a call where all was up to date leaves a snapshot
}


if get_var("cache", None) is not None:  # doit cache=URL (or off): read by the runner, here and in children
    os.environ["PIPELINE_CACHE"] = get_var("cache")

# doit's commands that do not build (and ours, see pyproject.toml); anything else (`doit`, `doit onnx`,
# `doit -n 2 trt:x`, `doit run ...`) runs tasks.
_QUIET = {"list", "info", "clean", "forget", "help", "ignore", "dumpdb", "strace", "tabcompletion", "reset-dep",
          "auto", "status", "graph", "builtins", "recipe", "clean-downloads", "compare-tracks"}
_COMMAND = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in _QUIET else "run"
if _COMMAND == "run":
    quick_exit.install()  # first: a successful run skips torch's teardown after every other exit handler
    hold_build_lock()  # two doit runs on one project never interleave (state, artifacts)
    timings.start_run()  # each built step's time; the slowest are summed up at exit
    atexit.register(timings.print_summary)
    share_cores(sys.argv)  # `doit -n N`: N workers share the cores instead of each taking them all

# (manifest, custom=, project, whether manifest= was given): what the model records are resolved from
_MANIFEST = (get_var("manifest", "manifests/default.yaml"), get_var("custom", None), ROOT,
             get_var("manifest", None) is not None)
try:
    MODELS = load_models(*_MANIFEST)
    if get_var("shard", None) is not None:  # a CI job's share: deterministic, balanced by model
        MODELS = sharding.select(MODELS, get_var("shard"), kinds.STEPS)
except UserError as error:
    exit_with(error)

_SKIPPED = sum(f in m["settings"]["formats"] for m in MODELS for f in TRT_FORMATS)
_SKIPPED_DALI = sum(f in m["settings"]["formats"] for m in MODELS for f in (*DALI_FORMATS, "search"))
# Track E ensembles build by default where DALI is (and TensorRT, for those made of plans)
DOIT_CONFIG["default_tasks"] += [f"ensemble:{m['name']}" for m in MODELS if layout.family(m) == "search" and DALI
                                 and (m["backend"] == "onnx" or TENSORRT)]
if _COMMAND == "run" and "assemble" not in sys.argv[1:]:
    if _SKIPPED and not TENSORRT:
        print(f"notice: TensorRT is not installed here: skipping {_SKIPPED} TensorRT plan(s)"
              + (" and the DALI ensembles feeding them" if _SKIPPED_DALI else "")
              + " (doit trt:NAME names one and fails; see README 'TensorRT')", file=sys.stderr)
    if _SKIPPED_DALI and not DALI:
        print(f"notice: NVIDIA DALI is not installed here: skipping {_SKIPPED_DALI} DALI ensemble(s) "
              "(pip install -e '.[dali]'; see README 'Track D')", file=sys.stderr)
    # The same call again, with nothing changed since it found every task up to date: its output, at once
    # (pipeline/engine/noop.py; any change, or PIPELINE_EXPLAIN_NOOP=1 to see why, goes through doit).
    if not any(a.startswith(("--db-file", "--backend", "--reporter", "-r")) for a in sys.argv[1:]):
        noop.replay_if_unchanged(noop.run_key(
            str(ROOT), sys.argv[1:], dict(os.environ),
            manifest_key(*_MANIFEST)[0],
            installed(), TENSORRT, DALI))


def declare(*steps):
    for step in steps:
        for model in MODELS:
            for instance in step.instances(model):  # none, the model, or one per GPU target
                yield step.task(instance)


def task_download():
    """Download built-in YOLO11 weights (Ultralytics assets) into pytorch_models/."""
    yield from declare(kinds.DOWNLOAD)


def task_materialize():
    """Build UNTRAINED models from an Ultralytics architecture (arch: in the manifest)."""
    yield from declare(kinds.MATERIALIZE)


def task_inspect():
    """Check user checkpoints (pt_file:) are detection models; record their classes."""
    yield from declare(kinds.INSPECT)


def task_export_onnx():
    """Raw ONNX export, verified against PyTorch in onnxruntime."""
    yield from declare(kinds.EXPORT_ONNX)


def task_end2end_onnx():
    """End2End ONNX: raw graph + EfficientNMS_TRT, checked against the NumPy reference of the plugin."""
    yield from declare(kinds.END2END_ONNX)


def task_fp16_onnx():
    """FP16 raw ONNX in pytorch_models/: what the TensorRT plan is compiled from."""
    yield from declare(kinds.FP16_ONNX)


def task_fp16_end2end_onnx():
    """FP16 End2End ONNX in pytorch_models/: what the TensorRT End2End plan is compiled from."""
    yield from declare(kinds.FP16_END2END_ONNX)


def task_plan():
    """TensorRT plans (needs TensorRT 10.x/11.x and a GPU; built in a child process, one per GPU at a time)."""
    yield from declare(kinds.PLAN, kinds.PLAN_END2END, kinds.PLAN_ENCODER,
                       kinds.TARGET_PLANS, kinds.TARGET_PLANS_END2END, kinds.TARGET_PLANS_ENCODER)


def task_config():
    """config.pbtxt of each Triton folder, from the artifact's real inputs and outputs."""
    yield from declare(*kinds.CONFIGS)


def task_labels():
    """labels.txt of each detection Triton folder (class names, one per line, by class id)."""
    yield from declare(*(s for s in kinds.SIDECARS if s.basename == "labels"), *(e.labels for e in kinds.DALI_ENSEMBLES))


def task_clip_weights():
    """MobileCLIP2 weights through open_clip (pretrained tag, local file or untrained)."""
    yield from declare(kinds.CLIP_WEIGHTS)


def task_encoder_onnx():
    """MobileCLIP2 image/text encoders as ONNX in pytorch_models/, reparameterized, checked vs PyTorch."""
    yield from declare(kinds.ENCODER_ONNX)


def task_encoder_trt_onnx():
    """The encoder graphs TensorRT compiles (FP16, INT32 tokens) in pytorch_models/."""
    yield from declare(kinds.ENCODER_TRT_ONNX)


def task_publish_onnx():
    """Encoder ONNX served from the Triton repository (<name>_onnx folders, for hosts without TensorRT)."""
    yield from declare(kinds.PUBLISH_ENCODER)


def task_encoder_info():
    """encoder.json beside each encoder's config.pbtxt: logit_scale, preprocessing, tokenizer."""
    yield from declare(*(s for s in kinds.SIDECARS if s.basename == "encoder_info"))


def task_dali_pipeline():
    """DALI preprocessing of the Track D ensembles: serialized GPU pipeline, its CPU twin checked."""
    yield from declare(*(e.pipeline for e in kinds.DALI_ENSEMBLES))


def task_boxes_onnx():
    """The ensembles' last step: End2End boxes back to the original image's pixels (a small ONNX)."""
    yield from declare(*(e.boxes for e in kinds.DALI_ENSEMBLES))


def task_publish():
    """TensorRT folders with several GPU targets: published into models/ once every target's plan is built."""
    for folder, config, sidecar in zip(kinds.FOLDERS, kinds.FOLDER_CONFIGS, kinds.SIDECARS):
        for model in MODELS:
            if folder.applies(model) and folder.staged(model):
                yield kinds.publish_task(folder, config, sidecar, model)


def _folder_groups(fmt: str):
    for folder, config, sidecar in zip(kinds.FOLDERS, kinds.FOLDER_CONFIGS, kinds.SIDECARS):
        if folder.format != fmt:
            continue
        for model in (m for m in MODELS if folder.applies(m)):
            if folder.staged(model):  # several GPU targets: complete once published
                deps = [f"publish:{layout.folder(model, fmt)}"]
            else:
                deps = folder.model_tasks(model) + [f"config:{config.subname(model)}"]
                if sidecar.applies(model):
                    deps.append(f"{sidecar.basename}:{sidecar.subname(model)}")
            # up to date by itself (doit still runs what it depends on first): not re-run and re-saved
            # as a task without dependencies would be on every call
            yield {"name": model["name"], "actions": None, "task_dep": deps, "uptodate": [True],
                   "doc": f"Triton folder {layout.published_path(model, fmt)}/ complete"}


def task_onnx():
    """Triton folder models/<name>/ (raw YOLO ONNX) or models/<encoder>_onnx/ (MobileCLIP2 ONNX)."""
    yield from _folder_groups("onnx")


def task_onnx_end2end():
    """Triton folder models/<name>_end2end/: End2End ONNX + config.pbtxt + labels.txt."""
    yield from _folder_groups("onnx_end2end")


def task_trt():
    """Triton folder models/<name>_trt/ (YOLO plan) or models/<encoder>/ (MobileCLIP2 plan)."""
    yield from _folder_groups("trt")


def _ensemble_groups(fmt: str):
    ensemble = next(e for e in kinds.DALI_ENSEMBLES if e.format == fmt)
    for model in (m for m in MODELS if ensemble.applies(m)):
        yield {"name": model["name"], "actions": None, "task_dep": ensemble.group_deps(model), "uptodate": [True],
               "doc": f"Triton ensemble {layout.folder_path(model, fmt)}/ and its members complete"}


def task_dali_end2end():
    """Track D ensemble models/<name>_dali_end2end/: encoded images -> DALI -> End2End ONNX -> original pixels."""
    yield from _ensemble_groups("dali_end2end")


def task_ensemble():
    """Track E ensemble models/<key>/ (manifest ensembles:): one decode, detections + image embeddings."""
    yield from _ensemble_groups("search")


def task_dali_trt_end2end():
    """Track D ensemble models/<name>_dali_trt_end2end/: encoded images -> DALI -> TensorRT End2End plan."""
    yield from _ensemble_groups("dali_trt_end2end")


def task_trt_end2end():
    """Triton folder models/<name>_trt_end2end/: TensorRT plan with compiled NMS + config.pbtxt + labels.txt."""
    yield from _folder_groups("trt_end2end")


def task_assemble():
    """The whole repository, every GPU target: built here or restored from the artifact cache; fails naming
    each missing (folder, GPU target) pair. For the job after a CI matrix of GPU hosts."""
    from pipeline.engine.assemble import check_published

    expected = [(layout.published_path(m, f.format), layout.folder_path(m, f.format), layout.gpu_targets(m, f.format),
                 m["settings"]["triton_target"]) for f in kinds.FOLDERS for m in MODELS if f.applies(m) and f.staged(m)]
    manifest = MODELS[0]["manifest"] if MODELS else None
    return {"actions": [(check_published, [expected, manifest])], "task_dep": [*layout.FORMATS, "ensemble"],
            "uptodate": [False],
            "verbosity": 2}
