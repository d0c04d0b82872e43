"""TensorRT plans (the `trt` and `trt_end2end` formats, and the encoder plans) from the FP16 (or FP32) ONNX graphs,
for TensorRT 10.x and 11.x, through NVIDIA's Polygraphy (tested by NVIDIA against each TensorRT release).

NEVER EXECUTED AGAINST A REAL TENSORRT IN THIS PROJECT. TensorRT cannot be installed on any machine we
build on (its libraries download from a host nobody reaches). Polygraphy makes the TensorRT calls: the
network from the ONNX (plugins initialised, strongly typed, parser errors), the config (profile,
workspace pool, TF32, timing cache, progress monitor), the build, the deserialization and a smoke run.
What this module adds: which GPU and TensorRT may build the plan, one build per GPU at a time, the
timing cache's file (per TensorRT version and GPU model, written atomically), the stamp. What is checked,
in CI: every TensorRT name Polygraphy and this module reach on the 10.x and the 11.x path exists in that
release's real Python bindings (10.13.3, 10.16.1, 11.4.0 name lists from the public wheels), by running
both against a stand-in `tensorrt` generated from those lists, which refuses any other name; the
orchestration (profile shapes, flags, stamps, atomic writes, timing cache, locking, skipping); and, before
any of it, that TensorRT's ONNX parser supports every node of the graph (tooling/trt_support.py, in the
graph's own step). Whether TensorRT accepts the graphs and builds them is NOT known until a user runs it on
a GPU host: `pytest -m tensorrt` there (README).

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
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.errors import UserError
from ..engine.lock import file_lock, host_lock
from ..engine.paths import host_dir
from ..engine.tools import NoVisibleGpu, visible_gpu
from ..tooling import trt_progress
from ..tooling.gpu_targets import check_target, not_the_target, where_to_build

if TYPE_CHECKING:
    from ..engine.context import StepContext

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


def gpu_lock(device: dict):
    """At most one TensorRT build per physical GPU at a time, per host (keyed by the GPU's UUID, stable
    whatever CUDA_VISIBLE_DEVICES says)."""
    return host_lock(device.get("uuid") or f"gpu{device['index']}")


def _private_timing_cache(path: Path) -> tuple[Path, bytes]:
    """A copy of the host's timing cache for this build alone (Polygraphy loads it and appends this build's
    timings to it; its own file writing is not atomic), and the bytes it started from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private = path.with_name(f".{path.name}.build-{os.getpid()}")
    with file_lock(path.with_name(path.name + ".lock")):
        data = path.read_bytes() if path.exists() else b""
    private.write_bytes(data)
    return private, data


def _publish_timing_cache(private: Path, path: Path) -> None:
    """Best effort, atomically: a cache that can't be written only costs the next build time."""
    try:
        with file_lock(path.with_name(path.name + ".lock")):
            os.replace(private, path)
    except OSError as e:
        print(f"warning: timing cache not saved to {path}: {e}")


@contextlib.contextmanager
def _errors_of(logger, log: Path):
    """Polygraphy logs TensorRT's and the parser's errors ([E] lines) before it raises: kept in `log` for
    the paragraph."""
    logger.log_file = str(log)
    try:
        yield
    finally:
        logger.log_file = None


