"""End2End ONNX (EfficientNMS_TRT) and the FP16 graphs: verified for meaning, not only shape."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.detecting import make_detecting_checkpoint

pytestmark = pytest.mark.slow

IMGSZ = 320
MANIFEST = """\
defaults: {{formats: [onnx, onnx_end2end, trt, trt_end2end], imgsz: {imgsz}, max_batch: 16}}
models:
  street: {{pt_file: {street}}}
  single: {{pt_file: {single}, topk: 50, normalize_boxes: false}}
  agnostic: {{pt_file: {street}, triton_name: agnostic, class_agnostic: true, iou: 0.5, precision: fp32,
             formats: [onnx, trt_end2end]}}
"""
# class_agnostic graphs are for TensorRT only (onnxruntime's schema has no class_agnostic): the FP32
# End2End graph of a trt_end2end model is the one to check.


@pytest.fixture(scope="module")
def built(tmp_path_factory, yolo_env):
    from helpers.project import make_project

    d = tmp_path_factory.mktemp("e2e")
    street = make_detecting_checkpoint(d / "street.pt", ["car", "truck", "bus", "bike", "person"], imgsz=IMGSZ)
    single = make_detecting_checkpoint(d / "single.pt", ["defect"], imgsz=IMGSZ, seed=3, logit_bias=5.0)
    proj = make_project(d / "proj")
    proj.write("manifests/m.yaml", MANIFEST.format(imgsz=IMGSZ, street=street, single=single))
    run = proj.doit("manifest=manifests/m.yaml")  # agnostic's FP32 End2End graph too: a plan's source, built
    assert run.rc == 0, run.text                   # where no TensorRT is, like the FP16 graphs, for GPU hosts
    assert "end2end_onnx:agnostic" in run.executed
    proj.ckpt = {"street": street, "single": single, "agnostic": street}
    return proj


def images(batch=3, seed=7):
    return np.random.default_rng(seed).random((batch, 3, IMGSZ, IMGSZ), dtype=np.float32)


def e2e(built, name, x, path=None):
    from pipeline.tooling.efficient_nms import cpu_session

    path = path or built.path("pytorch_models/agnostic_end2end.onnx" if name == "agnostic"
                              else f"models/{name}_end2end/1/model.onnx")
    return cpu_session(path).run(None, {"images": x})


def test_outputs_exactly_as_documented(built):
    import onnx
    import onnxruntime as ort
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from pipeline.tooling.onnx_tools import check

    path = built.path("models/street_end2end/1/model.onnx")
    model = onnx.load(str(path))
    check(path)  # onnx.checker + strict shape inference, the plugin node against TensorRT's interface
    # Plain onnxruntime, as Triton's onnxruntime backend first does: the schema is valid, only the CPU kernel
    # is missing (the TensorRT execution provider runs it).
    with pytest.raises(Exception, match="NOT_IMPLEMENTED.*Could not find an implementation for EfficientNMS_TRT"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = {o.name: (onnx.TensorProto.DataType.Name(o.type.tensor_type.elem_type),
                     [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]) for o in model.graph.output}
    assert outs == {"num_dets": ("INT32", ["batch", 1]), "det_boxes": ("FLOAT", ["batch", 300, 4]),
                    "det_scores": ("FLOAT", ["batch", 300]), "det_classes": ("INT32", ["batch", 300])}
    node = next(n for n in model.graph.node if n.op_type == "EfficientNMS_TRT")
    assert node.domain == "" and {o.domain for o in model.opset_import} == {""}
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs == {"plugin_version": b"1", "background_class": -1, "max_output_boxes": 300,
                     "score_threshold": pytest.approx(0.25), "iou_threshold": pytest.approx(0.7),
                     "score_activation": 0, "box_coding": 1}
    cfg = text_format.Parse(built.path("models/street_end2end/config.pbtxt").read_text(), mc.ModelConfig())
    (accelerator,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and dict(accelerator.parameters) == {
        "precision_mode": "FP16", "max_workspace_size_bytes": str(4 << 30), "trt_engine_cache_enable": "true",
        "trt_engine_cache_path": "/tmp/triton-onnxruntime-trt-cache/street_end2end"}
    agnostic = onnx.load(str(built.path("pytorch_models/agnostic_end2end.onnx")))
    node = next(n for n in agnostic.graph.node if n.op_type == "EfficientNMS_TRT")
    assert {a.name: a.i for a in node.attribute if a.name == "class_agnostic"} == {"class_agnostic": 1}
    assert [(o.name, mc.DataType.Name(o.data_type), list(o.dims)) for o in cfg.output] == [
        ("num_dets", "TYPE_INT32", [1]), ("det_boxes", "TYPE_FP32", [300, 4]),
        ("det_scores", "TYPE_FP32", [300]), ("det_classes", "TYPE_INT32", [300])]
    assert cfg.max_batch_size == 16 and cfg.name == "street_end2end"
    assert built.path("models/street_end2end/labels.txt").read_text().split() == ["car", "truck", "bus", "bike",
                                                                                   "person"]


@pytest.mark.parametrize("name", ["street", "single", "agnostic"])
def test_detections_equal_the_reference_and_ultralytics_nms(built, name):
    """End2End graph == NumPy reference (exactly) == Ultralytics' non_max_suppression(multi_label=True)."""
    import torch
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils.nms import non_max_suppression

    from pipeline.tooling.efficient_nms import efficient_nms
    from pipeline.tooling.onnx_tools import run as run_onnx

    s = {"street": dict(topk=300, iou=0.7, norm=True, agnostic=False),
         "single": dict(topk=50, iou=0.7, norm=False, agnostic=False),
         "agnostic": dict(topk=300, iou=0.5, norm=True, agnostic=True)}[name]
    x = images()
    num, boxes, scores, classes = e2e(built, name, x)
    # 1. exactly the reference applied to the raw graph's outputs
    raw = run_onnx(built.path(f"models/{name}/1/model.onnx"), {"images": x})[0].transpose(0, 2, 1)
    scale = np.float32(1 / IMGSZ) if s["norm"] else np.float32(1)
    want = efficient_nms(raw[..., :4] * scale, raw[..., 4:], score_threshold=0.25, iou_threshold=s["iou"],
                         max_output_boxes=s["topk"], class_agnostic=int(s["agnostic"]))
    for g, w in zip((num, boxes, scores, classes), want):
        assert np.array_equal(g, w)
    # 2. the same detections as Ultralytics' NMS on the PyTorch model (a model that really detects)
    model, _ = load_checkpoint(str(built.ckpt[name]))
    with torch.inference_mode():
        pred = model(torch.from_numpy(x))[0]
    ref = non_max_suppression(pred, 0.25, s["iou"], multi_label=True, agnostic=s["agnostic"], max_det=s["topk"])
    assert sum(len(r) for r in ref) >= 10, "the model must detect something for this test to mean anything"
    for i, r in enumerate(ref):
        n = int(num[i, 0])
        assert n == len(r), (i, n, len(r))
        # One-to-one: every detection of ours has one of Ultralytics' with the same class, score and box
        # (matched by content: scores equal to ~1e-6 may sort either way between onnxruntime and PyTorch).
        theirs = list(zip(r[:, 4].numpy(), r[:, 5].numpy().astype(int), r[:, :4].numpy() * scale))
        for s1, c1, b1 in zip(scores[i, :n], classes[i, :n], boxes[i, :n]):
            match = [j for j, (s2, c2, b2) in enumerate(theirs)
                     if c1 == c2 and abs(s1 - s2) < 1e-4 and np.abs(b1 - b2).max() < 1e-2 * scale]
            assert match, (i, s1, c1, b1)
            theirs.pop(match[0])
        assert not boxes[i, n:].any() and not scores[i, n:].any() and not classes[i, n:].any()  # zero padding


