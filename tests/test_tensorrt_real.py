"""Real TensorRT: build plans, run them, compare with onnxruntime. NEVER RUN IN THIS PROJECT'S CI.

TensorRT cannot be installed on any machine this project is built and tested on, so these tests have
never executed. They skip cleanly without TensorRT or a CUDA GPU. On a GPU host with TensorRT 10.x or
11.x (`pip install tensorrt` or an NGC container):

    .venv/bin/pytest -m tensorrt -v

What they require: the raw plan within FP16 tolerance of the FP32 ONNX in onnxruntime; the End2End
plan's detections matching the onnxruntime End2End graph (run with the NumPy EfficientNMS reference).
"""
from __future__ import annotations

import numpy as np
import pytest

from detecting import make_detecting_checkpoint

pytestmark = [pytest.mark.tensorrt, pytest.mark.slow]

IMGSZ = 640


def _have_tensorrt_and_gpu() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # ImportError, or OSError for missing libraries
        return f"TensorRT not importable ({type(e).__name__})"
    import torch
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory, yolo_env):
    reason = _have_tensorrt_and_gpu()
    if reason:
        pytest.skip(reason)
    from conftest import make_project

    d = tmp_path_factory.mktemp("trt-real")
    pt = make_detecting_checkpoint(d / "street.pt", ["car", "truck", "bus"], imgsz=IMGSZ)
    proj = make_project(d / "proj")
    proj.write("manifests/m.yaml", f"defaults: {{formats: [onnx, onnx_end2end, trt, trt_end2end], max_batch: 4}}\n"
                                   f"models:\n  street: {{pt_file: {pt}}}\n")
    run = proj.doit("manifest=manifests/m.yaml", timeout=3600)
    assert run.rc == 0, run.text
    return proj


def run_plan(path, x: np.ndarray) -> dict[str, np.ndarray]:
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
    context = engine.create_execution_context()
    images = torch.from_numpy(x).cuda()
    context.set_input_shape("images", tuple(images.shape))
    context.set_tensor_address("images", images.data_ptr())
    torch_dtype = {"DataType.FLOAT": torch.float32, "DataType.HALF": torch.float16, "DataType.INT32": torch.int32}
    outputs = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            t = torch.empty(tuple(context.get_tensor_shape(name)), dtype=torch_dtype[str(engine.get_tensor_dtype(name))],
                            device="cuda")
            context.set_tensor_address(name, t.data_ptr())
            outputs[name] = t
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return {k: v.cpu().numpy() for k, v in outputs.items()}


def test_raw_plan_matches_onnxruntime_within_fp16_tolerance(built):
    from pipeline.tooling.onnx_tools import run as run_onnx

    x = np.random.default_rng(1).random((3, 3, IMGSZ, IMGSZ), dtype=np.float32)
    want = run_onnx(built.path("models/street/1/model.onnx"), {"images": x})[0]
    got = run_plan(built.path("models/street_trt/1/model.plan"), x.astype(np.float16))["output0"]
    assert got.shape == want.shape
    assert np.abs(got[:, :4] - want[:, :4]).max() < 2.0 and np.abs(got[:, 4:] - want[:, 4:]).max() < 0.02


def test_end2end_plan_detections_match_onnx_end2end(built):
    from pipeline.tooling.efficient_nms import _iou, cpu_session

    x = np.random.default_rng(2).random((3, 3, IMGSZ, IMGSZ), dtype=np.float32)
    n1, b1, s1, c1 = cpu_session(built.path("models/street_end2end/1/model.onnx")).run(None, {"images": x})
    got = run_plan(built.path("models/street_trt_end2end/1/model.plan"), x.astype(np.float16))
    n2, b2, c2 = got["num_dets"], got["det_boxes"], got["det_classes"]
    ious = []
    for i in range(len(x)):
        for j in range(int(n1[i, 0])):
            if s1[i, j] < 0.27:
                continue
            same = c2[i, : int(n2[i, 0])] == c1[i, j]
            assert same.any()
            ious.append(_iou(b1[i, j], b2[i, : int(n2[i, 0])][same]).max())
    assert ious and np.mean(np.array(ious) >= 0.9) >= 0.9
