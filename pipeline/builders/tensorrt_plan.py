"""TensorRT plans (the `trt` and `trt_end2end` formats, and the encoder plans) from the FP16 (or FP32) ONNX graphs, for TensorRT 10.x and 11.x.

NEVER EXECUTED AGAINST A REAL TENSORRT IN THIS PROJECT. TensorRT cannot be installed on any machine we
build on (its libraries download from a host nobody reaches). What is checked, in CI:
* every TensorRT name this module reaches on the 10.x and the 11.x path exists in that release's real
  Python bindings (10.13.3, 10.16.1, 11.4.0 name lists from the public wheels) — by running this code
  against a stand-in `tensorrt` module generated from those lists, which refuses any other name;
* the orchestration (profile shapes, flags, stamps, atomic writes, timing cache, locking, skipping).
Whether TensorRT accepts the graphs and builds them is NOT known until a user runs it on a GPU host:
`pytest -m tensorrt` there (README).

Precision: TensorRT 11 removed BuilderFlag.FP16 and builds every network strongly typed: precision
comes from the ONNX. We use the same path on 10.x (STRONGLY_TYPED exists since 9.x): the FP16 ONNX
(FP16 backbone, FP32 box decoding and NMS) then means the same engine precision on both majors, and no
builder flag second-guesses the graph. The plan written is the bare serialized engine that Triton's
TensorRT backend loads (not Ultralytics' `.engine`, which prefixes JSON metadata).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..declarations import triton_releases
from ..engine.errors import UserError
from ..engine.tools import NoVisibleGpu, gpu, tensorrt_version, visible_gpu

if TYPE_CHECKING:
    from ..engine.context import StepContext

def host_dir() -> Path:
    """Per-host state shared by every checkout and user session: ~/.cache/triton-export-pipeline."""
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "triton-export-pipeline"


def cache_dir() -> Path:
    """Timing caches live outside the repository, shared by every checkout on this host."""
    return Path(os.environ.get("PIPELINE_TRT_CACHE_DIR") or host_dir() / "tensorrt")


def timing_cache_file(version: str, device: dict) -> Path:
    """One timing cache per TensorRT version and GPU model: tactics timed on one model mean nothing on
    another, even of the same compute capability."""
    model = re.sub(r"[^A-Za-z0-9]+", "-", device["name"]).strip("-").lower()
    return cache_dir() / f"trt-{version}-{model}-sm{device['compute_capability'].replace('.', '')}.timing-cache"


def profile_shapes(input_shape, max_batch: int) -> dict[str, tuple[int, ...]]:
    """The documented dynamic batch profile: min 1, opt max_batch // 2, max max_batch."""
    rest = tuple(int(d) for d in input_shape[1:])
    if any(d <= 0 for d in rest):
        raise RuntimeError(f"only the batch dimension may be dynamic, got {tuple(input_shape)}")
    return {"min": (1, *rest), "opt": (max(1, max_batch // 2), *rest), "max": (max_batch, *rest)}


@contextlib.contextmanager
def file_lock(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def gpu_lock(device: dict):
    """At most one TensorRT build per physical GPU at a time, per host: every checkout, `doit -n N` worker
    and user of this machine takes the same lock (keyed by the GPU's UUID, stable whatever
    CUDA_VISIBLE_DEVICES says)."""
    return file_lock(host_dir() / "locks" / f"{device.get('uuid') or 'gpu' + str(device['index'])}.lock")


def _import_tensorrt():
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or OSError from missing libnvinfer
        raise UserError(f"TensorRT cannot be imported here ({type(e).__name__}: {e})",
                        fix="run TensorRT tasks on a GPU host with TensorRT 10.x or 11.x installed "
                            "(pip install tensorrt, or an NGC container matching your Triton), or drop "
                            "trt/trt_end2end from formats") from None
    return trt


def _progress(trt):
    """A rich progress bar fed by TensorRT's IProgressMonitor (phases nest; each gets a bar).

    A display problem must never stop a build: TensorRT calls these from C++, where a Python exception
    would surface as an error of the build (or a False from step_complete, which cancels it). Every
    callback catches its own errors, keeps the first few in `errors` (they go into the record), and
    step_complete always answers True."""
    from rich.progress import Progress

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.bars = Progress(transient=True)
            self.tasks: dict[str, int] = {}
            self.errors: list[str] = []

        def _safely(self, what, call):
            try:
                call()
            except Exception as e:  # noqa: BLE001 - see the docstring: nothing may escape into TensorRT
                if len(self.errors) < 5:
                    self.errors.append(f"{what}: {type(e).__name__}: {e}")

        def phase_start(self, phase_name, parent_phase, num_steps):
            def start():
                if not self.tasks:
                    self.bars.start()
                indent = "  " if parent_phase else ""
                self.tasks[phase_name] = self.bars.add_task(f"{indent}{phase_name}", total=num_steps)
            self._safely("phase_start", start)

        def step_complete(self, phase_name, step):
            def update():
                if phase_name in self.tasks:
                    self.bars.update(self.tasks[phase_name], completed=step + 1)
            self._safely("step_complete", update)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            def finish():
                task = self.tasks.pop(phase_name, None)
                if task is not None:
                    self.bars.remove_task(task)
                if not self.tasks:
                    self.bars.stop()
            self._safely("phase_finish", finish)

    return Monitor()


def check_target(installed: str, target: dict | None, key: str, task: str) -> dict:
    """A plan loads only in a Triton whose TensorRT is the one that built it: refuse a mismatch before
    building; without a target (manifest `triton:`), build and say which Triton the plan is for."""
    ours = triton_releases.engine_version(installed)
    if target is None:
        known = [r for r, row in triton_releases.TABLE.items() if triton_releases.engine_version(row[1]) == ours]
        where = f"Triton {', '.join(known)}" if known else "a Triton release whose TensorRT is that version"
        notice = (f"notice: {task}: built with TensorRT {installed}; the plan loads only in {where}. Set "
                  "'triton:' in the manifest to have the installed TensorRT checked against your server's")
        sys.stderr.write(notice + "\n")
        return {"triton": None, "tensorrt": installed, "checked": False, "notice": notice}
    if triton_releases.engine_version(target["tensorrt"]) != ours:
        serving = f"Triton {target['triton']} (the manifest's triton) ships" if target["triton"] else \
            "the manifest's tensorrt names"
        raise UserError(f"TensorRT {installed} is installed, but {serving} TensorRT {target['tensorrt']}: a plan built "
                        "here would not load in that server", key=f"{key}.triton",
                        fix=f"install the matching TensorRT (pip install \"{triton_releases.pip_spec(target['tensorrt'])}"
                            "\"), or build on a host or NGC container that has it, or set triton to the release you "
                            "serve with")
    return {**target, "checked": True}


def _not_the_target(device: dict, want: dict) -> str | None:
    """Why this GPU cannot build the plan of GPU target `want` ({"cc", "gpu"}), or None."""
    if device["compute_capability"] != want["cc"]:
        return f"this host's GPU is {device['name']} (compute capability {device['compute_capability']})"
    if want["gpu"] and device["name"] != want["gpu"]:
        return f"this host's GPU is {device['name']}, and the manifest pins {want['cc']} to {want['gpu']}"
    return None


def where_to_build(want: dict, target: dict) -> str:
    gpu_model = f" ({want['gpu']})" if want["gpu"] else ""
    engine = ".".join(map(str, triton_releases.engine_version(target["tensorrt"])))
    return f"a GPU host with compute capability {want['cc']}{gpu_model} and TensorRT {engine}"


def buildable_here(params: dict) -> str | None:
    """The runner asks before building a GPU target's plan (after the cache had none): None when this
    host's GPU is the target's, else why not and where to build it. Reads no more than nvidia-smi."""
    want = params["gpu_target"]
    if want is None:
        return None
    where = where_to_build(want, params["triton_target"])
    if tensorrt_version() is None:
        return f"TensorRT is not installed here; build it on {where}"
    device = gpu()
    if device is None:
        return f"no GPU is visible here; build it on {where}"
    why = _not_the_target(device, want)
    return f"{why}; build it on {where}" if why else None


def build(ctx: StepContext) -> dict:
    """Step builder (runs in its own process, see engine/step.py `isolate`)."""
    # CUDA numbers devices fastest-first by default; nvidia-smi (and so visible_gpu) in PCI bus order.
    # Set before CUDA is initialised (importing tensorrt does not; building does), so both agree.
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    trt = _import_tensorrt()
    try:
        device = visible_gpu()
    except NoVisibleGpu as e:
        raise UserError(f"no GPU to build the TensorRT plan on: {e}", key=ctx.key,
                        fix="build TensorRT plans on a host with the GPU model that will serve them") from None
    want = ctx.param("gpu_target")  # one plan of a folder with several GPU targets, or None
    if want and _not_the_target(device, want):  # the runner asked buildable_here first: a guard
        raise UserError(f"{_not_the_target(device, want)}: it cannot build the plan for compute capability "
                        f"{want['cc']}", key=f"{ctx.key}.gpu_targets",
                        fix=f"build it on {where_to_build(want, ctx.param('triton_target'))}")
    version = str(trt.__version__)
    major = int(version.split(".")[0])
    if major not in (10, 11):
        raise UserError(f"TensorRT {version} is not supported (10.x and 11.x are)", key=ctx.key,
                        fix="install TensorRT 10.x or 11.x, the same version as your Triton server's")
    target = check_target(version, ctx.param("triton_target"), ctx.key, ctx.task)
    precision, max_batch, workspace_gb = ctx.param("precision"), ctx.param("max_batch"), ctx.param("workspace_gb")
    onnx_path = ctx.input("onnx")

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # registers EfficientNMS_TRT
    builder = trt.Builder(logger)
    # Explicit batch is implicit since 10.0 (the flag is deprecated on 10, gone on 11); strongly typed
    # makes the ONNX's own FP16/FP32 types the engine's precisions on both.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT {version} could not parse {onnx_path}: {errors}", key=ctx.key,
                        fix="check the TensorRT version against the ONNX opset (17) and report the parser error")
    notes = []
    if major == 10 and precision == "fp16" and not builder.platform_has_fast_fp16:
        notes.append("this GPU has no fast FP16: the FP16 engine will be slow")

    config = builder.create_builder_config()
    # TF32 is on by default in 10.x and 11.x: the graph's FP32 parts (box decoding, NMS inputs, precision:
    # fp32 plans) would run with 10-bit mantissas. Off unless the manifest allows it.
    if not ctx.param("allow_tf32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    inp = network.get_input(0)
    shapes = profile_shapes(inp.shape, max_batch)
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)

    monitor = _progress(trt)
    config.progress_monitor = monitor
    cache_file = timing_cache_file(version, device)
    with gpu_lock(device):  # the build, and the timing cache's read, merge and write
        with file_lock(cache_file.with_name(cache_file.name + ".lock")):
            cache_bytes = cache_file.read_bytes() if cache_file.exists() else b""
        if not config.set_timing_cache(config.create_timing_cache(cache_bytes), False):
            notes.append(f"timing cache {cache_file.name} does not match this GPU or TensorRT: built without it")
            config.set_timing_cache(config.create_timing_cache(b""), False)
        plan = builder.build_serialized_network(network, config)
        if plan is not None:
            _save_timing_cache(config, cache_file)
    if plan is None:
        raise UserError(f"TensorRT {version} failed to build an engine from {onnx_path} (see its log above)",
                        key=ctx.key, fix="lower max_batch or workspace_gb if it ran out of memory")
    ctx.output().write_bytes(bytes(plan))

    engine = trt.Runtime(logger).deserialize_cuda_engine(ctx.output().read_bytes())
    if engine is None:
        raise RuntimeError("the plan just built does not deserialize")
    io = [(engine.get_tensor_name(i), str(engine.get_tensor_dtype(engine.get_tensor_name(i))),
           str(engine.get_tensor_mode(engine.get_tensor_name(i)))) for i in range(engine.num_io_tensors)]
    # The timing cache by file name, not its folder: a record is the same bytes whichever host built it.
    return {"tensorrt": version, "gpu": device["name"], "compute_capability": device["compute_capability"],
            "strongly_typed": True, "profile": {k: list(v) for k, v in shapes.items()},
            "workspace_bytes": int(workspace_gb * (1 << 30)), "onnx": str(onnx_path), "io": io,
            "timing_cache": cache_file.name, "tf32": bool(ctx.param("allow_tf32")),
            "progress_monitor_errors": monitor.errors, "notes": notes, "deserialized": True, "target": target,
            "gpu_target": want}


def _save_timing_cache(config, cache_file: Path) -> None:
    """Merge this build's timings with what is on disk now (another GPU of the same model may have added
    some), then write atomically, under the cache file's lock. Best effort: a cache that can't be written
    only costs the next build time."""
    try:
        with file_lock(cache_file.with_name(cache_file.name + ".lock")):
            ours = config.get_timing_cache()
            if cache_file.exists():
                ours.combine(config.create_timing_cache(cache_file.read_bytes()), False)
            tmp = cache_file.with_name(f".{cache_file.name}.tmp-{os.getpid()}")
            tmp.write_bytes(bytes(ours.serialize()))
            os.replace(tmp, cache_file)
    except OSError as e:
        print(f"warning: timing cache not saved to {cache_file}: {e}")