def _logged_errors(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "; ".join(line.split("]", 1)[-1].strip() for line in lines if line.startswith("[E]"))[:1500]


def _import_tensorrt():
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or OSError from missing libnvinfer
        raise UserError(f"TensorRT cannot be imported here ({type(e).__name__}: {e})",
                        fix="run TensorRT tasks on a GPU host with TensorRT 10.x or 11.x installed "
                            "(pip install tensorrt, or an NGC container matching your Triton), or drop "
                            "trt/trt_end2end from formats") from None
    return trt


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
    if want and not_the_target(device, want):  # the runner asked buildable_here first: a guard
        raise UserError(f"{not_the_target(device, want)}: it cannot build the plan for compute capability "
                        f"{want['cc']}", key=f"{ctx.key}.gpu_targets",
                        fix=f"build it on {where_to_build(want, ctx.param('triton_target'))}")
    version = str(trt.__version__)
    if int(version.split(".")[0]) not in (10, 11):
        raise UserError(f"TensorRT {version} is not supported (10.x and 11.x are)", key=ctx.key,
                        fix="install TensorRT 10.x or 11.x, the same version as your Triton server's")
    target = check_target(version, ctx.param("triton_target"), ctx.key, ctx.task)
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, EngineFromBytes, NetworkFromOnnxPath, Profile
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    from ..tooling.onnx_tools import graph_io

    onnx_path, max_batch, workspace_gb = ctx.input("onnx"), ctx.param("max_batch"), ctx.param("workspace_gb")
    (name, _, dims), *_ = graph_io(onnx_path)[0]
    shapes = profile_shapes([-1, *dims], max_batch)
    cache_file = timing_cache_file(version, device)
    private, cached = _private_timing_cache(cache_file)
    monitor = trt_progress.monitor(trt)
    made = {}

    def config(builder, network):
        # Strongly typed (below): the ONNX's own FP16/FP32 types are the engine's precisions, on 10.x and
        # 11.x alike, so no precision flag. TF32 is on by default in TensorRT: the graph's FP32 parts (box
        # decoding, NMS inputs, precision: fp32 plans) would run with 10-bit mantissas. Off unless allowed.
        made["config"] = CreateConfig(
            tf32=bool(ctx.param("allow_tf32")), profiles=[Profile().add(name, **shapes)],
            memory_pool_limits={trt.MemoryPoolType.WORKSPACE: int(workspace_gb * (1 << 30))},
            load_timing_cache=str(private), progress_monitor=monitor)(builder, network)
        return made["config"]

    G_LOGGER.module_severity = G_LOGGER.WARNING  # its progress is our bar; its warnings and errors stay
    log = ctx.output().with_name(f".{ctx.output().name}.polygraphy.log")
    try:
        with gpu_lock(device), _errors_of(G_LOGGER, log):  # one TensorRT build per GPU; errors kept
            try:
                plan = EngineBytesFromNetwork(NetworkFromOnnxPath(str(onnx_path), strongly_typed=True), config,
                                              save_timing_cache=str(private))()
            except PolygraphyException as e:
                raise UserError(f"TensorRT {version} could not parse or build {onnx_path}: "
                                f"{_logged_errors(log) or e}", key=ctx.key,
                                fix="check the TensorRT version against the ONNX opset (17); if it ran out of memory, "
                                    "lower max_batch or workspace_gb") from None
        ctx.output().write_bytes(bytes(plan))
        notes = []
        if cached and made["config"].get_timing_cache() is None:  # refused: another GPU or TensorRT made it
            notes.append(f"timing cache {cache_file.name} does not match this GPU or TensorRT: built without it; "
                         "set aside as .refused")
            cache_file.replace(cache_file.with_name(cache_file.name + ".refused"))
        elif private.read_bytes() != cached:
            _publish_timing_cache(private, cache_file)
        # The plan as Triton's TensorRT backend will load it: deserialized (plugins initialised first).
        engine = EngineFromBytes(ctx.output().read_bytes())()
        tensors = [(engine.get_tensor_name(i), str(engine.get_tensor_dtype(engine.get_tensor_name(i))),
               str(engine.get_tensor_mode(engine.get_tensor_name(i)))) for i in range(engine.num_io_tensors)]
    finally:
        for leftover in (log, private, private.with_name(private.name + ".lock")):
            leftover.unlink(missing_ok=True)
    # The timing cache by file name, not its folder: a record is the same bytes whichever host built it.
    return {"tensorrt": version, "gpu": device["name"], "compute_capability": device["compute_capability"],
            "strongly_typed": True, "profile": {k: list(v) for k, v in shapes.items()},
            "workspace_bytes": int(workspace_gb * (1 << 30)), "onnx": str(onnx_path), "io": tensors,
            "timing_cache": cache_file.name, "tf32": bool(ctx.param("allow_tf32")),
            "progress_monitor_errors": monitor.errors, "notes": notes, "deserialized": True, "target": target,
            "gpu_target": want, "built_with": "polygraphy"}