def test_verification_record_written_beside_the_artifact(built):
    rec = json.loads(built.path("models/street_end2end/1/model.onnx.verification.json").read_text())
    v = rec["verification"]
    assert v["passed"] and v["manifest_thresholds"]["identical"] and v["score_threshold_0"]["identical"]
    assert v["score_threshold_0"]["detections"] == [300, 300]


@pytest.mark.parametrize("damage", ["unknown attribute", "mistyped attribute", "missing required attribute",
                                    "wrong output type", "three outputs"])
def test_the_checker_holds_the_plugin_node_to_tensorrts_interface(built, damage):
    """Every End2End graph is checked with EfficientNMS_TRT's interface as TensorRT declares it: a node
    TensorRT's parser would refuse (or misread) fails the build's check here."""
    import onnx

    from pipeline.tooling.onnx_tools import check

    model = onnx.load(str(built.path("models/street_end2end/1/model.onnx")))
    check(model)
    node = next(n for n in model.graph.node if n.op_type == "EfficientNMS_TRT")
    attrs = {a.name: a for a in node.attribute}
    if damage == "unknown attribute":
        node.attribute.append(onnx.helper.make_attribute("iou", 0.7))
    elif damage == "mistyped attribute":
        attrs["max_output_boxes"].CopyFrom(onnx.helper.make_attribute("max_output_boxes", 300.0))
    elif damage == "missing required attribute":
        node.attribute.remove(attrs["box_coding"])
    elif damage == "wrong output type":
        model.graph.output[2].type.tensor_type.elem_type = onnx.TensorProto.INT32  # det_scores
    else:
        del node.output[3]
        del model.graph.output[3]
    with pytest.raises((onnx.checker.ValidationError, onnx.shape_inference.InferenceError)):
        check(model)


