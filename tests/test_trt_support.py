"""The static check of graphs handed to TensorRT (pipeline/tooling/trt_support.py): what TensorRT's ONNX parser
support matrix refuses is found before any GPU host sees the graph — planted in small graphs, and in a build."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers.project import make_project


def graph(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def value(name, kind, shape=(1, 4)):
    return helper.make_tensor_value_info(name, kind, list(shape))


FLOAT, DOUBLE = TensorProto.FLOAT, TensorProto.DOUBLE


def problems(model, major=10):
    from pipeline.tooling.trt_support import check

    return check(model, major)["problems"]


def test_a_supported_graph_passes_and_the_report_says_against_what():
    from pipeline.tooling.trt_support import check

    model = graph([helper.make_node("Add", ["x", "x"], ["y"]), helper.make_node("Equal", ["y", "x"], ["b"]),
                   helper.make_node("Where", ["b", "y", "x"], ["z"])], [value("x", FLOAT)], [value("z", FLOAT)])
    report = check(model, 10)
    assert report["passed"] and report["problems"] == [] and report["operators"] == {"Add": 1, "Equal": 1, "Where": 1}
    assert report["table"] == "onnx/onnx-tensorrt release/10.1-GA docs/operators.md" and report["note"] is None
    assert "no table of TensorRT 11.x is vendored" in check(model, 11)["note"]  # said, never silently another's


@pytest.mark.parametrize("case,must", [
    ("unsupported op", "does not support Compress"),
    ("unsupported dtype", "tensor 'x' is DOUBLE; the parser's Add takes"),
    ("uint8 inside", "is UINT8, which TensorRT supports only as a network input or output"),
    ("opset", "opset 21 is outside the parser's range 9 to 20"),
    ("topk", "K = 4000, the parser's TopK needs K < 3840"),
    ("custom domain", "in domain 'com.example'"),
])
def test_what_the_matrix_refuses_is_found(case, must):
    if case == "unsupported op":
        model = graph([helper.make_node("Compress", ["x", "c"], ["y"], axis=1)],
                      [value("x", FLOAT), value("c", TensorProto.BOOL, (4,))], [value("y", FLOAT)])
    elif case == "unsupported dtype":
        model = graph([helper.make_node("Add", ["x", "x"], ["y"])], [value("x", DOUBLE)], [value("y", DOUBLE)])
    elif case == "uint8 inside":
        model = graph([helper.make_node("Cast", ["x"], ["u"], to=TensorProto.UINT8),
                       helper.make_node("Cast", ["u"], ["y"], to=FLOAT)], [value("x", FLOAT)], [value("y", FLOAT)])
    elif case == "opset":
        model = graph([helper.make_node("Relu", ["x"], ["y"])], [value("x", FLOAT)], [value("y", FLOAT)], opset=21)
    elif case == "topk":
        k = numpy_helper.from_array(np.array([4000], np.int64), "k")
        model = graph([helper.make_node("TopK", ["x", "k"], ["v", "i"])], [value("x", FLOAT, (1, 5000))],
                      [value("v", FLOAT, (1, 4000)), value("i", TensorProto.INT64, (1, 4000))], [k])
    else:
        model = graph([helper.make_node("Mystery", ["x"], ["y"], domain="com.example")], [value("x", FLOAT)],
                      [value("y", FLOAT)])
        model.opset_import.append(helper.make_opsetid("com.example", 1))
    found = problems(model)
    assert any(must in p for p in found), found


def test_indices_and_comparison_results_are_not_held_to_the_data_types():
    """The matrix's types are an operator's principal type: Gather's INT64 indices, Resize's sizes and a
    comparison's BOOL output are not refused."""
    idx = numpy_helper.from_array(np.array([0, 2], np.int64), "idx")
    sizes = numpy_helper.from_array(np.array([1, 3, 8, 8], np.int64), "sizes")
    model = graph([helper.make_node("Gather", ["x", "idx"], ["g"], axis=1),
                   helper.make_node("Greater", ["g", "g"], ["b"]),
                   helper.make_node("Resize", ["img", "", "", "sizes"], ["r"], mode="nearest")],
                  [value("x", FLOAT), value("img", FLOAT, (1, 3, 4, 4))],
                  [value("b", TensorProto.BOOL, (1, 2)), value("r", FLOAT, (1, 3, 8, 8))], [idx, sizes])
    assert problems(model) == []


def test_the_vendored_table_is_what_the_script_parses():
    """The script that regenerates the tables parses the file they came from into the same table."""
    from pathlib import Path

    import importlib.util

    here = Path(__file__).resolve().parents[1] / "pipeline/tooling/data"
    spec = importlib.util.spec_from_file_location("regen", here / "onnx_tensorrt_operators.py")
    regen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regen)
    table = json.loads((here / "onnx-tensorrt-10.1-GA.json").read_text())
    row = "| Compress                  | N          |\n| Add | Y | FP32, FP16, BF16, INT32, INT64 |\n"
    parsed = regen.parse("TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20.\n" + row,
                         "release/10.1-GA")
    assert parsed["opset"] == table["opset"] == [9, 20]
    for op in ("Compress", "Add"):
        assert parsed["operators"][op]["supported"] == table["operators"][op]["supported"]
        assert parsed["operators"][op]["types"] == table["operators"][op]["types"]
    assert len(table["operators"]) > 180 and table["operators"]["TopK"]["supported"]


@pytest.mark.slow
def test_a_graph_tensorrt_would_refuse_fails_its_step_before_any_plan(tmp_path):
    """A copy of the project whose support matrix says TensorRT has no Conv: the FP16 graph's step fails with
    one paragraph naming the nodes, and no FP16 graph (nothing a GPU host would compile) is left."""
    proj = make_project(tmp_path / "proj")
    table = proj.path("pipeline/tooling/data/onnx-tensorrt-10.1-GA.json")
    data = json.loads(table.read_text())
    data["operators"]["Conv"]["supported"] = False
    table.write_text(json.dumps(data))
    proj.write("manifests/m.yaml", "defaults: {imgsz: 64, formats: [trt]}\nmodels:\n  s: {arch: yolo11n}\n")
    run = proj.doit("manifest=manifests/m.yaml", "fp16_onnx:s")
    flat = " ".join(run.text.split())
    assert run.rc != 0 and "Traceback" not in run.text
    assert "the FP16 graph would not parse in TensorRT 10.x" in flat and "does not support Conv" in flat, flat
    assert not proj.path("pytorch_models/s.fp16.onnx").exists()
    assert proj.path("pytorch_models/s.onnx").exists()  # the raw graph is fine: precision fp16, not compiled
