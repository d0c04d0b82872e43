"""TensorRT plans, tested the only ways possible here — none of these builds a real engine.

* Name checks: the plan builder runs against a STAND-IN `tensorrt` generated from each release's real
  binding names (10.13, 10.16, 11.4): a name missing from that release fails the build, as it would on
  a real host. A negative control proves the stand-in refuses what the release lacks.
* Orchestration with the stand-in: profile shapes, flags, workspace, stamps, atomic writes, bare plan,
  timing cache outside the repo, one build per GPU at a time, CUDA only in a child process, staleness.
* Skip/fail without TensorRT.
Real-TensorRT tests live in test_tensorrt_real.py (marker `tensorrt`), which skip here.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import trt_standin as S
from helpers.project import Project, make_project

pytestmark = pytest.mark.slow

MANIFEST = "defaults: {formats: [onnx, trt, trt_end2end], max_batch: 8, imgsz: 320}\nmodels:\n" \
           "  smoke: {arch: yolo11n, class_names: [a, b]}\n"
PLANS = {"plan:smoke_trt", "plan:smoke_trt_end2end"}
PUBLISH = {"publish:smoke_trt", "publish:smoke_trt_end2end"}
STAGED = "pytorch_models/staged"  # a plan task alone builds here; its folder publishes it
POLYGRAPHY_PROBES = {"int8_calibrator", "QuantizationFlag"}  # optional features Polygraphy tries (AttributeError)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The ONNX side built once, without TensorRT."""
    proj = make_project(tmp_path_factory.mktemp("trt") / "proj")
    proj.write("manifests/m.yaml", MANIFEST)
    run = proj.doit("manifest=manifests/m.yaml")
    assert run.rc == 0, run.text
    return proj


class TrtProject(Project):
    """A copy of the built project whose doit sees a stand-in TensorRT of a chosen release."""

    def __init__(self, root, tmp):
        super().__init__(root)
        self.tmp, self.log, self.env = tmp, tmp / "trt.log", {}

    def use(self, version, cc="9.0"):
        self.env = S.install(self.tmp / "site-packages", version, cc=cc)
        self.env.update(TRT_STANDIN_LOG=str(self.log), XDG_CACHE_HOME=str(self.tmp / "cache"))
        return self

    def doit(self, *args, extra_env=None, timeout=600):
        env = {**os.environ, **self.env, **(extra_env or {}), "PYTHONDONTWRITEBYTECODE": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.env.get("PYTHONPATH"), str(self.root)) if p)
        p = subprocess.run([sys.executable, "-m", "doit", *args], cwd=self.root, env=env, capture_output=True,
                           text=True, timeout=timeout)
        from helpers.project import DoitRun
        return DoitRun(p.returncode, p.stdout, p.stderr)

    def calls(self, name):
        return [e for e in S.read_log(self.log) if e["kind"] == "call" and e["name"] == name]


@pytest.fixture
def trt(base, tmp_path):
    shutil.copytree(base.root, tmp_path / "proj")
    return TrtProject(tmp_path / "proj", tmp_path)


@pytest.mark.parametrize("version", S.RELEASES)
def test_every_tensorrt_name_used_exists_in_that_release(trt, version):
    run = trt.use(version).doit("manifest=manifests/m.yaml")
    assert run.rc == 0, run.text
    assert run.executed >= PLANS | {"config:smoke_trt", "config:smoke_trt_end2end"}
    log = S.read_log(trt.log)
    used = {e["name"] for e in log if e["kind"] in ("name", "set")}
    # Polygraphy probes a few optional features and carries on without them, as it does with the real
    # module: on 11.x the INT8 calibrator (removed) and quantization flags
    missing = {e["name"] for e in log if e["kind"] == "missing"}
    assert missing <= POLYGRAPHY_PROBES, missing
    names = S.release_names(version)
    assert all(S.known(n, names) for n in used)
    for must in ("STRONGLY_TYPED", "parse_from_file", "set_memory_pool_limit", "WORKSPACE", "set_shape",
                 "build_serialized_network", "create_timing_cache", "progress_monitor", "deserialize_cuda_engine"):
        assert must in used, must
    assert "FP16" not in used and "EXPLICIT_BATCH" not in used  # precision comes from the ONNX on both
    assert "platform_has_fast_fp16" not in used  # gone in 11