def test_the_end2end_check_proves_the_backbone_and_runs_only_the_head(built):
    """The build's check cuts the End2End graph into the raw graph (proved identical) and an appended head.
    That cut is faithful: the head run on the raw graph's outputs gives what the whole graph gives."""
    import onnx

    from pipeline.tooling.efficient_nms import cpu_session
    from pipeline.tooling.onnx_tools import appended_head, run as run_onnx

    for name in ("street", "single"):
        raw = onnx.load(str(built.path(f"models/{name}/1/model.onnx")))
        full = onnx.load(str(built.path(f"models/{name}_end2end/1/model.onnx")))
        head = appended_head(full, raw)
        assert [n.op_type for n in head.graph.node] == (["Transpose", "Split", "Mul", "EfficientNMS_TRT"]
                                                        if name == "street" else
                                                        ["Transpose", "Split", "EfficientNMS_TRT"])
        x = images(batch=2, seed=11)
        (raw_out,) = run_onnx(built.path(f"models/{name}/1/model.onnx"), {"images": x})
        for a, b in zip(cpu_session(head).run(None, {"output0": raw_out}), e2e(built, name, x)):
            assert np.array_equal(a, b)
    rec = json.loads(built.path("models/street_end2end/1/model.onnx.verification.json").read_text())
    assert rec["verification"]["backbone"] == "the raw graph, node for node and weight for weight"


