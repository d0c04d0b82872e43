"""INT8 (and FP8) Q/DQ graphs for TensorRT, on a detector trained here on synthetic shapes (it really detects):
their accuracy against the FP32 and FP16 graphs measured in onnxruntime, what rebuilds them, and every bad
calibration input. No TensorRT runs here: the plans compiled from these graphs have never been built or timed."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from helpers.project import REPORTS, Project, make_project
from helpers.shapes import CLASSES, train_shapes_detector, write_set

pytestmark = pytest.mark.slow

MANIFEST = """defaults:
  formats: [onnx, trt, trt_end2end]
  imgsz: 160
  max_batch: 8
models:
  shapes:
    pt_file: ../shapes.pt
    precision: int8
    calibration: {{images: ../data/calibration/images, count: 64{cal}}}
{extra}"""
VALIDATION = "    validation: {images: ../data/held/images, labels: ../data/held/labels}\n"
GRAPH, RECORD = "pytorch_models/shapes.int8.onnx", "pytorch_models/shapes.int8.onnx.verification.json"


def manifest(cal: str = "", extra: str = VALIDATION) -> str:
    return MANIFEST.format(cal=cal, extra=extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, yolo_env):
    root = tmp_path_factory.mktemp("shapes")
    pt = train_shapes_detector(root / "train", epochs=25)
    write_set(root / "calibration", 80, seed=3, labels=False)
    write_set(root / "held", 40, seed=4)
    return root, pt


@pytest.fixture(scope="module")
def built(trained, tmp_path_factory):
    root, pt = trained
    proj = make_project(tmp_path_factory.mktemp("quantized") / "proj")
    shutil.copy(pt, proj.path("shapes.pt"))
    shutil.copytree(root / "calibration", proj.path("data/calibration"))
    shutil.copytree(root / "held", proj.path("data/held"))
    proj.write("manifests/q.yaml", manifest())
    run = proj.doit("manifest=manifests/q.yaml", env={"PIPELINE_CACHE": "off"})
    assert run.rc == 0, run.text
    assert {"quantized_onnx:shapes", "quantized_end2end_onnx:shapes"} <= run.executed, run.text
    return proj


def copy_of(built, tmp_path) -> Project:
    shutil.copytree(built.root, tmp_path / "proj", symlinks=True)
    return Project(tmp_path / "proj")


def sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_the_int8_graph_keeps_the_detector_s_accuracy(built, trained):
    """mAP50-95 of the INT8 graph within 1 point of the FP32 graph's on held images — and the FP32 figure is
    Ultralytics' own validator's, on the same images, square letterbox."""
    from ultralytics import YOLO

    root, pt = trained
    acc = json.loads(built.path(RECORD).read_text())["verification"]["accuracy"]
    assert acc["metric"] == "map50_95" and acc["images"] == 40 and "with labels" in acc["measured_on"]
    assert acc["fp32"]["map50"] > 0.6, acc  # it really detects
    assert acc["drop"] <= 1.0 and acc["accepted"] is False, acc
    data = root / "held.yaml"
    data.write_text(f"path: {root / 'held'}\ntrain: images\nval: images\nnames: {dict(enumerate(CLASSES))}\n")
    ours = YOLO(str(pt)).val(data=str(data), imgsz=160, batch=8, rect=False, device="cpu", plots=False, verbose=False,
                             conf=0.001, iou=0.7)
    assert abs(ours.box.map - acc["fp32"]["map50_95"]) < 0.02, (ours.box.map, acc["fp32"])
    REPORTS["INT8 Q/DQ detector, mAP on 40 held images (onnxruntime CPU)"] = {
        "Ultralytics val (PyTorch FP32)": {"map50": round(float(ours.box.map50), 4), "map50_95": round(float(ours.box.map), 4)},
        **{k: acc[k] for k in ("fp32", "fp16", "int8")}, "drop (mAP points)": acc["drop"]}


def test_the_graph_is_quantized_where_tensorrt_expects_and_fp32_where_it_must(built):
    import onnx

    from pipeline.declarations.families import FAMILIES

    g = onnx.load(str(built.path(GRAPH)))
    q = [n for n in g.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in g.graph.node if n.op_type == "DequantizeLinear"]
    assert len(q) > 50 and len(dq) > len(q)  # activations and per-channel weights
    inits = {i.name: i for i in g.graph.initializer}
    zero_points = [inits[n.input[2]] for n in q if len(n.input) > 2 and n.input[2] in inits]
    assert zero_points and all(not np.any(onnx.numpy_helper.to_array(z)) for z in zero_points)  # symmetric
    assert all(z.data_type == onnx.TensorProto.INT8 for z in zero_points)
    per_channel = [n for n in dq if n.input[0] in inits and onnx.numpy_helper.to_array(inits[n.input[1]]).size > 1]
    assert per_channel  # weights: one scale per output channel
    raw = onnx.load(str(built.path("pytorch_models/staged/shapes/1/model.onnx")))
    decode = set(FAMILIES["yolo11"].fp32_nodes(raw))
    made_by = {o: n for n in g.graph.node for o in n.output}
    for n in g.graph.node:
        if n.name in decode and n.op_type != "Shape":  # the box decoding stays FP32 (a Shape reads no values)
            assert not [i for i in n.input if i in made_by and made_by[i].op_type == "DequantizeLinear"], n.name
    e2e = onnx.load(str(built.path("pytorch_models/shapes_end2end.int8.onnx")))
    elem = {o.name: o.type.tensor_type.elem_type for o in e2e.graph.output}
    assert elem == {"num_dets": onnx.TensorProto.INT32, "det_boxes": onnx.TensorProto.FLOAT,
                    "det_scores": onnx.TensorProto.FLOAT, "det_classes": onnx.TensorProto.INT32}
    nms = next(n for n in e2e.graph.node if n.op_type == "EfficientNMS_TRT")
    producers = {o: n.op_type for n in e2e.graph.node for o in n.output}
    assert all(producers.get(i) != "DequantizeLinear" for i in nms.input)  # NMS takes FP32 boxes and scores
    rec = json.loads(built.path(RECORD).read_text())["verification"]
    assert rec["tensorrt_support"]["10.x"]["passed"] and "QuantizeLinear" in rec["tensorrt_support"]["10.x"]["operators"]


def test_same_images_same_bytes_and_calibration_changes_rebuild_what_they_should(built, tmp_path):
    proj = copy_of(built, tmp_path)
    m, off = "manifest=manifests/q.yaml", {"PIPELINE_CACHE": "off"}
    before, e2e = sha(proj.path(GRAPH)), sha(proj.path("pytorch_models/shapes_end2end.int8.onnx"))
    for p in (GRAPH, RECORD):
        proj.path(p).unlink()
    run = proj.doit(m, env=off)
    assert run.executed == {"quantized_onnx:shapes"} and sha(proj.path(GRAPH)) == before, run.text  # byte-identical
    assert sha(proj.path("pytorch_models/shapes_end2end.int8.onnx")) == e2e
    proj.write("manifests/q.yaml", manifest(", method: max"))
    run = proj.doit(m, env=off)
    assert run.executed == {"quantized_onnx:shapes", "quantized_end2end_onnx:shapes"}, run.text
    assert sha(proj.path(GRAPH)) != before
    # one calibration image among those used changes: the graph and what is made of it
    first = sorted(proj.path("data/calibration/images").iterdir())[0]
    first.write_bytes(sorted(proj.path("data/held/images").iterdir())[0].read_bytes())
    run = proj.doit(m, env=off)
    assert run.executed == {"quantized_onnx:shapes", "quantized_end2end_onnx:shapes"}, run.text
    # an image beyond `count` is not used: nothing rebuilds
    shutil.copy(first, proj.path("data/calibration/images/zzz_extra.jpg"))
    assert proj.doit(m, env=off).executed == set()
    # a held label changes: measured again, the same graph (nothing downstream rebuilds)
    label = sorted(proj.path("data/held/labels").iterdir())[0]
    label.write_text(label.read_text() + "0 0.5 0.5 0.2 0.2\n")
    graph = sha(proj.path(GRAPH))
    run = proj.doit(m, env=off)
    assert run.executed == {"quantized_onnx:shapes"} and sha(proj.path(GRAPH)) == graph, run.text


def test_a_worse_graph_fails_the_step_unless_the_manifest_accepts_it(built, tmp_path):
    """Calibrated on pictures unlike the ones served (dark, flat), the INT8 graph loses accuracy: the step fails
    with one paragraph and writes nothing, unless the manifest accepts the drop."""
    import cv2

    proj = copy_of(built, tmp_path)
    dark = proj.path("data/dark")
    dark.mkdir()
    rng = np.random.default_rng(5)
    for i in range(40):
        cv2.imwrite(str(dark / f"{i:03d}.png"), rng.integers(0, 12, (160, 200, 3), dtype=np.uint8))
    text = manifest(cal=", method: max").replace("../data/calibration/images", "../data/dark")  # max: quicker
    proj.write("manifests/q.yaml", text)
    run = proj.doit("manifest=manifests/q.yaml", env={"PIPELINE_CACHE": "off"})
    said = " ".join(run.text.split())
    assert run.rc != 0 and "the INT8 graph loses" in said and "mAP points of mAP50-95" in said, run.text
    assert "models.shapes.max_accuracy_drop" in said and "Traceback" not in said
    assert not proj.path(GRAPH).exists() and "quantized_end2end_onnx:shapes" not in run.executed
    unlabelled = text.replace(VALIDATION, "    validation: {images: ../data/held/images}\n")
    proj.write("manifests/q.yaml", unlabelled)  # without labels, agreement with the FP32 graph catches it too
    run = proj.doit("manifest=manifests/q.yaml", env={"PIPELINE_CACHE": "off"})
    said = " ".join(run.text.split())
    assert run.rc != 0 and "percent of agreement with the FP32 graph" in said and not proj.path(GRAPH).exists(), said
    REPORTS["INT8 calibrated on dark flat images, without labels"] = {"error": said[said.index("the INT8 graph loses"):][:170]}
    proj.write("manifests/q.yaml", text + "    accept_accuracy_drop: true\n")
    run = proj.doit("manifest=manifests/q.yaml", env={"PIPELINE_CACHE": "off"})
    assert run.rc == 0, run.text
    acc = json.loads(proj.path(RECORD).read_text())["verification"]["accuracy"]
    assert acc["accepted"] is True and acc["drop"] > 1.0
    status = proj.doit("status", "manifest=manifests/q.yaml")
    assert "int8 map50_95" in status.out and "accepted" in status.out, status.out
    REPORTS["INT8 calibrated on dark flat images (what max_accuracy_drop catches)"] = {
        k: acc[k] for k in ("fp32", "int8", "drop")}


def test_without_labels_the_graph_is_measured_by_its_agreement_with_fp32(built, tmp_path):
    proj = copy_of(built, tmp_path)
    proj.write("manifests/q.yaml", manifest(extra="    validation: {images: ../data/held/images}\n"))
    run = proj.doit("manifest=manifests/q.yaml", env={"PIPELINE_CACHE": "off"})
    assert run.rc == 0, run.text
    acc = json.loads(proj.path(RECORD).read_text())["verification"]["accuracy"]
    assert acc["metric"] == "agreement" and acc["drop"] <= acc["max_drop"] == 5.0, acc
    assert acc["fp32"]["agreement"] >= 0.99, acc  # its own detections: 0.995, the ceiling of 101-point AP
    REPORTS["INT8 Q/DQ detector, agreement with FP32 (40 held images, no labels)"] = {
        k: acc[k] for k in ("fp16", "int8", "drop")}


def test_fp8_is_a_graph_for_ada_and_newer_and_its_accuracy_is_measured(built, tmp_path):
    import onnx

    proj = copy_of(built, tmp_path)
    text = manifest().replace("precision: int8", "precision: fp8")
    proj.write("manifests/q.yaml", text)
    run = proj.doit("manifest=manifests/q.yaml", env={"PIPELINE_CACHE": "off"})
    assert run.rc != 0 and "the FP8 graph loses" in " ".join(run.text.split()), run.text  # measured: far worse
    proj.write("manifests/q.yaml", text + "    accept_accuracy_drop: true\n")
    run = proj.doit("manifest=manifests/q.yaml", env={"PIPELINE_CACHE": "off"})
    assert run.rc == 0, run.text
    rec = json.loads(proj.path("pytorch_models/shapes.fp8.onnx.verification.json").read_text())["verification"]
    g = onnx.load(str(proj.path("pytorch_models/shapes.fp8.onnx")))
    assert g.opset_import[0].version == 19 and rec["type"] == "QFLOAT8E4M3FN" and rec["tensorrt_support"]["10.x"]["passed"]
    assert any(i.data_type == onnx.TensorProto.FLOAT8E4M3FN for i in g.graph.initializer)
    REPORTS["FP8 (E4M3) Q/DQ detector, onnxruntime's Distribution calibration (CPU)"] = {
        k: rec["accuracy"][k] for k in ("fp32", "fp8", "drop")}


@pytest.mark.parametrize("case", ["no folder", "no calibration", "too few", "unreadable", "bad label", "fp8 on 8.6",
                                  "nothing to agree with"])
def test_bad_calibration_input_is_a_paragraph_and_nothing_is_written(built, tmp_path, case):
    proj = copy_of(built, tmp_path)
    for p in proj.root.glob("pytorch_models/shapes*.int8.onnx*"):
        p.unlink()
    text, want = manifest(), None
    if case == "no folder":
        text, want = text.replace("../data/calibration/images", "../data/nowhere"), "the calibration folder '../data/nowhere' does not exist"
    elif case == "no calibration":
        text = text.replace("    calibration: {images: ../data/calibration/images, count: 64}\n", "")
        want = "precision int8 needs calibration images"
    elif case == "too few":
        for p in sorted(proj.path("data/calibration/images").iterdir())[10:]:
            p.unlink()
        want = "has 10 image(s); at least 32 are needed"
    elif case == "unreadable":
        sorted(proj.path("data/calibration/images").iterdir())[3].write_bytes(b"not a picture")
        want = "data/calibration/images/0003.jpg of the calibration folder data/calibration/images is not a readable image"
    elif case == "bad label":
        sorted(proj.path("data/held/labels").iterdir())[0].write_text("7 0.5 0.5 0.1 0.1\n")
        want = "names class 7, but the model has 3 classes"
    elif case == "nothing to agree with":  # images only, and the FP32 graph finds no object in them
        import cv2

        for i in range(8):
            proj.write(f"data/grey/{i}.png", "")
            cv2.imwrite(str(proj.path(f"data/grey/{i}.png")), np.full((160, 160, 3), 114, np.uint8))
        text = manifest(extra="    validation: {images: ../data/grey}\n")
        want = "on validation folder data/grey (images only): there is nothing for the INT8 graph to agree with"
    else:
        text = text.replace("precision: int8", 'precision: fp8\n    gpu_targets: ["8.6", "9.0"]\n    tensorrt: "10.13.3.9"')
        want = "precision fp8 runs on GPUs of compute capability 8.9 (Ada) or newer, but gpu_targets lists 8.6"
    proj.write("manifests/q.yaml", text)
    run = proj.doit("manifest=manifests/q.yaml", env={"PIPELINE_CACHE": "off"})
    said = " ".join(run.text.split())
    assert run.rc != 0 and want in said and "Traceback" not in said and "q.yaml" in said, run.text
    assert not list(proj.root.glob("pytorch_models/shapes*.int8.onnx*")) and not list(proj.root.glob("pytorch_models/.*tmp*"))


def test_a_mobileclip2_int8_image_encoder_keeps_its_embeddings(trained, tmp_path):
    root, _ = trained
    proj = make_project(tmp_path / "proj")
    shutil.copytree(root / "calibration", proj.path("data/calibration"))
    shutil.copytree(root / "held", proj.path("data/held"))
    proj.write("manifests/e.yaml", """encoders:
  clip:
    model: MobileCLIP2-S2
    weights: untrained
    formats: [trt]
    image_max_batch: 8
    text_max_batch: 8
    precision: int8
    calibration: {images: ../data/calibration/images, count: 32, method: max}
    validation: {images: ../data/held/images}
""")
    run = proj.doit("manifest=manifests/e.yaml", env={"PIPELINE_CACHE": "off"})
    assert run.rc == 0, run.text
    rec = json.loads(proj.path("pytorch_models/clip_image_encoder.trt.onnx.verification.json").read_text())["verification"]
    acc = rec["accuracy"]
    assert rec["precision"] == "int8" and rec["quantize_linear_nodes"] > 50 and acc["mean_cosine"] > 0.98, acc
    text = json.loads(proj.path("pytorch_models/clip_text_encoder.trt.onnx.verification.json").read_text())["verification"]
    assert text["precision"] == "fp16"  # the text encoder stays FP16
    REPORTS["MobileCLIP2-S2 INT8 image encoder (UNTRAINED weights), cosine to FP32 on 40 images"] = {
        k: acc[k] for k in ("mean_cosine", "min_cosine")}