def test_the_standin_refuses_what_a_release_lacks(tmp_path):
    """Negative control: were FP16 or EXPLICIT_BATCH reachable on the 11.x path, the test above fails."""
    env = S.install(tmp_path / "site-packages", "11.4.0.106")
    code = ("import tensorrt as t\nfor n in ('FP16', 'EXPLICIT_BATCH', 'platform_has_fast_fp16'):\n"
            "    try:\n        getattr(t.BuilderFlag, n); print('HAS', n)\n    except AttributeError:\n"
            "        print('NO', n)\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                         text=True).stdout
    assert out.split("\n")[:3] == ["NO FP16", "NO EXPLICIT_BATCH", "NO platform_has_fast_fp16"]
    env = S.install(tmp_path / "site-packages", "10.16.1.11")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                         text=True).stdout
    assert out.split("\n")[:2] == ["HAS FP16", "HAS EXPLICIT_BATCH"]


def test_build_orchestration_with_the_standin(trt):
    run = trt.use("11.4.0.106", cc="9.0").doit("manifest=manifests/m.yaml")
    assert run.rc == 0, run.text
    shapes = {c["input"]: c for c in trt.calls("set_shape")}
    assert shapes["images"]["min"] == [1, 3, 320, 320]
    assert shapes["images"]["opt"] == [4, 3, 320, 320] and shapes["images"]["max"] == [8, 3, 320, 320]
    assert {c["size"] for c in trt.calls("set_memory_pool_limit")} == {4 << 30}
    parsed = {c["path"]: c["dtype"] for c in trt.calls("parse_from_file")}
    assert parsed == {"pytorch_models/smoke.fp16.onnx": "FLOAT16", "pytorch_models/smoke_end2end.fp16.onnx": "FLOAT16"}
    assert not trt.calls("set_flag")
    # TF32 is on by default in TensorRT: cleared, so FP32 layers (box decoding, NMS inputs) stay FP32
    tf32 = [e for e in S.read_log(trt.log) if e["kind"] == "name" and e["name"] == "TF32"]
    assert len(trt.calls("clear_flag")) == 2 and len(tf32) >= 2 and {e["where"] for e in tf32} == {"BuilderFlag"}
    assert {c["cuda_device_order"] for c in trt.calls("builder_created")} == {"PCI_BUS_ID"}
    assert all(c["accepted"] for c in trt.calls("set_timing_cache"))
    builds = trt.calls("build_serialized_network")
    assert all(b["has_monitor"] for b in builds)
    assert all("isolated" in " ".join(b["argv"]) for b in builds)  # never in doit's own process

    plan = trt.path("models/smoke_trt_end2end/1/model.plan")
    assert plan.read_bytes() == S.plan_bytes()  # the bare serialized engine: no length/JSON header
    rec = json.loads((plan.parent / "model.plan.verification.json").read_text())
    v = rec["verification"]
    assert v["tensorrt"] == "11.4.0.106" and v["compute_capability"] == "9.0" and "stand-in" in v["gpu"]
    assert v["profile"] == {"min": [1, 3, 320, 320], "opt": [4, 3, 320, 320], "max": [8, 3, 320, 320]}
    assert "pytorch_models/smoke_end2end.fp16.onnx" in rec["inputs"]  # the ONNX SHA-256 it was built from
    assert rec["params"]["tensorrt"] == "11.4.0.106" and rec["params"]["compute_capability"] == "9.0"
    assert rec["params"]["gpu"] == "NVIDIA H200 (stand-in)" and rec["params"]["allow_tf32"] is False
    assert v["tf32"] is False and v["progress_monitor_errors"] == []
    # one timing cache per TensorRT version and GPU model, outside the repository; one lock per GPU per host
    cache = trt.tmp / "cache/triton-export-pipeline/tensorrt/trt-11.4.0.106-nvidia-h200-stand-in-sm90.timing-cache"
    assert cache.exists() and not str(cache).startswith(str(trt.root))
    assert [p.name for p in (trt.tmp / "cache/triton-export-pipeline/locks").iterdir()] == [
        "GPU-5ea7d1e0-0000-4000-8000-000000000000.lock"]
    assert not trt.path(".pipeline/locks").exists()
    assert trt.calls("combine")  # the second build merged with what the first wrote
    assert [c["size"] for c in trt.calls("create_timing_cache")][0] == 0
    assert max(c["size"] for c in trt.calls("create_timing_cache")) > 0  # the second build reused it

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc
    cfg = text_format.Parse(trt.path("models/smoke_trt_end2end/config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 8
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in cfg.input] == [
        ("images", "TYPE_FP16", [3, 320, 320])]
    assert [o.name for o in cfg.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    assert [mc.DataType.Name(o.data_type) for o in cfg.output] == ["TYPE_INT32", "TYPE_FP32", "TYPE_FP32",
                                                                   "TYPE_INT32"]
    assert mc.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind) == "KIND_GPU"
    assert trt.path("models/smoke_trt/labels.txt").read_text() == "a\nb\n"


def test_plan_staleness(trt):
    assert trt.use("10.16.1.11", cc="9.0").doit("manifest=manifests/m.yaml").rc == 0
    assert trt.doit("manifest=manifests/m.yaml").executed == set()
    # config-only change: config rewritten, plans untouched
    trt.write("manifests/m.yaml", MANIFEST.replace("imgsz: 320}", "imgsz: 320, dynamic_batching: "
                                                                  "{max_queue_delay_us: 100}}"))
    run = trt.doit("manifest=manifests/m.yaml")
    assert run.executed == {f"{step}:{folder}" for step in ("config", "probe", "publish")
                            for folder in ("smoke", "smoke_trt", "smoke_trt_end2end")}, run.text
    # another GPU generation: plans only
    trt.use("10.16.1.11", cc="8.9")
    info = trt.doit("info", "manifest=manifests/m.yaml", "plan:smoke_trt")
    assert "compute_capability: '9.0' -> '8.9'" in info.out, info.out
    run = trt.doit("manifest=manifests/m.yaml")
    assert run.executed == PLANS | PUBLISH, run.text  # (and their folders' publication)
    # another TensorRT: plans only
    trt.use("11.4.0.106", cc="8.9")
    run = trt.doit("manifest=manifests/m.yaml")
    assert run.executed == PLANS | PUBLISH, run.text
    # build settings
    trt.write("manifests/m.yaml", MANIFEST.replace("max_batch: 8", "max_batch: 8, workspace_gb: 2"))
    run = trt.doit("manifest=manifests/m.yaml")
    assert PLANS <= run.executed and not any(t.startswith(("export_onnx", "fp16")) for t in run.executed)


def test_one_build_per_gpu_at_a_time(trt):
    run = trt.use("11.4.0.106").doit("-n", "2", "-P", "process", "manifest=manifests/m.yaml",
                                     extra_env={"TRT_STANDIN_BUILD_SECONDS": "1.5"})
    assert run.rc == 0, run.text
    starts = sorted(c["t"] for c in trt.calls("build_serialized_network"))
    ends = sorted(c["t"] for c in trt.calls("build_done"))
    imported = sorted(c["t"] for c in trt.calls("imported"))
    assert len(starts) == 2 and imported[1] < ends[0]  # both build processes were running at once...
    assert ends[0] <= starts[1]  # ...yet the second build started only after the first ended


def test_parser_errors_are_reported(trt):
    run = trt.use("11.4.0.106").doit("manifest=manifests/m.yaml", "plan:smoke_trt",
                                     extra_env={"TRT_STANDIN_PARSE_FAIL": "1"})
    assert run.rc != 0 and "Traceback" not in run.text
    assert "could not parse or build pytorch_models/smoke.fp16.onnx" in " ".join(run.text.split())
    assert "UNSUPPORTED_NODE: stand-in failure" in run.text
    assert not trt.path("models/smoke_trt").exists()


def test_without_tensorrt_plain_doit_skips_and_named_tasks_fail(base, tmp_path):
    shutil.copytree(base.root, tmp_path / "proj")
    proj = Project(tmp_path / "proj")
    run = proj.doit("manifest=manifests/m.yaml")
    assert run.rc == 0 and not any(t.startswith("plan:") for t in run.executed)
    notice = [ln for ln in run.err.splitlines() if "TensorRT is not installed" in ln]
    assert len(notice) == 1 and "skipping 2 TensorRT plan(s)" in notice[0]
    assert not proj.path("models/smoke_trt").exists() and proj.path("pytorch_models/smoke.fp16.onnx").exists()
    named = proj.doit("fp16_onnx", "manifest=manifests/m.yaml")  # a task basename first is a run too
    assert named.rc == 0 and "TensorRT is not installed" in named.err
    run = proj.doit("manifest=manifests/m.yaml", "trt_end2end:smoke")
    assert run.rc != 0 and "Traceback" not in run.text
    assert "plan:smoke_trt_end2end needs TensorRT, which is not installed here" in " ".join(run.text.split())
    assert not proj.path("models/smoke_trt_end2end").exists()


@pytest.mark.parametrize("version", S.RELEASES)
def test_names_in_the_real_tensorrt_tests_exist(version):
    """test_tensorrt_real.py never runs here; at least the TensorRT names it uses must exist."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).parent / "test_tensorrt_real.py").read_text())
    receivers = {"trt", "engine", "context", "logger"}
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.value, (ast.Name, ast.Attribute))
            and (getattr(n.value, "id", None) in receivers or getattr(n.value, "attr", None) == "TensorIOMode")}
    assert {"create_execution_context", "execute_async_v3", "set_tensor_address"} <= used
    names = S.release_names(version)
    assert [n for n in used if not S.known(n, names)] == []


def test_tf32_allowed_only_when_asked(trt):
    trt.write("manifests/m.yaml", MANIFEST.replace("max_batch: 8", "max_batch: 8, allow_tf32: true"))
    run = trt.use("10.16.1.11").doit("manifest=manifests/m.yaml", "plan:smoke_trt")
    assert run.rc == 0, run.text
    assert not trt.calls("clear_flag") and [c["flag"] for c in trt.calls("set_flag")] == ["BuilderFlag.TF32"]
    assert json.loads(trt.path(f"{STAGED}/smoke_trt/1/model.plan.verification.json").read_text())[
        "verification"]["tf32"] is True


def test_a_foreign_timing_cache_is_noticed_not_trusted(trt):
    assert trt.use("11.4.0.106").doit("manifest=manifests/m.yaml", "plan:smoke_trt").rc == 0  # writes the cache
    cache = trt.tmp / "cache/triton-export-pipeline/tensorrt/trt-11.4.0.106-nvidia-h200-stand-in-sm90.timing-cache"
    assert cache.is_file()
    trt.path(f"{STAGED}/smoke_trt/1/model.plan").unlink()
    run = trt.doit("manifest=manifests/m.yaml", "plan:smoke_trt",
                   extra_env={"TRT_STANDIN_CACHE_MISMATCH": "1", "PIPELINE_CACHE": "off"})  # built, not restored
    assert run.rc == 0, run.text
    assert [c["accepted"] for c in trt.calls("set_timing_cache")][-1] is False
    notes = json.loads(trt.path(f"{STAGED}/smoke_trt/1/model.plan.verification.json").read_text())["verification"]["notes"]
    assert any("does not match this GPU or TensorRT" in n for n in notes), notes
    assert not cache.exists() and cache.with_name(cache.name + ".refused").is_file()  # the next build starts fresh


def test_an_error_in_the_progress_display_never_cancels_a_build(trt):
    run = trt.use("11.4.0.106").doit("manifest=manifests/m.yaml", "plan:smoke_trt",
                                     extra_env={"TRT_STANDIN_MONITOR_BAD_STEP": "1"})
    assert run.rc == 0, run.text
    v = json.loads(trt.path(f"{STAGED}/smoke_trt/1/model.plan.verification.json").read_text())["verification"]
    assert v["progress_monitor_errors"] and "step_complete: TypeError" in v["progress_monitor_errors"][0]
    assert trt.path(f"{STAGED}/smoke_trt/1/model.plan").read_bytes() == S.plan_bytes()


def test_tensorrt_without_pip_metadata_is_found_without_importing_it(trt, tmp_path):
    """System packages and NGC containers may install TensorRT with no dist-info."""
    trt.env = S.install(tmp_path / "site-packages", "10.13.3.9", metadata=False)
    trt.env.update(TRT_STANDIN_LOG=str(trt.log), XDG_CACHE_HOME=str(tmp_path / "cache"))
    listing = trt.doit("list", "manifest=manifests/m.yaml")
    assert listing.rc == 0 and not S.read_log(trt.log)  # found, yet never imported by the process loading dodo.py
    run = trt.doit("manifest=manifests/m.yaml")
    assert run.rc == 0 and "TensorRT is not installed" not in run.err and PLANS <= run.executed, run.text
    rec = json.loads(trt.path(f"{STAGED}/smoke_trt/1/model.plan.verification.json").read_text())
    assert rec["params"]["tensorrt"] == rec["verification"]["tensorrt"] == "10.13.3.9"


@pytest.mark.parametrize("visible,want", [
    (None, "GPU-aaaa"), ("1", "GPU-bbbb"), ("GPU-bb", "GPU-bbbb"), ("MIG-cccc", "GPU-bbbb"), ("0,1", "GPU-aaaa"),
    ("", "hides every GPU"), ("-1", "hides every GPU"), ("7", "nvidia-smi lists 2"),
])
def test_cuda_visible_devices_names_the_gpu_a_plan_is_built_for(tmp_path, monkeypatch, visible, want):
    from pipeline.engine import tools

    env = S.install(tmp_path / "site-packages", "11.4.0.106", gpus=[
        ("NVIDIA L4", "8.9", "GPU-aaaa-1111"), ("NVIDIA A100-SXM4-40GB", "8.0", "GPU-bbbb-2222")],
        migs=[("GPU-bbbb-2222", "MIG-cccc-3333")])
    monkeypatch.setenv("PATH", env["PATH"])
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    tools._visible_gpu.cache_clear()
    try:
        if want.startswith("GPU-"):
            assert tools.visible_gpu()["uuid"].startswith(want)
        else:
            with pytest.raises(tools.NoVisibleGpu, match=want):
                tools.visible_gpu()
    finally:
        tools._visible_gpu.cache_clear()


def test_no_visible_gpu_is_a_clear_error(trt):
    run = trt.use("11.4.0.106").doit("manifest=manifests/m.yaml", "plan:smoke_trt",
                                     extra_env={"CUDA_VISIBLE_DEVICES": "-1"})
    assert run.rc != 0 and "Traceback" not in run.text
    assert "CUDA_VISIBLE_DEVICES is '-1', which hides every GPU" in " ".join(run.text.split())
    assert not trt.path("models/smoke_trt").exists()


def test_plans_are_built_only_for_the_tensorrt_of_the_target_triton(trt):
    # Triton 24.12 ships TensorRT 10.7.0.23 (pipeline/declarations/triton_releases.py): 10.13 must refuse.
    trt.write("manifests/m.yaml", MANIFEST.replace("imgsz: 320}", 'imgsz: 320, triton: "24.12"}'))
    run = trt.use("10.13.3.9").doit("manifest=manifests/m.yaml", "plan:smoke_trt")
    assert run.rc != 0 and "Traceback" not in run.text
    para = " ".join(run.text.split())
    for must in ("TensorRT 10.13.3.9 is installed", "Triton 24.12", "ships TensorRT 10.7.0.23",
                 'pip install "tensorrt==10.7.0.*"', "models.smoke.triton"):
        assert must in para, para
    assert not trt.calls("build_serialized_network") and not trt.path("models/smoke_trt").exists()

    # A release the table does not list, with its TensorRT named: built, and the target recorded.
    trt.write("manifests/m.yaml", MANIFEST.replace("imgsz: 320}", 'imgsz: 320, triton: "25.10", '
                                                                  'tensorrt: "10.13.3.9"}'))
    run = trt.doit("manifest=manifests/m.yaml", "plan:smoke_trt")
    assert run.rc == 0, run.text
    rec = json.loads(trt.path(f"{STAGED}/smoke_trt/1/model.plan.verification.json").read_text())
    assert rec["params"]["triton_target"]["triton"] == "25.10"
    assert rec["verification"]["target"] == {**rec["params"]["triton_target"], "checked": True}

    # No target: built as before, with a notice saying which Triton the plan is for; recorded unchecked.
    trt.write("manifests/m.yaml", MANIFEST)
    run = trt.doit("manifest=manifests/m.yaml", "plan:smoke_trt")
    assert run.rc == 0 and "plan:smoke_trt" in run.executed, run.text  # the target is part of the recipe
    assert "built with TensorRT 10.13.3.9; the plan loads only in a Triton release whose TensorRT" in run.err
    target = json.loads(trt.path(f"{STAGED}/smoke_trt/1/model.plan.verification.json").read_text())[
        "verification"]["target"]
    assert target["checked"] is False and target["tensorrt"] == "10.13.3.9"
