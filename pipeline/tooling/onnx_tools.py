"""ONNX tooling in one place: every graph the pipeline writes is exported, finished and validated here.

Like Hugging Face Optimum's `exporters/onnx`: a model family declares its graph once (`GraphSpec`: input
and output names, dynamic axes, the dims to fix, how its outputs are compared with the source model
and within which tolerances — see families/), and one export path (`export_torch`) and one validation
path (`validate`) serve every family. Graph surgery and precision changes end in `finish` too: the
source's IR version and metadata kept, saved, checked by `onnx.checker` with strict shape inference.
"""
from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..engine.errors import UserError
from ..engine.threads import session_options


@dataclass(frozen=True)
class GraphSpec:
    """A family's graph, declared once.

    inputs, outputs   tensor names, in order
    compare           (got, want) -> {metric: value, ..., "passed": bool}, with the family's tolerances
    dynamic           axes that stay symbolic (default: axis 0, "batch", of every input and output)
    """
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    compare: Callable
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return self.dynamic or {name: {0: "batch"} for name in self.inputs + self.outputs}


def export_torch(module, example_inputs: tuple, spec: GraphSpec, path: Path, *, opset: int,
                 fixed_dims: dict[str, list[int]], metadata: dict[str, str]) -> dict:
    """torch.onnx.export with the TorchScript exporter (the dynamo exporter silently writes opset 18 when 17
    is asked for), then the opset check, fixed dims, metadata, save + checker.

    Exporters' warnings (e.g. torch's `aten::index` UserWarning on the text encoder) are kept out of the
    terminal and returned, for the step's record; the validation that follows is what decides.
    """
    import warnings

    import onnx
    import torch

    buffer = io.BytesIO()  # written once, after the fixes below (not exported to disk, read back, rewritten)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.onnx.export(module, example_inputs, buffer, opset_version=opset, dynamo=False,
                          do_constant_folding=True, input_names=list(spec.inputs), output_names=list(spec.outputs),
                          dynamic_axes=spec.dynamic_axes())
    model = onnx.load_from_string(buffer.getvalue())
    del buffer
    written = opset_of(model)
    if written != opset:
        raise RuntimeError(f"asked for opset {opset}, torch wrote {written}")
    for name, dims in fixed_dims.items():
        fix_dims(model, name, dims)
    set_metadata(model, metadata)
    finish(model, path)
    return {"opset": written, "exporter_warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught})}


def opset_of(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def fix_dims(model, name: str, dims: list[int | None]) -> None:
    """torch leaves non-batch output dims symbolic; Triton's config and TensorRT want them fixed.
    `dims` skips the batch axis; None leaves a dim as it is."""
    value = next(v for v in list(model.graph.input) + list(model.graph.output) if v.name == name)
    for dim, size in zip(value.type.tensor_type.shape.dim[1:], dims):
        if size is not None:
            dim.Clear()
            dim.dim_value = int(size)


def set_metadata(model, meta: dict[str, str], replace: bool = True) -> None:
    if replace:
        del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=str(v))


# TensorRT plugins that our graphs carry, in the default ONNX domain: onnxruntime knows their schema (a
# contrib op of its TensorRT execution provider) but has no CPU kernel for them; TensorRT's ONNX parser
# finds the plugin by op type, whatever the domain; onnx's checker knows them once registered below.
TENSORRT_ONLY_OPS = frozenset({"EfficientNMS_TRT"})


def finish(model, path: Path, like=None) -> None:
    """Save and check a graph; with `like`, keep that source graph's IR version and metadata first."""
    if like is not None:
        model.ir_version = like.ir_version
        set_metadata(model, {p.key: p.value for p in like.metadata_props})
    data = model.SerializeToString()  # once: the file and the checker get the same bytes
    Path(path).write_bytes(data)
    check(model, data)


def check(graph, data: bytes | None = None) -> None:
    """onnx.checker with strict shape inference, of a saved graph (path) or the ModelProto just saved (and
    its serialized bytes, when at hand). A TensorRT plugin node is checked against the plugin's interface
    (register_tensorrt_schemas): its attribute names and types, its inputs and its output types."""
    import onnx

    register_tensorrt_schemas()
    if not isinstance(graph, onnx.ModelProto):
        graph = onnx.load(str(graph))
    onnx.checker.check_model(data if data is not None else graph, full_check=True)


def register_tensorrt_schemas() -> None:
    """Teach onnx's checker and shape inference (this process only) TensorRT's EfficientNMS_TRT, version 1,
    as TensorRT declares it (plugin/efficientNMSPlugin/EfficientNMSPlugin_PluginConfig.yaml): inputs boxes,
    scores and optional anchors of one float type T; outputs num_detections (int32), detection_boxes and
    detection_scores (T), detection_classes (int32); the plugin's seven attributes with their types and
    required ones, plus the ONNX parser's plugin_version and plugin_namespace. An unknown or mistyped
    attribute, a missing required one or a wrong output type is then a checker error."""
    from onnx import defs

    if defs.has("EfficientNMS_TRT", ""):
        return
    schema, param = defs.OpSchema, defs.OpSchema.FormalParameter
    optional = defs.OpSchema.FormalParameterOption.Optional
    kinds = {"float": schema.AttrType.FLOAT, "int": schema.AttrType.INT, "string": schema.AttrType.STRING}
    attributes = [("score_threshold", "float", True), ("iou_threshold", "float", True), ("max_output_boxes", "int", True),
                  ("background_class", "int", True), ("score_activation", "int", True), ("box_coding", "int", True),
                  ("class_agnostic", "int", False), ("plugin_version", "string", False),
                  ("plugin_namespace", "string", False)]
    defs.register_schema(schema(
        "EfficientNMS_TRT", "", 1, "TensorRT's EfficientNMS plugin (runs only in TensorRT or onnxruntime's TensorRT "
                                   "execution provider)",
        inputs=[param("boxes", "T"), param("scores", "T"), param("anchors", "T", param_option=optional)],
        outputs=[param("num_detections", "tensor(int32)"), param("detection_boxes", "T"),
                 param("detection_scores", "T"), param("detection_classes", "tensor(int32)")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "boxes, scores and anchors")],
        attributes=[schema.Attribute(name, kinds[kind], "", required=required) for name, kind, required in attributes]))


