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

    monitor = trt_progress.monitor(trt)
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
