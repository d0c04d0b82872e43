"""Real TensorRT: build plans, run them, compare with onnxruntime. NEVER RUN IN THIS PROJECT'S CI.

TensorRT cannot be installed on any machine this project is built and tested on, so these tests have
never executed. They skip cleanly without TensorRT or a CUDA GPU. On a GPU host with TensorRT 10.x or
11.x (`pip install tensorrt` or an NGC container):

    .venv/bin/pytest -m tensorrt -v

What they require: the raw plan within FP16 tolerance of the FP32 ONNX in onnxruntime; the End2End
plan's detections matching the onnxruntime End2End graph (run with the NumPy EfficientNMS reference);
the MobileCLIP2 image and text encoder plans giving the ONNX encoders' embeddings (cosine >= 0.999);
and, where a real Triton with its TensorRT backend is installed (`tritonserver` on PATH and
/opt/tritonserver/backends/tensorrt, as in NVIDIA's containers), every plan folder loading.
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers.detecting import make_detecting_checkpoint

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
    from helpers.project import make_project

    d = tmp_path_factory.mktemp("trt-real")
    pt = make_detecting_checkpoint(d / "street.pt", ["car", "truck", "bus"], imgsz=IMGSZ)
    proj = make_project(d / "proj")
    proj.write("manifests/m.yaml", f"defaults: {{formats: [onnx, onnx_end2end, trt, trt_end2end], max_batch: 4}}\n"
                                   f"models:\n  street: {{pt_file: {pt}}}\n"
                                   "encoders:\n  clip: {model: MobileCLIP2-S2, weights: untrained, image_max_batch: 4, "
                                   "text_max_batch: 4}\n")
    run = proj.doit("manifest=manifests/m.yaml", timeout=3600)
    assert run.rc == 0, run.text
    return proj


def run_plan(path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
    context = engine.create_execution_context()
    inputs = {name: torch.from_numpy(np.ascontiguousarray(x)).cuda() for name, x in feeds.items()}
    for name, tensor in inputs.items():
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
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
    got = run_plan(built.path("models/street_trt/1/model.plan"), {"images": x.astype(np.float16)})["output0"]
    assert got.shape == want.shape
    assert np.abs(got[:, :4] - want[:, :4]).max() < 2.0 and np.abs(got[:, 4:] - want[:, 4:]).max() < 0.02


def test_end2end_plan_detections_match_onnx_end2end(built):
    from pipeline.tooling.efficient_nms import _iou, cpu_session

    x = np.random.default_rng(2).random((3, 3, IMGSZ, IMGSZ), dtype=np.float32)
    n1, b1, s1, c1 = cpu_session(built.path("models/street_end2end/1/model.onnx")).run(None, {"images": x})
    got = run_plan(built.path("models/street_trt_end2end/1/model.plan"), {"images": x.astype(np.float16)})
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


def test_encoder_plans_match_the_onnx_encoders(built):
    """FP16 engines (FP32 I/O; INT32 tokens for the text plan) against the FP32 ONNX encoders."""
    import open_clip

    from pipeline.tooling.onnx_tools import run as run_onnx

    images = np.random.default_rng(3).random((4, 3, 256, 256), dtype=np.float32)
    tokens = open_clip.get_tokenizer("MobileCLIP2-S2")(["a photo of a dog", "red car on highway", "a cat",
                                                        "a boat on the water"]).numpy()
    for role, name, feed, plan_feed in (
            ("image", "images", images, images),
            ("text", "text_tokens", tokens, tokens.astype(np.int32))):
        want = run_onnx(built.path(f"pytorch_models/clip_{role}_encoder.onnx"), {name: feed})[0]
        got = run_plan(built.path(f"models/clip_{role}_encoder/1/model.plan"), {name: plan_feed})
        (out,) = got.values()
        assert out.shape == want.shape and out.dtype == np.float32
        assert float((out * want).sum(-1).min()) >= 0.999, role


def _real_triton() -> str | None:
    import os
    import shutil

    binary = shutil.which("tritonserver")
    if binary and os.path.isdir("/opt/tritonserver/backends/tensorrt"):
        return binary
    return None


def test_plan_folders_load_in_a_real_triton(built, tmp_path):
    """Where Triton and its TensorRT backend exist (the TensorRT Triton was built with must be the one that
    built the plans): every plan folder loads and reports ready."""
    import shutil
    import socket
    import subprocess
    import time
    import urllib.request

    binary = _real_triton()
    if not binary:
        pytest.skip("no tritonserver with a TensorRT backend here")
    repo = tmp_path / "models"
    plans = sorted(p.parent.parent.name for p in built.path("models").glob("*/1/model.plan"))
    for name in plans:
        shutil.copytree(built.path(f"models/{name}"), repo / name)
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    log = open(tmp_path / "triton.log", "w")
    server = subprocess.Popen([binary, f"--model-repository={repo}", "--model-control-mode=explicit",
                               f"--http-port={ports[0]}", f"--grpc-port={ports[1]}", f"--metrics-port={ports[2]}",
                               "--disable-auto-complete-config"], stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{ports[0]}/v2"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/health/live", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        for name in plans:
            req = urllib.request.Request(f"{base}/repository/models/{name}/load", data=b"", method="POST")
            urllib.request.urlopen(req, timeout=600)
            assert urllib.request.urlopen(f"{base}/models/{name}/ready", timeout=5).status == 200, name
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