def onnxruntime_schema(path: Path) -> str:
    """What Triton's onnxruntime backend does first: create a plain onnxruntime session of the graph. A graph
    whose only problem is a TensorRT-only node without a CPU kernel is valid there (onnxruntime's TensorRT
    execution provider takes that node); anything else onnxruntime refuses is an error."""
    import onnxruntime as ort

    opts = session_options()
    try:
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return "plain onnxruntime loads it"
    except Exception as e:  # onnxruntime raises its own pybind exception types
        message = str(e)
    missing = [op for op in TENSORRT_ONLY_OPS if f"Could not find an implementation for {op}" in message]
    if "NOT_IMPLEMENTED" in message and missing:
        return (f"valid for onnxruntime; no CPU kernel for {', '.join(missing)}: it runs with onnxruntime's "
                "TensorRT execution provider")
    raise RuntimeError(f"plain onnxruntime refuses {path}, as Triton's onnxruntime backend would: {message}")


def export_like(graph, like):
    """A graphsurgeon graph back to a ModelProto with the IR version and metadata of `like` (graphsurgeon
    drops the metadata: the untrained marker, class names...)."""
    import onnx_graphsurgeon as gs

    out = gs.export_onnx(graph)
    out.ir_version = like.ir_version
    set_metadata(out, {p.key: p.value for p in like.metadata_props})
    return out


def appended_head(full, base):
    """The part of `full` that was appended to `base`, as a graph of its own whose inputs are `base`'s outputs.

    `full` must contain `base` exactly: the same graph inputs, every node of `base` (operator, domain,
    wiring, attributes) and every weight byte for byte. Running the returned head on `base`'s outputs
    then computes what `full` computes on `base`'s inputs. ValueError names the first difference, or a
    head node that reads a tensor from inside `base`."""
    from collections import Counter

    from onnx import helper

    fg, bg = full.graph, base.graph
    if [(v.name, v.type.SerializeToString()) for v in fg.input] != \
            [(v.name, v.type.SerializeToString()) for v in bg.input]:
        raise ValueError("its inputs are not those of the graph it was made from")
    unmatched = Counter(_node_key(n) for n in bg.node)
    head = []
    for node in fg.node:
        key = _node_key(node)
        if unmatched[key]:
            unmatched[key] -= 1
        else:
            head.append(node)
    missing = [k for k, n in unmatched.items() if n]
    if missing:
        op, _, inputs, outputs, _ = missing[0]
        raise ValueError(f"{len(missing)} node(s) of the graph it was made from are missing or changed "
                         f"(first: {op} {list(inputs)} -> {list(outputs)})")
    weights = {t.name: t for t in fg.initializer}
    for t in bg.initializer:
        if t.name not in weights or not _same_tensor(weights[t.name], t):
            raise ValueError(f"the weight '{t.name}' differs from the graph it was made from")
    base_weights = {t.name for t in bg.initializer}
    head_weights = [t for name, t in weights.items() if name not in base_weights]
    available = {v.name for v in bg.output} | {t.name for t in head_weights} | {""}
    for node in head:
        inside = [name for name in node.input if name not in available]
        if inside:
            raise ValueError(f"the appended node {node.name or node.op_type} reads '{inside[0]}' from inside the "
                             "graph it was made from (only its outputs may be read)")
        available.update(node.output)
    graph = helper.make_graph(head, fg.name + "/appended", list(bg.output), list(fg.output), head_weights)
    return helper.make_model(graph, opset_imports=list(full.opset_import), ir_version=full.ir_version)