def _damage(model, how):
    """A copy of `model` with one difference in its backbone (or its head reading inside the backbone)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    conv = [n for n in g.node if n.op_type == "Conv"][1]  # not the first: that one reads the input already
    if how == "weight":  # one byte of one weight
        t = next(t for t in g.initializer if len(t.raw_data) > 100)
        data = bytearray(t.raw_data)
        data[50] ^= 1
        t.raw_data = bytes(data)
    elif how == "attribute":
        strides = next(a for a in conv.attribute if a.name == "strides")
        strides.ints[:] = [3 - v for v in strides.ints]  # 1 <-> 2
    elif how == "wiring":
        conv.input[0] = g.input[0].name
    elif how == "removed":
        act = next(n for n in g.node if n.op_type == "Sigmoid")
        consumers = [n for n in g.node if act.output[0] in n.input]
        for n in consumers:
            n.input[list(n.input).index(act.output[0])] = act.input[0]
        g.node.remove(act)
    elif how == "input":
        g.input[0].type.tensor_type.shape.dim[2].dim_value += 32
    elif how == "head_reads_inside":
        transpose = next(n for n in g.node if n.op_type == "Transpose" and n.name.startswith("e2e/"))
        producer = next(n for n in g.node if model.graph.output[0].name in n.output)
        transpose.input[0] = producer.input[0]
    return m


@pytest.mark.parametrize("how", ["weight", "attribute", "wiring", "removed", "input", "head_reads_inside"])
def test_the_end2end_check_refuses_a_graph_whose_backbone_is_not_the_raw_graph(built, tmp_path, how):
    import onnx

    from pipeline.builders.end2end_onnx import check_against_reference
    from pipeline.engine.errors import UserError
    from pipeline.families.yolo11 import FAMILY as YOLO11

    raw_path = built.path("models/street/1/model.onnx")
    raw = onnx.load(str(raw_path))
    damaged = tmp_path / "model.onnx"
    onnx.save(_damage(onnx.load(str(built.path("models/street_end2end/1/model.onnx"))), how), str(damaged))
    settings = dict(topk=300, iou=0.7, conf=0.25, normalize_boxes=True, class_agnostic=False, imgsz=IMGSZ)
    with pytest.raises(UserError, match="does not contain the raw graph exactly"):
        check_against_reference(raw_path, raw, damaged, settings, "street", YOLO11)


def test_fp16_graphs_run_and_stay_close_to_fp32(built):
    """FP16 input, FP32 outputs; measured against FP32 on a detecting model (thresholds stated here)."""
    import onnx

    from pipeline.tooling.onnx_tools import run as run_onnx

    raw16 = built.path("pytorch_models/street.fp16.onnx")
    m = onnx.load(str(raw16))
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["untrained"] == "false" and "'bike'" in meta["names"]  # conversion keeps the metadata
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    x = images()
    a = run_onnx(built.path("models/street/1/model.onnx"), {"images": x})[0]
    b = run_onnx(raw16, {"images": x.astype(np.float16)})[0]
    box_err, score_err = np.abs(a[:, :4] - b[:, :4]).max(), np.abs(a[:, 4:] - b[:, 4:]).max()
    hit = (a[:, 4:].max(axis=1) >= 0.25)[:, None, :].repeat(4, axis=1)  # anchors that are detections
    det_box_err = np.abs(a[:, :4] - b[:, :4])[hit].max()
    print(f"\nFP16 vs FP32 on a detecting model ({IMGSZ} px): boxes {box_err:.4f} px "
          f"({det_box_err:.4f} px on anchors scoring >= 0.25), scores {score_err:.5f}")
    # Thresholds of this test: FP16 has 11 significant bits, and the DFL box logits of this synthetic
    # model are flat (a trained head is peaked, hence less sensitive); box decoding itself stays FP32.
    assert det_box_err < 2.0 and box_err < 3.0 and score_err < 0.02

    e16 = onnx.load(str(built.path("pytorch_models/street_end2end.fp16.onnx")))
    assert e16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert [o.type.tensor_type.elem_type for o in e16.graph.output] == [onnx.TensorProto.INT32,
                                                                        onnx.TensorProto.FLOAT,
                                                                        onnx.TensorProto.FLOAT, onnx.TensorProto.INT32]
    n32, b32, s32, c32 = e2e(built, "street", x)
    from pipeline.tooling.efficient_nms import cpu_session
    n16, b16, s16, c16 = cpu_session(e16).run(None, {"images": x.astype(np.float16)})
    from pipeline.tooling.efficient_nms import _iou
    best = []
    for i in range(len(x)):
        # Every confident FP32 detection against the FP16 detections of the same class, and back.
        # (Detections within 0.02 of the 0.25 threshold may legitimately cross it.)
        for (na, ba, sa, ca), (nb, bb, cb) in (((n32, b32, s32, c32), (n16, b16, c16)),
                                               ((n16, b16, s16, c16), (n32, b32, c32))):
            assert set(ca[i, : int(na[i, 0])][sa[i, : int(na[i, 0])] >= 0.27]) <= set(cb[i, : int(nb[i, 0])])
            for j in range(int(na[i, 0])):
                if sa[i, j] < 0.27:
                    continue
                same = cb[i, : int(nb[i, 0])] == ca[i, j]
                best.append(_iou(ba[i, j], bb[i, : int(nb[i, 0])][same]).max())
    best = np.array(best)
    print(f"FP16 vs FP32 End2End: {len(best)} confident detections, {np.mean(best >= 0.9):.1%} with a same-class "
          f"twin at IoU >= 0.9, min IoU {best.min():.3f}")
    # Thresholds of this test: where two overlapping boxes of one class have near-equal scores, FP16 noise
    # can flip which one NMS keeps (this synthetic model has many such pairs); the twin is then the
    # neighbour, at IoU >= the NMS threshold's neighbourhood. Most detections must be stable.
    assert len(best) >= 20 and np.mean(best >= 0.9) >= 0.9 and best.min() >= 0.5


def test_nms_settings_rebuild_only_end2end_artifacts(built, tmp_path):
    import shutil

    from helpers.project import Project

    proj = Project(tmp_path / "copy")
    shutil.copytree(built.root, proj.root)
    text = proj.path("manifests/m.yaml").read_text()
    proj.write("manifests/m.yaml", text.replace("topk: 50, normalize_boxes: false", "topk: 20, normalize_boxes: false"))
    run = proj.doit("manifest=manifests/m.yaml")
    assert run.rc == 0
    assert run.executed == {"end2end_onnx:single", "config:single_end2end", "fp16_end2end_onnx:single",
                            "probe:single_end2end", "publish:single_end2end"}, run.text
    proj.write("manifests/m.yaml", text.replace("iou: 0.5,", "iou: 0.6,"))
    run = proj.doit("manifest=manifests/m.yaml")
    # (topk back to 50 for single; configs rerun because their graph's bytes changed; agnostic has iou 0.5 too)
    assert run.executed == {"end2end_onnx:single", "fp16_end2end_onnx:single", "config:single_end2end",
                            "probe:single_end2end", "publish:single_end2end", "end2end_onnx:agnostic"}, run.text
