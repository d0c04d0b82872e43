"""config.pbtxt through Triton's own ModelConfig protobuf, from the artifact's real I/O; and labels.txt.

The I/O (names, dtypes, dims without the batch dim) is read from the model file itself, so the config
cannot drift from the graph. The text is parsed back into a ModelConfig before it is published.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError
from .runner import StepContext

PREFERRED = (8, 16, 32, 64)  # the seed's preferred batch sizes, capped at max_batch


def onnx_io(path: Path) -> tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    """[(name, TYPE_*, dims without batch)] for inputs and outputs of an ONNX graph, weights not loaded."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim][1:]
            out.append((v.name, "TYPE_" + _TRITON_DTYPE[onnx.TensorProto.DataType.Name(t.elem_type)], dims))
        return out

    initializers = {i.name for i in graph.initializer}
    return describe([i for i in graph.input if i.name not in initializers]), describe(graph.output)


_TRITON_DTYPE = {"FLOAT": "FP32", "FLOAT16": "FP16", "DOUBLE": "FP64", "INT32": "INT32", "INT64": "INT64",
                 "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL", "BFLOAT16": "BF16", "INT16": "INT16"}


def build_config(name: str, platform: str, inputs, outputs, settings: dict, untrained: bool):
    from google.protobuf import text_format  # noqa: F401  (protobuf is tritonclient's dependency)
    from tritonclient.grpc import model_config_pb2 as mc

    cfg = mc.ModelConfig(name=name, platform=platform, max_batch_size=settings["max_batch"])
    for io_name, dtype, dims in inputs:
        cfg.input.add(name=io_name, data_type=mc.DataType.Value(dtype), dims=dims)
    for io_name, dtype, dims in outputs:
        cfg.output.add(name=io_name, data_type=mc.DataType.Value(dtype), dims=dims)
    db = settings["dynamic_batching"]
    sizes = db["preferred_batch_sizes"] or [s for s in PREFERRED if s <= settings["max_batch"]] or [
        settings["max_batch"]]
    cfg.dynamic_batching.preferred_batch_size.extend(sizes)
    cfg.dynamic_batching.max_queue_delay_microseconds = db["max_queue_delay_us"]
    group = settings["instance_group"]
    cfg.instance_group.add(count=group["count"], kind=mc.ModelInstanceGroup.Kind.Value(f"KIND_{group['kind'].upper()}"))
    if untrained:
        # Random weights: say so where an operator looking at the repository will see it.
        cfg.parameters["untrained_random_weights"].string_value = "true"
    return cfg


def write_config(ctx: StepContext) -> dict:
    """Step builder: config.pbtxt for the Triton folder of ctx.model and format ctx.params['format']."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    p = ctx.params["params"]
    artifact = ctx.inputs[0]
    if artifact.suffix != ".onnx":
        raise RuntimeError(f"no I/O reader for {artifact}")
    inputs, outputs = onnx_io(artifact)
    cfg = build_config(p["folder"], p["platform"], inputs, outputs, ctx.settings, bool(ctx.model.get("untrained")))
    text = text_format.MessageToString(cfg)
    again = text_format.Parse(text, mc.ModelConfig())  # what Triton will read
    if again != cfg:
        raise RuntimeError("config.pbtxt does not round-trip through ModelConfig")
    ctx.out().write_text(text)
    return {"inputs": [list(i) for i in inputs], "outputs": [list(o) for o in outputs]}


def write_labels(ctx: StepContext) -> dict:
    """Step builder: labels.txt, one class name per line in class-id order, from the checkpoint record."""
    names = json.loads(ctx.inputs[0].read_text())["verification"]["names"]
    bad = [n for n in names if "\n" in n or not n.strip()]
    if bad:
        raise UserError(f"class name {bad[0]!r} cannot be a line of labels.txt", key=f"{ctx.model['key']}.class_names",
                        fix="use non-empty names without line breaks")
    ctx.out().write_text("".join(f"{n}\n" for n in names))
    return {"classes": len(names)}
