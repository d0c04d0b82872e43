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

from helpers import trt_standin as S
from helpers.project import make_project
from helpers.triton_harness import TritonServer

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
    add_broken_end2end_folders(served)
    with TritonServer(served, work) as s:
        yield s


E2E = "smoke_yolo11n_end2end"


def add_broken_end2end_folders(served):
    """Controls: what the real onnxruntime backend refuses, the stand-in must refuse too.
    e2e_trt_domain: the graph as this pipeline used to write it (node domain 'TRT', which onnxruntime
    cannot resolve); e2e_no_accelerator: today's graph, but config.pbtxt without the TensorRT accelerator."""
    import onnx

    for name in ("e2e_trt_domain", "e2e_no_accelerator"):
        shutil.copytree(served / E2E, served / name)
        cfg = (served / name / "config.pbtxt").read_text().replace(f'name: "{E2E}"', f'name: "{name}"')
        if name == "e2e_no_accelerator":
            start = cfg.index("optimization {")
            end = cfg.index("\n}\n", start) + 3
            cfg = cfg[:start] + cfg[end:]
        else:
            graph = onnx.load(str(served / name / "1/model.onnx"))
            next(n for n in graph.graph.node if n.op_type == "EfficientNMS_TRT").domain = "TRT"
            graph.opset_import.append(onnx.helper.make_opsetid("TRT", 1))
            onnx.save(graph, str(served / name / "1/model.onnx"))
        (served / name / "config.pbtxt").write_text(cfg)


def test_every_served_graph_passes_plain_onnxruntime_and_end2end_folders_enable_tensorrt(repo):
    """What Triton's real onnxruntime backend does first, on the unchanged smoke build: create a plain
    onnxruntime session. Every graph loads, but the End2End ones, which fail only for the missing CPU kernel
    of EfficientNMS_TRT — and exactly those folders enable the TensorRT accelerator that runs it."""
    import onnxruntime as ort
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    served = [n for n in folders(repo) if 'platform: "onnxruntime_onnx"' in repo.path(f"models/{n}/config.pbtxt").read_text()]
    assert len(served) == 4
    for name in served:
        cfg = text_format.Parse(repo.path(f"models/{name}/config.pbtxt").read_text(), mc.ModelConfig())
        accelerators = [a.name for a in cfg.optimization.execution_accelerators.gpu_execution_accelerator]
        path = str(repo.path(f"models/{name}/1/model.onnx"))
        if name.endswith("_end2end"):
            with pytest.raises(Exception, match="NOT_IMPLEMENTED.*Could not find an implementation for EfficientNMS_TRT"):
                ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            assert accelerators == ["tensorrt"], name
        else:
            ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            assert accelerators == [], name


def test_the_standin_refuses_what_the_real_backend_refuses(server):
    ok, why = server.load("e2e_trt_domain")
    assert not ok and "TRT:EfficientNMS_TRT(-1) is not a registered function/op" in why, why
    ok, why = server.load("e2e_no_accelerator")
    assert not ok and "enables no 'tensorrt' gpu_execution_accelerator" in why, why


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
    from helpers.project import REPORTS
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
        from helpers.project import REPORTS
        poll = [ln for ln in why.splitlines() if "Poll failed" in ln]
        trt_report = {"invalid_config (control)": (poll or why.splitlines())[-1].strip()}
        REPORTS["Triton 2.51 config validation of TensorRT folders (stand-in plans)"] = trt_report
        for name in trt_folders:
            ok, why = server.load(name)
            # Validation passed: Triton went on to look for the tensorrt backend, which is absent here.
            assert not ok and "unable to find backend library for backend 'tensorrt'" in why, why
            trt_report[name] = "config accepted; stops at: unable to find backend library for backend 'tensorrt'"
