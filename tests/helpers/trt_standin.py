"""A STAND-IN `tensorrt` module for orchestration tests — not TensorRT, and nothing built with it is a plan.

Generated per release from the real bindings' name list (tests/data/tensorrt-api/tensorrt-VERSION.names,
made from NVIDIA's public wheels by the script beside them):
any attribute the pipeline touches that the release does not have raises AttributeError, as the real
module would, and every touched name and notable call is logged as JSON lines. Behaviour is the least
needed to drive `pipeline.tensorrt_plan.build`: a parse that reads the ONNX input shape, a "plan" of
fixed bytes, a timing cache of fixed bytes, progress-monitor callbacks.

The name lists are `strings` of the compiled extension, whose linker merges string tails ("Logger" is
stored as the tail of "ILogger"), so a name counts as present when some listed string ends with it.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

NAMES = Path(__file__).resolve().parents[1] / "data" / "tensorrt-api"
RELEASES = ("10.13.3.9", "10.16.1.11", "11.4.0.106")
PLAN_BYTES = b"STAND-IN PLAN: not a TensorRT engine\n"


def plan_bytes(gpu_name: str = "NVIDIA H200 (stand-in)", cc: str = "9.0") -> bytes:
    """What the stand-in's build_serialized_network returns on a host whose (first) GPU is this one: plans
    of different GPU targets differ, like real engines."""
    return PLAN_BYTES + f"for {gpu_name}, compute capability {cc}\n".encode()

MODULE = r'''
"""STAND-IN tensorrt {version} for tests (see tests/trt_standin.py). Not TensorRT."""
import json, os, sys, time

__version__ = "{version}"
_NAMES = set(open({names!r}).read().split())
_LOG = os.environ.get("TRT_STANDIN_LOG")


def _known(name):
    return name in _NAMES or any(n.endswith(name) for n in _NAMES)


def _log(kind, **data):
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(json.dumps({{"kind": kind, "version": __version__, "pid": os.getpid(), "argv": sys.argv,
                                 "t": time.time(), **data}}, default=repr) + "\n")


class _P:
    """A proxy: attribute names are checked against the release and logged."""
    def __init__(self, path, **fixed):
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_fixed", fixed)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if not _known(name):
            _log("missing", name=name, where=self._path)
            raise AttributeError(f"stand-in tensorrt {{__version__}}: '{{self._path}}' has no attribute '{{name}}'")
        _log("name", name=name, where=self._path)
        if name in self._fixed:
            return self._fixed[name]
        return _P(f"{{self._path}}.{{name}}")

    def __setattr__(self, name, value):
        if not _known(name):
            raise AttributeError(f"stand-in tensorrt {{__version__}}: cannot set '{{name}}'")
        _log("set", name=name, where=self._path)
        self._fixed[name] = value

    def __int__(self):
        return 3

    def __call__(self, *args, **kwargs):
        return _P(f"{{self._path}}()")


def __getattr__(name):
    if not _known(name):
        _log("missing", name=name, where="tensorrt")
        raise AttributeError(f"stand-in tensorrt {{__version__}} has no attribute '{{name}}'")
    _log("name", name=name, where="tensorrt")
    if name in _SPECIAL:
        return _SPECIAL[name]
    return _P(name)


class _IProgressMonitor:
    def __init__(self):
        pass


class _Logger:
    WARNING = 2
    def __init__(self, severity=2):
        pass


def _init_plugins(logger, namespace):
    _log("call", name="init_libnvinfer_plugins")
    return True


class _Input:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class _Network(_P):
    def __init__(self, flags):
        super().__init__("network", get_input=lambda i: self._fixed["_inputs"][i])
        self._fixed["_inputs"] = []
        _log("call", name="create_network", flags=flags)


class _Parser(_P):
    def __init__(self, network, logger):
        super().__init__("parser", parse_from_file=self._parse, num_errors=0, get_error=lambda i: "")
        object.__setattr__(self, "network", network)

    def _parse(self, path):
        import onnx
        model = onnx.load(path, load_external_data=False)
        i = model.graph.input[0]
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim)
        self.network._fixed["_inputs"].append(_Input(i.name, shape))
        _log("call", name="parse_from_file", path=path, input=i.name, shape=shape,
             dtype=onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type))
        if os.environ.get("TRT_STANDIN_PARSE_FAIL"):
            self._fixed["num_errors"] = 1
            self._fixed["get_error"] = lambda i: "In node 0 (parseGraph): UNSUPPORTED_NODE: stand-in failure"
            return False
        return True


class _Cache(_P):
    def __init__(self, data):
        super().__init__("timing_cache", serialize=lambda: b"STAND-IN TIMING CACHE", combine=self._combine)
        _log("call", name="create_timing_cache", size=len(data))

    def _combine(self, other, ignore_mismatch):
        _log("call", name="combine", ignore_mismatch=ignore_mismatch)
        return True


class _Config(_P):
    def __init__(self):
        super().__init__("config", set_memory_pool_limit=self._pool, create_timing_cache=_Cache,
                         set_timing_cache=self._set_cache,
                         add_optimization_profile=lambda p: _log("call", name="add_optimization_profile"),
                         get_timing_cache=lambda: _Cache(b""), set_flag=self._flag, clear_flag=self._clear)

    def _set_cache(self, cache, ignore_mismatch):
        # TensorRT returns False for a cache made on another device or TensorRT version
        accepted = not os.environ.get("TRT_STANDIN_CACHE_MISMATCH")
        _log("call", name="set_timing_cache", accepted=accepted, ignore_mismatch=ignore_mismatch)
        return accepted

    def _clear(self, flag):
        _log("call", name="clear_flag", flag=repr(flag))

    def _pool(self, pool, size):
        _log("call", name="set_memory_pool_limit", size=size)

    def _flag(self, flag):
        _log("call", name="set_flag", flag=repr(flag))


class _Profile(_P):
    def __init__(self):
        super().__init__("profile", set_shape=self._set)

    def _set(self, name, min, opt, max):
        _log("call", name="set_shape", input=name, min=list(min), opt=list(opt), max=list(max))


class _Builder(_P):
    def __init__(self, logger):
        super().__init__("builder", create_network=_Network, create_builder_config=_Config,
                         create_optimization_profile=_Profile, build_serialized_network=self._build,
                         platform_has_fast_fp16=True)
        _log("call", name="builder_created", cuda_device_order=os.environ.get("CUDA_DEVICE_ORDER"))

    def _build(self, network, config):
        monitor = config._fixed.get("progress_monitor")
        _log("call", name="build_serialized_network", start=time.time(), has_monitor=monitor is not None)
        if monitor is not None:
            monitor.phase_start("Building engine", None, 3)
            bad = os.environ.get("TRT_STANDIN_MONITOR_BAD_STEP")  # a value the monitor's own code chokes on
            for step in range(3):
                assert monitor.step_complete("Building engine", "not a number" if bad else step) is True
            monitor.phase_finish("Building engine")
        time.sleep(float(os.environ.get("TRT_STANDIN_BUILD_SECONDS", "0")))
        _log("call", name="build_done", end=time.time())
        return {plan!r}


class _Engine(_P):
    def __init__(self):
        super().__init__("engine", num_io_tensors=1, get_tensor_name=lambda i: "images",
                         get_tensor_dtype=lambda n: "DataType.HALF", get_tensor_mode=lambda n: "TensorIOMode.INPUT")


class _Runtime(_P):
    def __init__(self, logger):
        super().__init__("runtime", deserialize_cuda_engine=lambda data: _Engine())


_SPECIAL = {{"OnnxParser": _Parser, "Builder": _Builder, "Runtime": _Runtime, "Logger": _Logger,
            "IProgressMonitor": _IProgressMonitor, "init_libnvinfer_plugins": _init_plugins}}
'''


SMI = r'''#!{python}
"""Stand-in nvidia-smi: the two queries the pipeline makes, answered like the real one."""
import sys
GPUS = {gpus!r}
MIGS = {migs!r}
if "-L" in sys.argv:
    for i, (name, cc, uuid) in enumerate(GPUS):
        print(f"GPU {{i}}: {{name}} (UUID: {{uuid}})")
        for parent, mig in MIGS:
            if parent == uuid:
                print(f"  MIG 1g.18gb     Device  0: (UUID: {{mig}})")
elif any(a.startswith("--query-gpu=index,uuid,name,compute_cap") for a in sys.argv):
    for i, (name, cc, uuid) in enumerate(GPUS):
        print(f"{{i}}, {{uuid}}, {{name}}, {{cc}}")
else:
    sys.exit(f"stand-in nvidia-smi: unexpected arguments {{sys.argv[1:]}}")
'''


def install(site: Path, version: str, cc: str = "9.0", gpu_name: str = "NVIDIA H200 (stand-in)",
            gpus: list[tuple[str, str, str]] | None = None, migs: list[tuple[str, str]] = (),
            metadata: bool = True) -> dict:
    """A site-packages folder with the stand-in `tensorrt` (+ dist-info unless metadata=False, as system
    packages install it) and a bin folder with nvidia-smi listing `gpus` [(name, cc, uuid)]."""
    names = NAMES / f"tensorrt-{version}.names"
    pkg = site / "tensorrt"
    pkg.mkdir(parents=True, exist_ok=True)
    gpus = gpus or [(gpu_name, cc, "GPU-5ea7d1e0-0000-4000-8000-000000000000")]
    plan = plan_bytes(gpus[0][0], gpus[0][1])
    (pkg / "__init__.py").write_text(MODULE.format(version=version, names=str(names), plan=plan))
    for old in site.glob("tensorrt-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    if metadata:
        info = site / f"tensorrt-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tensorrt\nVersion: {version}\n")
    bin_dir = site.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(SMI.format(python=sys.executable, gpus=list(gpus), migs=list(migs)))
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    return {"PYTHONPATH": str(site), "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def release_names(version: str) -> set[str]:
    return set((NAMES / f"tensorrt-{version}.names").read_text().split())


def known(name: str, names: set[str]) -> bool:
    return name in names or any(n.endswith(name) for n in names)
