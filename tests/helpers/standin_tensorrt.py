"""STAND-IN `tensorrt` for orchestration tests (installed by tests/helpers/trt_standin.py). Not TensorRT.

Every attribute the pipeline or Polygraphy reads or sets is checked against the release's real binding
names (`_NAMES`): a name the release lacks raises AttributeError, as the real module would, and every
touched name and notable call is logged as JSON lines. Behaviour is the least needed to drive
`pipeline/builders/tensorrt_plan.py` through Polygraphy: a parse that reads the ONNX's inputs, a "plan"
of fixed bytes, a timing cache of fixed bytes, progress-monitor callbacks. `__version__`, `_NAMES_FILE`
and `_PLAN` are written above this text when it is installed.
"""
import json
import os
import sys
import time

_NAMES = set(open(_NAMES_FILE).read().split())  # noqa: F821 (written by the installer)
_LOG = os.environ.get("TRT_STANDIN_LOG")


def _known(name):
    """The release's name list holds `strings` of the compiled extension, whose linker merges string tails
    ("Logger" is stored as the tail of "ILogger"): a name counts as present when a listed one ends with it."""
    return name in _NAMES or any(n.endswith(name) for n in _NAMES)


def _log(kind, **data):
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(json.dumps({"kind": kind, "version": __version__, "pid": os.getpid(), "argv": sys.argv,
                                "t": time.time(), **data}, default=repr) + "\n")


_log("call", name="imported")


def _check(name, where):
    if not _known(name):
        _log("missing", name=name, where=where)
        raise AttributeError(f"stand-in tensorrt {__version__}: '{where}' has no attribute '{name}'")
    _log("name", name=name, where=where)


class _P:
    """A proxy: attribute names are checked against the release and logged; `fixed` holds behaviour."""

    def __init__(self, path, **fixed):
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_fixed", fixed)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        _check(name, self._path)
        if name in self._fixed:
            return self._fixed[name]
        return _P(f"{self._path}.{name}")

    def __setattr__(self, name, value):
        if not _known(name):
            raise AttributeError(f"stand-in tensorrt {__version__}: cannot set '{name}'")
        _log("set", name=name, where=self._path, value=value)
        self._fixed[name] = value

    def __int__(self):
        return 3

    def __repr__(self):
        return self._path

    def __call__(self, *args, **kwargs):
        return _P(f"{self._path}()")


class _Enum(_P):
    """An enum: members are proxies named after themselves (equal by name), `__members__` lists those the
    release has of a few real member names."""

    def __init__(self, name, members):
        super().__init__(name)
        object.__setattr__(self, "_members", [m for m in members if _known(m)])

    def __getattr__(self, name):
        if name == "__members__":
            return {m: _Member(f"{self._path}.{m}") for m in self._members}
        if name.startswith("__"):
            raise AttributeError(name)
        _check(name, self._path)
        return _Member(f"{self._path}.{name}")


class _Member(_P):
    def __eq__(self, other):
        return isinstance(other, _Member) and other._path == self._path

    def __hash__(self):
        return hash(self._path)

    def __int__(self):
        return abs(hash(self._path)) % 16


_ENUMS = {
    "BuilderFlag": ["FP16", "BF16", "INT8", "TF32", "REFIT", "STRIP_PLAN", "DIRECT_IO", "SPARSE_WEIGHTS",
                    "STRONGLY_TYPED", "VERSION_COMPATIBLE"],
    "NetworkDefinitionCreationFlag": ["EXPLICIT_BATCH", "STRONGLY_TYPED"],
    "MemoryPoolType": ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM", "TACTIC_DRAM"],
    "TacticSource": ["CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"],
    "PreviewFeature": ["PROFILE_SHARING_0806", "ALIASED_PLUGIN_IO_10_03"],
    "DeviceType": ["GPU", "DLA"],
    "ProfilingVerbosity": ["LAYER_NAMES_ONLY", "DETAILED", "NONE"],
    "EngineCapability": ["STANDARD", "SAFETY", "DLA_STANDALONE"],
    "OnnxParserFlag": ["NATIVE_INSTANCENORM"],
    "TensorIOMode": ["NONE", "INPUT", "OUTPUT"],
    "DataType": ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "INT64"],
}


def __getattr__(name):
    _check(name, "tensorrt")
    if name in _SPECIAL:
        return _SPECIAL[name]
    if name in _ENUMS:
        return _Enum(name, _ENUMS[name])
    return _P(name)


class _ILogger:
    """Subclassed by Polygraphy's logger (a pybind11 trampoline in the real module)."""

    def __init__(self):
        pass


class _Logger(_ILogger):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

    def __init__(self, severity=2):
        super().__init__()


class _IProgressMonitor:
    def __init__(self):
        pass


def _init_plugins(logger, namespace):
    _log("call", name="init_libnvinfer_plugins")
    return True


class _Tensor(_P):
    def __init__(self, name, shape, dtype):
        super().__init__(f"tensor {name}", name=name, shape=shape, dtype=dtype, is_shape_tensor=False)


