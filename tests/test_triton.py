"""Acceptance: a real Triton server (2.51, CPU) loads every folder the smoke build writes and answers.

The only change to the test copy of the repository: KIND_GPU -> KIND_CPU (no GPU here). ONNX folders
run through a stand-in onnxruntime backend (see triton_harness.py); TensorRT folders, made with the
stand-in TensorRT (their plan is not an engine), are checked up to Triton's config validation.
"""
from __future__ import annotations

import concurrent.futures
import shutil

import numpy as np
import pytest

import trt_standin as S
from conftest import make_project
from triton_harness import TritonServer

pytestmark = [pytest.mark.triton, pytest.mark.slow]

BATCH = 4


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    proj = make_project(tmp_path_factory.mktemp("triton") / "proj")
    run = proj.doit("manifest=manifests/smoke.yaml")
    assert run.rc == 0, run.text
    return proj


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    work = tmp_path_factory.mktemp("server")
    served = work / "models"
    shutil.copytree(repo.path("models"), served, ignore=shutil.ignore_patterns("README.md"))
    for cfg in served.glob("*/config.pbtxt"):
        cfg.write_text(cfg.read_text().replace("KIND_GPU", "KIND_CPU"))
    with TritonServer(served, work) as s:
        yield s


def folders(repo):
    return sorted(p.parent.name for p in repo.path("models").glob("*/config.pbtxt"))


def test_every_folder_loads_and_answers_like_onnxruntime(repo, server):
    import tritonclient.http as http

    from pipeline.tooling.efficient_nms import cpu_session
    from pipeline.tooling.onnx_tools import run as run_onnx

    names = folders(repo)
    assert {"smoke_yolo11n", "smoke_yolo11n_end2end", "mobileclip2_s2_image_encoder_onnx",
            "mobileclip2_s2_text_encoder_onnx"} <= set(names)
    report = {}
    for name in names:
        client = http.InferenceServerClient(f"127.0.0.1:{server.http}", concurrency=BATCH)
        try:
            ok, why = server.load(name)
            assert ok, f"Triton refused {name}: {why}"
            meta = client.get_model_metadata(name)
            model = repo.path(f"models/{name}/1/model.onnx")
            feeds = make_inputs(meta, BATCH)
            outputs = [o["name"] for o in meta["outputs"]]
            # one request of batch 4, then 4 concurrent requests of batch 1 (the dynamic batcher's case)
            whole = infer(client, name, meta, feeds, outputs)
            singles = list(concurrent.futures.ThreadPoolExecutor(BATCH).map(
                lambda i: infer(None, name, meta, {k: v[i:i + 1] for k, v in feeds.items()}, outputs,
                                url=f"127.0.0.1:{server.http}"), range(BATCH)))
            local = (cpu_session(model).run(None, feeds) if name.endswith("_end2end")
                     else run_onnx(model, feeds))
            for j, out in enumerate(outputs):
                np.testing.assert_allclose(whole[out], local[j], rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(np.concatenate([s[out] for s in singles]), local[j], rtol=1e-5, atol=1e-5)
            report[name] = {"loaded": True, "outputs": {o: list(whole[o].shape) for o in outputs},
                            "equal_to_onnxruntime": True}
        finally:
            client.close()
    from conftest import REPORTS
    REPORTS["Triton 2.51 acceptance: load + HTTP inference per folder"] = report


def make_inputs(meta, batch):
    rng = np.random.default_rng(0)
    feeds = {}
    for i in meta["inputs"]:
        shape = [batch] + [int(d) for d in i["shape"][1:]]
        if i["datatype"] == "FP32":
            feeds[i["name"]] = rng.random(shape, dtype=np.float32)
        elif i["datatype"] == "INT64":
            import open_clip
            tok = open_clip.get_tokenizer("MobileCLIP2-S2")
            feeds[i["name"]] = tok(["a photo of a dog", "red car on highway", "a cat", "a boat"][:batch]).numpy()
        else:
            raise AssertionError(f"unexpected input type {i['datatype']}")
    return feeds


def infer(client, name, meta, feeds, outputs, url=None):
    """One HTTP request; with `url`, on a client of its own (tritonclient.http clients are gevent-based and
    must not be shared between threads)."""
    import tritonclient.http as http

    inputs = []
    for i in meta["inputs"]:
        t = http.InferInput(i["name"], list(feeds[i["name"]].shape), i["datatype"])
        t.set_data_from_numpy(feeds[i["name"]])
        inputs.append(t)
    requested = [http.InferRequestedOutput(o) for o in outputs]
    own = http.InferenceServerClient(url) if url else None
    try:
        result = (own or client).infer(name, inputs, outputs=requested)
        return {o: result.as_numpy(o) for o in outputs}
    finally:
        if own:
            own.close()


@pytest.mark.skipif(not S.SHARED.is_dir(), reason="../shared/tensorrt-api not beside the checkout")
def test_tensorrt_folders_pass_config_validation(repo, tmp_path):
    """Plans made with the stand-in TensorRT: Triton must accept their config.pbtxt (the plan itself is
    not an engine, and no tensorrt backend exists here: the load fails after validation, and only so)."""
    import os
    import subprocess
    import sys

    shutil.copytree(repo.root, tmp_path / "proj")
    proj = tmp_path / "proj"
    env = {**os.environ, **S.install(tmp_path / "site-packages", "11.4.0.106"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env["PYTHONPATH"] = f"{env['PYTHONPATH']}{os.pathsep}{proj}"
    p = subprocess.run([sys.executable, "-m", "doit", "manifest=manifests/smoke.yaml"], cwd=proj, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    trt_folders = sorted(c.parent.name for c in (proj / "models").glob("*/config.pbtxt")
                         if 'platform: "tensorrt_plan"' in c.read_text())
    assert len(trt_folders) == 4
    served = tmp_path / "served"
    served.mkdir()
    for name in trt_folders:
        shutil.copytree(proj / "models" / name, served / name)
    bad_cfg = served / "invalid_config"  # a control: Triton's validation does reject a broken config
    shutil.copytree(served / trt_folders[0], bad_cfg)
    cfg = (bad_cfg / "config.pbtxt").read_text().replace(f'name: "{trt_folders[0]}"', 'name: "invalid_config"')
    (bad_cfg / "config.pbtxt").write_text(cfg.replace("max_batch_size: ", "max_batch_size: -"))
    with TritonServer(served, tmp_path) as server:
        ok, why = server.load("invalid_config")
        assert not ok and "unable to find backend library" not in why, why  # refused before the backend
        from conftest import REPORTS
        poll = [ln for ln in why.splitlines() if "Poll failed" in ln]
        trt_report = {"invalid_config (control)": (poll or why.splitlines())[-1].strip()}
        REPORTS["Triton 2.51 config validation of TensorRT folders (stand-in plans)"] = trt_report
        for name in trt_folders:
            ok, why = server.load(name)
            # Validation passed: Triton went on to look for the tensorrt backend, which is absent here.
            assert not ok and "unable to find backend library for backend 'tensorrt'" in why, why
            trt_report[name] = "config accepted; stops at: unable to find backend library for backend 'tensorrt'"
