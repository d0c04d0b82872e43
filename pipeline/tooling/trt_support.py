"""A static check of a graph handed to TensorRT: every node against TensorRT's ONNX parser support matrix.

No TensorRT runs here, so this is what can be known before a GPU host sees the graph: each node's operator
is one the parser supports (onnx/onnx-tensorrt's docs/operators.md, vendored in data/ with the script that
regenerates it), in the opset range it states, on tensor types it lists for that operator; UINT8 only at
the network's edges; a plugin node (EfficientNMS_TRT) is held to the plugin's declared interface by
onnx's checker instead (onnx_tools.register_tensorrt_schemas). `K` of a TopK under the parser's limit.

Which table: the newest vendored one of the targeted TensorRT major, else the newest older one — said in
the report. Vendored: onnx-tensorrt release/10.1-GA (the newest this project's sources reach); 11.x's
tables are regenerated with `python pipeline/tooling/data/onnx_tensorrt_operators.py release/11.5-GA`.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

DATA_FILES = ("data/onnx-tensorrt-10.1-GA.json",)
TABLES = {(10, 1): "data/onnx-tensorrt-10.1-GA.json"}  # (major, minor) of the parser -> its table
PLUGINS = ("EfficientNMS_TRT",)  # nodes TensorRT finds as plugins by op type (interface: onnx_tools)
TOPK_MAX = 3840  # "`K` input must be less than 3840" (TopK's restriction in the table)


def table_for(major: int) -> tuple[dict, str | None]:
    """(the table, a note when it is not the targeted major's own)."""
    ours = max((v for v in TABLES if v[0] == major), default=None)
    chosen = ours or max((v for v in TABLES if v[0] <= major), default=min(TABLES))
    table = json.loads((Path(__file__).parent / TABLES[chosen]).read_text())
    note = None if ours else (f"no table of TensorRT {major}.x is vendored; checked against {table['source']} (the "
                              f"newest here) — regenerate with pipeline/tooling/data/onnx_tensorrt_operators.py")
    return table, note


def _typed(node, opset: int):
    """(tensor, whether the matrix's types apply to it) for each input and output of the node. The matrix's
    "Supported Types" are those of the operator's principal type (its schema's first type constraint: the
    data, not Gather's indices, Resize's sizes or a comparison's BOOL result); a Cast's both sides."""
    from onnx import defs

    try:
        schema = defs.get_schema(node.op_type, opset, "")
    except Exception:  # not a standard operator: every tensor is held to the matrix
        yield from ((name, True) for name in [*node.input, *node.output])
        return
    principal = {c.type_param_str for c in schema.type_constraints[:1]}
    if node.op_type in ("Cast", "CastLike"):
        principal = {c.type_param_str for c in schema.type_constraints}
    for names, formal in ((node.input, schema.inputs), (node.output, schema.outputs)):
        for i, name in enumerate(names):
            param = formal[min(i, len(formal) - 1)] if formal else None  # variadic: the last formal parameter
            yield name, param is not None and param.type_str in principal


def check(model, major: int) -> dict:
    """The report of a graph (ModelProto) against the support matrix of TensorRT `major`; `problems` lists
    every node TensorRT's parser would refuse, one line each."""
    import onnx
    from onnx import TensorProto, numpy_helper

    from .onnx_tools import opset_of, register_tensorrt_schemas

    register_tensorrt_schemas()
    table, note = table_for(major)
    ops = table["operators"]
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    graph = inferred.graph
    dtype = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    dtype.update({t.name: t.data_type for t in graph.initializer})
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                constants[node.output[0]], dtype[node.output[0]] = value, value.data_type
    edges = {v.name for v in (*graph.input, *graph.output)}
    problems = []
    opset = opset_of(model)
    low, high = table["opset"]
    if not low <= opset <= high:
        problems.append(f"the graph's opset {opset} is outside the parser's range {low} to {high}")
    for node in graph.node:
        where = f"{node.op_type} node '{node.name or node.output[0]}'"
        if node.op_type in PLUGINS:
            continue
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where} is in domain '{node.domain}', which TensorRT's parser does not import")
            continue
        row = ops.get(node.op_type)
        if row is None or not row["supported"]:
            problems.append(f"{where}: TensorRT's ONNX parser does not support {node.op_type}"
                            + ("" if row else " (not in its support matrix)"))
            continue
        allowed = set(row["types"])
        for name, principal in _typed(node, opset):
            if not name or name not in dtype:
                continue
            kind = TensorProto.DataType.Name(dtype[name])
            if kind == "UINT8" and name not in edges:
                problems.append(f"{where}: tensor '{name}' is UINT8, which TensorRT supports only as a network "
                                "input or output")
            elif principal and allowed and kind not in allowed and kind != "UINT8":
                problems.append(f"{where}: tensor '{name}' is {kind}; the parser's {node.op_type} takes "
                                f"{', '.join(sorted(allowed))}")
        if node.op_type == "TopK" and len(node.input) > 1 and node.input[1] in constants:
            k = int(numpy_helper.to_array(constants[node.input[1]]).ravel()[0])
            if k >= TOPK_MAX:
                problems.append(f"{where}: K = {k}, the parser's TopK needs K < {TOPK_MAX}")
    used = Counter(n.op_type for n in graph.node)
    return {"table": table["source"], "for_tensorrt": f"{major}.x", "note": note, "opset": opset,
            "nodes": len(graph.node), "operators": dict(sorted(used.items())),
            "plugins": sorted(op for op in used if op in PLUGINS), "problems": problems, "passed": not problems}


def require(model, majors: list[int] | None, *, what: str, key: str) -> dict | None:
    """The check for each TensorRT major the graph is for (None: not a plan's source): the reports, for the
    graph's record, or one paragraph naming every node the parser would refuse."""
    from ..engine.errors import UserError

    if not majors:
        return None
    reports = {f"{m}.x": check(model, m) for m in majors}
    problems = [p for r in reports.values() for p in r["problems"]]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise UserError(f"the {what} would not parse in TensorRT {', '.join(reports)} ({reports[next(iter(reports))]['table']}): "
                        f"{shown}", key=key,
                        fix="use an opset and operators TensorRT supports (opset 17 for the families here), or drop the "
                            "TensorRT formats for this model")
    return reports


def majors(target: dict | None) -> list[int]:
    """The TensorRT majors a plan source is checked for: the serving Triton's, else every vendored table's."""
    if target and target.get("tensorrt"):
        return [int(str(target["tensorrt"]).split(".")[0])]
    return sorted({v[0] for v in TABLES})