class _Network(_P):
    def __init__(self, flags):
        inputs = []
        super().__init__("network", get_input=lambda i: inputs[i], get_flag=lambda flag: False,
                         _inputs=inputs)
        _log("call", name="create_network", flags=flags)

    def __getattr__(self, name):
        if name == "num_inputs":
            _check(name, self._path)
            return len(self._fixed["_inputs"])
        if name == "num_outputs" or name == "num_layers":
            _check(name, self._path)
            return 0
        return super().__getattr__(name)

    def __iter__(self):  # its layers (Polygraphy looks for Q/DQ and precisions)
        return iter(())


class _Parser(_P):
    def __init__(self, network, logger):
        super().__init__("parser", parse_from_file=self._parse, num_errors=0, get_error=lambda i: "",
                         clear_flag=lambda flag: None)
        object.__setattr__(self, "network", network)

    def _parse(self, path):
        import onnx
        model = onnx.load(path, load_external_data=False)
        for i in model.graph.input:
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim)
            self.network._fixed["_inputs"].append(_Tensor(i.name, shape, "DataType.FLOAT"))
            _log("call", name="parse_from_file", path=path, input=i.name, shape=shape,
                 dtype=onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type))
        if os.environ.get("TRT_STANDIN_PARSE_FAIL"):
            self._fixed["num_errors"] = 1
            self._fixed["get_error"] = lambda i: "In node 0 (parseGraph): UNSUPPORTED_NODE: stand-in failure"
            return False
        return True


class _HostMemory(bytes):
    """IHostMemory: bytes-like, and a context manager (Polygraphy writes it inside `with`)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Cache(_P):
    def __init__(self, data):
        super().__init__("timing_cache", serialize=lambda: _HostMemory(b"STAND-IN TIMING CACHE"),
                         combine=self._combine)
        _log("call", name="create_timing_cache", size=len(data))

    def _combine(self, other, ignore_mismatch):
        _log("call", name="combine", ignore_mismatch=ignore_mismatch)
        return True


class _Config(_P):
    def __init__(self):
        state = {"cache": None, "flags": set(), "pools": {}, "profiles": 0}
        super().__init__("config", set_memory_pool_limit=self._pool,
                         get_memory_pool_limit=lambda pool: state["pools"].get(pool, 0),
                         create_timing_cache=_Cache, set_timing_cache=self._set_cache,
                         add_optimization_profile=self._profile, get_timing_cache=lambda: state["cache"],
                         set_flag=self._flag, clear_flag=self._clear, get_flag=lambda f: f in state["flags"],
                         get_tactic_sources=lambda: 0, get_preview_feature=lambda f: False, DLA_core=-1,
                         default_device_type=_Member("DeviceType.GPU"), int8_calibrator=None,
                         _state=state)

    def __getattr__(self, name):
        if name == "num_optimization_profiles":
            _check(name, self._path)
            return self._fixed["_state"]["profiles"]
        return super().__getattr__(name)

    def _profile(self, profile):
        self._fixed["_state"]["profiles"] += 1
        _log("call", name="add_optimization_profile")
        return 0

    def _set_cache(self, cache, ignore_mismatch):
        # TensorRT returns False for a cache made on another device or TensorRT version, and keeps none
        accepted = not os.environ.get("TRT_STANDIN_CACHE_MISMATCH")
        self._fixed["_state"]["cache"] = cache if accepted else None
        _log("call", name="set_timing_cache", accepted=accepted, ignore_mismatch=ignore_mismatch)
        return accepted

    def _clear(self, flag):
        self._fixed["_state"]["flags"].discard(flag)
        _log("call", name="clear_flag", flag=repr(flag))

    def _pool(self, pool, size):
        self._fixed["_state"]["pools"][pool] = size
        _log("call", name="set_memory_pool_limit", size=size)

    def _flag(self, flag):
        self._fixed["_state"]["flags"].add(flag)
        _log("call", name="set_flag", flag=repr(flag))


class _Profile(_P):
    def __init__(self):
        super().__init__("profile", set_shape=self._set)

    def _set(self, name, min, opt, max):
        _log("call", name="set_shape", input=name, min=list(min), opt=list(opt), max=list(max))


class _Builder(_P):
    def __init__(self, logger):
        super().__init__("builder", create_network=lambda flags=0: _Network(flags), create_builder_config=_Config,
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
        return _HostMemory(_PLAN)  # noqa: F821


class _Engine(_P):
    def __init__(self):
        super().__init__("engine", num_io_tensors=1, get_tensor_name=lambda i: "images",
                         get_tensor_dtype=lambda n: "DataType.HALF", get_tensor_mode=lambda n: "TensorIOMode.INPUT")

    def __bool__(self):
        return True


class _Runtime(_P):
    def __init__(self, logger):
        super().__init__("runtime", deserialize_cuda_engine=self._deserialize)

    def _deserialize(self, data):
        _log("call", name="deserialize_cuda_engine", size=len(bytes(data)))
        return _Engine()


_SPECIAL = {"OnnxParser": _Parser, "Builder": _Builder, "Runtime": _Runtime, "Logger": _Logger, "ILogger": _ILogger,
            "IProgressMonitor": _IProgressMonitor, "init_libnvinfer_plugins": _init_plugins}
