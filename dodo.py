"""The build DAG: PyTorch checkpoints -> ONNX -> Triton model repository (models/).

    doit                                   # everything in manifests/default.yaml
    doit manifest=manifests/smoke.yaml     # offline smoke build (untrained model)
    doit custom=/data/my.pt:my_name:32     # one-off custom checkpoint, no YAML
    doit onnx:yolov11_small                # one Triton folder and what it needs
    doit list --all                        # every task;  doit info TASK  says why it would run
    doit shard=2/4 cache=s3://bucket/x     # this CI job's share of the models (GPU targets: its GPU's plans)
    doit assemble cache=s3://bucket/x      # the whole repository from the cache; fails naming what is missing

The tasks are the declarations' (pipeline/declarations/: families, formats and their steps; dag.py turns
them into tasks), built by the modules in pipeline/builders/. Loading this file imports no torch,
ultralytics, onnx or tensorrt: builders import them when they run.
"""
import atexit
import os
import sys
import tomllib
from pathlib import Path

from doit import get_var
from doit.doit_cmd import DoitMain

# Some machines set PYTHONDONTWRITEBYTECODE: every doit call would then recompile the pipeline's modules
# (~15 ms, an eighth of doit's own startup). Their bytecode is a cache in the git-ignored __pycache__.
sys.dont_write_bytecode = False

ROOT = Path(__file__).resolve().parent
os.chdir(ROOT)  # every path in the DAG is relative to the project: the state survives a move
# Nothing in the user's home: onnxruntime (1.2x+) otherwise keeps a telemetry store in ~/.cache/Microsoft
# (tools with a settings folder get one in .pipeline/: Ultralytics, matplotlib).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def _this_checkouts_code() -> None:
    """doit imports its command plugins (pyproject.toml) before this file runs, and a venv installed with
    `pip install -e` from another checkout maps `pipeline` to that one: this checkout's code would be
    ignored and its artifacts hashed with the other's. Run again with this checkout first on the path, or
    refuse with one paragraph when even that does not help."""
    loaded = sys.modules.get("pipeline")
    where = Path(loaded.__file__).resolve().parent.parent if loaded and getattr(loaded, "__file__", None) else ROOT
    if where == ROOT:
        sys.path.insert(0, str(ROOT))
        return
    if os.environ.get("PIPELINE_CHECKOUT") == str(ROOT):
        sys.stderr.write(f"error: {ROOT}/dodo.py: this doit imports the pipeline package of another checkout, "
                         f"{where}, even with {ROOT} first on PYTHONPATH. Fix: run doit from a virtual environment "
                         f"installed from this checkout (pip install -e {ROOT}).\n")
        raise SystemExit(2)
    env = {**os.environ, "PIPELINE_CHECKOUT": str(ROOT),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "doit", *sys.argv[1:]], env)


_this_checkouts_code()

from pipeline.declarations import sharding  # noqa: E402
from pipeline.declarations.dag import Dag, all_steps  # noqa: E402
from pipeline.declarations.manifest.cache import load_models, manifest_key  # noqa: E402
from pipeline.declarations.tools import DALI, TENSORRT  # noqa: E402
from pipeline.engine import noop, paths, quick_exit, timings  # noqa: E402
from pipeline.engine.errors import UserError, exit_with  # noqa: E402
from pipeline.engine.lock import hold_build_lock  # noqa: E402
from pipeline.engine.noop_reporter import SnapshotReporter  # noqa: E402
from pipeline.engine.step import SHA256Checker  # noqa: E402
from pipeline.engine.threads import share_cores  # noqa: E402
from pipeline.engine.tools import installed  # noqa: E402

DOIT_CONFIG = {
    "backend": "json-atomic",        # doit's JSON state (portable: CI caches, other machines), written
                                     # atomically; a damaged file is set aside (pipeline/engine/state.py)
    "dep_file": paths.DOIT_STATE,
    # content, not mtime: a restored checkout with new mtimes is up to date (doit's md5 logic, SHA-256
    # shared with the runner so no file is hashed twice)
    "check_file_uptodate": SHA256Checker,
    "verbosity": 2,
    # a failed task stops only what depends on it (make -k): one broken checkpoint or a folder held for its
    # hand-edited config.pbtxt does not keep every other model from building; the exit status still says so
    "continue": True,
    "reporter": SnapshotReporter,  # doit's console output; a call where all was up to date leaves a snapshot
}

if get_var("cache", None) is not None:  # doit cache=URL (or off): read by the runner, here and in children
    os.environ["PIPELINE_CACHE"] = get_var("cache")

# Commands that do not build: doit's own and ours (pyproject.toml); anything else (`doit`, `doit onnx`,
# `doit -n 2 trt:x`, `doit run ...`) runs tasks.
_PLUGINS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["doit"]["plugins"]["command"]
_QUIET = {c.get_name() for c in DoitMain.DOIT_CMDS if c.get_name() != "run"} | set(_PLUGINS)
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
        MODELS = sharding.select(MODELS, get_var("shard"), all_steps())
except UserError as error:
    exit_with(error)

DAG = Dag(MODELS)
if _COMMAND == "run":
    if "assemble" not in sys.argv[1:]:
        for line in DAG.notices():  # without TensorRT or DALI, what plain `doit` leaves out
            print(line, file=sys.stderr)
    # The same call again, with nothing changed since it found every task up to date: its output, at once
    # (pipeline/engine/noop.py; any change, or PIPELINE_EXPLAIN_NOOP=1 to see why, goes through doit).
    if not any(a.startswith(("--db-file", "--backend", "--reporter", "-r")) for a in sys.argv[1:]):
        noop.replay_if_unchanged(noop.run_key(str(ROOT), sys.argv[1:], dict(os.environ), manifest_key(*_MANIFEST)[0],
                                              installed(), TENSORRT.version, DALI.version))
    # Without a tool, plain `doit` builds everything else; naming a task that needs it still runs it, and it
    # fails with one paragraph.
    DOIT_CONFIG["default_tasks"] = DAG.default_tasks()

globals().update(DAG.task_creators())  # task_download, task_export_onnx, ..., task_onnx, ..., task_assemble