def _node_key(node) -> tuple:
    """What a node computes and how it is wired; its name and doc string change nothing."""
    return (node.op_type, node.domain, tuple(node.input), tuple(node.output),
            tuple(sorted((a.name, _attribute_key(a)) for a in node.attribute)))


def _attribute_key(attribute):
    import onnx
    from onnx import helper

    value = helper.get_attribute_value(attribute)
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        if isinstance(v, onnx.TensorProto):
            v = (v.data_type, tuple(v.dims), _tensor_bytes(v))
        elif isinstance(v, (onnx.GraphProto, onnx.TypeProto, onnx.SparseTensorProto)):
            v = v.SerializeToString(deterministic=True)
        out.append(v)
    return (attribute.type, tuple(out))


def _tensor_bytes(tensor) -> bytes:
    from onnx import numpy_helper

    return tensor.raw_data if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).tobytes()


def _same_tensor(a, b) -> bool:
    return a.data_type == b.data_type and list(a.dims) == list(b.dims) and _tensor_bytes(a) == _tensor_bytes(b)


def convert_fp16(model, keep_io_types, node_block_list=None):
    """onnxruntime's float16 converter (the onnxconverter-common code shipped inside onnxruntime), then
    topological order (it appends the Casts it inserts at the end of the node list) and the source's IR
    version and metadata."""
    import onnx_graphsurgeon as gs
    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp16 = convert_float_to_float16(model, keep_io_types=keep_io_types, node_block_list=node_block_list)
    return export_like(gs.import_onnx(fp16).cleanup().toposort(), model)  # no dead Cast the converter left


def input_dtype(model):
    """NumPy dtype of the graph's first input."""
    import numpy as np
    import onnx

    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(model.graph.input[0].type.tensor_type.elem_type))


def graph_io(path: Path) -> tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    """[(name, ONNX dtype name, dims without batch)] of inputs and outputs, weights not loaded."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim][1:]
            out.append((v.name, onnx.TensorProto.DataType.Name(t.elem_type), dims))
        return out

    initializers = {i.name for i in graph.initializer}
    return describe([i for i in graph.input if i.name not in initializers]), describe(graph.output)


_RESULTS: OrderedDict = OrderedDict()  # (graph SHA-256, feeds digest, level) -> outputs, the last few only
_KEEP = 4


def run(path: Path, feeds: dict, basic_optimizations: bool = False):
    """One onnxruntime CPU run. `basic_optimizations`: onnxruntime 1.32's extended graph optimizations
    crash (SIGSEGV) on the FP16 MobileCLIP2 text graph; the basic level runs it.

    The same graph (by content) on the same inputs is run once per process: a step checking the raw graph
    and the next one checking the End2End graph built from it need its outputs on the same images."""
    import hashlib

    import onnxruntime as ort

    from ..engine.hashing import sha256

    key = (sha256(path), basic_optimizations, tuple(
        (name, a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest()) for name, a in sorted(feeds.items())))
    if key in _RESULTS:
        _RESULTS.move_to_end(key)
        return [a.copy() for a in _RESULTS[key]]
    opts = session_options()
    if basic_optimizations:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = sess.run(None, feeds)
    _RESULTS[key] = [a.copy() for a in out]
    while len(_RESULTS) > _KEEP:
        _RESULTS.popitem(last=False)
    return out


def run_model(model, feeds: dict):
    """One onnxruntime CPU run of an in-memory graph (a part cut out of a written one, say)."""
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), session_options(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)


def validate(path: Path, spec: GraphSpec, cases: list[tuple[dict, list]], *, what: str, key: str) -> list[dict]:
    """Run the graph on each case's feeds and compare each output with the source model's (`want`) by the
    family's declared `compare`; one report per case and output. Disagreement is a one-paragraph error."""
    reports = []
    for feeds, want in cases:
        got = run(path, feeds)
        for name, g, w in zip(spec.outputs, got, want):
            if g.shape != w.shape:
                raise RuntimeError(f"{what}: output {name} has shape {g.shape}, the source model {w.shape}")
            report = {"output": name, "batch": int(g.shape[0]), **spec.compare(g, w)}
            reports.append(report)
            if not report["passed"]:
                metrics = ", ".join(f"{k} {v:.3g}" for k, v in report.items() if isinstance(v, float))
                raise UserError(f"the exported {what} disagrees with its source model at batch {report['batch']} "
                                f"({metrics})", key=key,
                                fix="report this with the checkpoint; another opset in the manifest may avoid it")
    return reports
