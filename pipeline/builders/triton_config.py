"""config.pbtxt through Triton's own ModelConfig protobuf, from the artifact's real I/O.

The I/O (names, dtypes, dims without the batch dim) is read from the model file itself, so the config
cannot drift from the graph. The text is parsed back into a ModelConfig before it is published.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..tooling.onnx_tools import graph_io

if TYPE_CHECKING:
    from ..engine.context import StepContext

PREFERRED = (8, 16, 32, 64)  # the documented preferred batch sizes, capped at max_batch
TRITON_DTYPE = {"FLOAT": "FP32", "FLOAT16": "FP16", "DOUBLE": "FP64", "INT32": "INT32", "INT64": "INT64",
                "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL", "BFLOAT16": "BF16", "INT16": "INT16"}


def triton_io(values) -> list[tuple[str, str, list[int]]]:
    return [(name, "TYPE_" + TRITON_DTYPE[dtype], dims) for name, dtype, dims in values]


def build_config(name: str, platform: str, inputs, outputs, *, max_batch: int, dynamic_batching: dict,
                 instance_group: dict, untrained: bool, tensorrt_accelerator: dict | None = None,
                 cc_model_filenames: dict[str, str] | None = None):
    from tritonclient.grpc import model_config_pb2 as mc

    cfg = mc.ModelConfig(name=name, platform=platform, max_batch_size=max_batch)
    for io_name, dtype, dims in inputs:
        cfg.input.add(name=io_name, data_type=mc.DataType.Value(dtype), dims=dims)
    for io_name, dtype, dims in outputs:
        cfg.output.add(name=io_name, data_type=mc.DataType.Value(dtype), dims=dims)
    sizes = dynamic_batching["preferred_batch_sizes"] or [s for s in PREFERRED if s <= max_batch] or [max_batch]
    cfg.dynamic_batching.preferred_batch_size.extend(sizes)
    cfg.dynamic_batching.max_queue_delay_microseconds = dynamic_batching["max_queue_delay_us"]
    cfg.instance_group.add(count=instance_group["count"],
                           kind=mc.ModelInstanceGroup.Kind.Value(f"KIND_{instance_group['kind'].upper()}"))
    if tensorrt_accelerator is not None:
        # onnxruntime's TensorRT execution provider: the only one that runs a TensorRT plugin node.
        accelerator = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        for key, value in tensorrt_accelerator.items():
            accelerator.parameters[key] = value
    if cc_model_filenames:
        # One plan per GPU architecture: Triton's TensorRT backend loads the one named for the GPU's compute
        # capability. No default_model_filename: a GPU outside the targets fails to load, by name.
        for cc, filename in cc_model_filenames.items():
            cfg.cc_model_filenames[cc] = filename
    if untrained:
        # Random weights: say so where an operator looking at the repository will see it.
        cfg.parameters["untrained_random_weights"].string_value = "true"
    return cfg


def write_config(ctx: StepContext) -> dict:
    """Step builder: config.pbtxt of one Triton folder, from the I/O of the graph its model file is made of."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    graph = ctx.input("graph")
    if graph.suffix != ".onnx":
        raise RuntimeError(f"no I/O reader for {graph}")
    inputs, outputs = (triton_io(v) for v in graph_io(graph))
    cfg = build_config(ctx.param("folder"), ctx.param("platform"), inputs, outputs, max_batch=ctx.param("max_batch"),
                       dynamic_batching=ctx.param("dynamic_batching"), instance_group=ctx.param("instance_group"),
                       untrained=ctx.param("untrained"), tensorrt_accelerator=ctx.param("tensorrt_accelerator"),
                       cc_model_filenames=ctx.param("cc_model_filenames"))
    text = text_format.MessageToString(cfg)
    again = text_format.Parse(text, mc.ModelConfig())  # what Triton will read
    if again != cfg:
        raise RuntimeError("config.pbtxt does not round-trip through ModelConfig")
    ctx.output().write_text(text)
    return {"inputs": [list(i) for i in inputs], "outputs": [list(o) for o in outputs]}
