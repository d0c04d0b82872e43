"""The ONNX folder a user serves: numerically the PyTorch model, with a config Triton's own protobuf reads."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.detecting import make_detecting_checkpoint

pytestmark = pytest.mark.slow

NAMES = ["car", "truck", "bus", "bike", "person"]


@pytest.fixture(scope="module")
def detector(tmp_path_factory, yolo_env):
    d = tmp_path_factory.mktemp("det")
    return make_detecting_checkpoint(d / "street.pt", NAMES, imgsz=320)


@pytest.fixture(scope="module")
def built(tmp_path_factory, detector):
    from helpers.project import make_project
    proj = make_project(tmp_path_factory.mktemp("onnx") / "proj")
    proj.write("manifests/m.yaml", f"""\
defaults: {{formats: [onnx], imgsz: 320}}
models:
  street: {{pt_file: {detector}, triton_name: street_v1, max_batch: 24}}
""")
    run = proj.doit("manifest=manifests/m.yaml")
    assert run.rc == 0, run.text
    return proj


def test_onnx_matches_pytorch_on_a_detecting_model(built, detector):
    import onnx
    import onnxruntime as ort
    import torch
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils.nms import non_max_suppression

    path = built.path("models/street_v1/1/model.onnx")
    graph = onnx.load(str(path))
    assert next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == 17
    out = graph.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out[1:]] == [4 + len(NAMES), 2100]  # fixed class dim, 320 px -> 2100 anchors
    assert out[0].dim_param  # dynamic batch

    model, _ = load_checkpoint(str(detector))  # the source model, reloaded as a user would
    x = torch.rand(3, 3, 320, 320, generator=torch.Generator().manual_seed(123))  # not the export's input
    with torch.inference_mode():
        ref = model(x)[0]
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    assert got.shape == tuple(ref.shape)
    assert np.abs(got[:, :4] - ref[:, :4].numpy()).max() < 1e-2      # pixels
    assert np.abs(got[:, 4:] - ref[:, 4:].numpy()).max() < 1e-4
    # ... on a model that really detects: the comparison is not between two flat zero maps
    dets = non_max_suppression(ref, 0.25, 0.7, multi_label=True)
    assert sum(len(d) for d in dets) >= 10


def test_verification_record_beside_the_artifact(built, detector):
    rec = json.loads(built.path("models/street_v1/1/model.onnx.verification.json").read_text())
    v = rec["verification"]
    assert v["passed"] is True and v["max_abs_box_px"] < 1e-2 and v["max_abs_score"] < 1e-4
    assert rec["untrained"] is False
    assert rec["params"] == {"imgsz": 320, "opset": 17, "untrained": False, "trust_checkpoint": False,
                             "head": {"kind": "anchors"}, "tensorrt_check": None}  # no TensorRT format: no parser check
    import hashlib
    assert rec["inputs"][str(detector)] == hashlib.sha256(detector.read_bytes()).hexdigest()
    out = rec["outputs"]["pytorch_models/staged/street_v1/1/model.onnx"]  # built there, published as version 1
    assert out["sha256"] == hashlib.sha256(built.path("models/street_v1/1/model.onnx").read_bytes()).hexdigest()


def test_config_pbtxt_is_a_valid_model_config_of_the_real_io(built):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    cfg = text_format.Parse(built.path("models/street_v1/config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.name == "street_v1" and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 24
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in cfg.input] == [
        ("images", "TYPE_FP32", [3, 320, 320])]
    assert [(o.name, mc.DataType.Name(o.data_type), list(o.dims)) for o in cfg.output] == [
        ("output0", "TYPE_FP32", [4 + len(NAMES), 2100])]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 16]  # the seed's 8/16/32/64 capped at 24
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 5000
    assert [(g.count, mc.ModelInstanceGroup.Kind.Name(g.kind)) for g in cfg.instance_group] == [(1, "KIND_GPU")]
    assert "untrained_random_weights" not in cfg.parameters


def test_labels_follow_the_checkpoint_names(built):
    assert built.path("models/street_v1/labels.txt").read_text().splitlines() == NAMES


def test_untrained_models_say_so(project):
    run = project.doit("manifest=manifests/smoke.yaml", "onnx:smoke_yolo11n")
    assert run.rc == 0, run.text
    import onnx
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    cfg = text_format.Parse(project.path("models/smoke_yolo11n/config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.parameters["untrained_random_weights"].string_value == "true"
    meta = {p.key: p.value for p in onnx.load(str(project.path("models/smoke_yolo11n/1/model.onnx"))).metadata_props}
    assert meta["untrained"] == "true"
    assert "UNTRAINED" in project.doit("list", "--all", "manifest=manifests/smoke.yaml").out
    assert project.path("models/smoke_yolo11n/labels.txt").read_text() == "car\ntruck\nbus\n"


def test_custom_var_builds_a_one_off_model(project, detector):
    run = project.doit(f"custom={detector}:vehicle_detector:4", "onnx:vehicle_detector")
    assert run.rc == 0, run.text
    assert run.executed == {f"{step}:vehicle_detector" for step in ("inspect", "export_onnx", "config", "labels",
                                                                      "probe", "publish")}
    assert "max_batch_size: 4" in project.path("models/vehicle_detector/config.pbtxt").read_text()
    # without a name the seed derives it from the file name
    assert "export_onnx:street" in project.doit("list", "--all", f"custom={detector}").out
