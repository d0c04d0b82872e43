"""One Triton folder with plans for several GPU architectures, built by several hosts over a shared cache.

No TensorRT and no GPU here: each "host" is a fresh clone whose doit sees the STAND-IN TensorRT
(tests/trt_standin.py) and a stand-in nvidia-smi reporting that host's GPU. Its "plans" are not
engines (they name the GPU that built them); what is tested is who builds what, what is restored,
when a folder is published, and what the assembler (no TensorRT at all) writes or refuses.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil

import pytest

from helpers import trt_standin as S
from helpers.project import DoitRun, Project, make_project

pytestmark = pytest.mark.slow

MANIFEST = """\
defaults: {formats: [onnx, trt, trt_end2end], max_batch: 4, imgsz: 128, tensorrt: "10.13.3.9",
           gpu_targets: {"7.5": null, "8.6": "NVIDIA A10", "9.0": null}}
models:
  smoke: {arch: yolo11n, class_names: [a, b]}
"""
GPUS = {"t4": ("Tesla T4", "7.5"), "a10": ("NVIDIA A10", "8.6"), "a40": ("NVIDIA A40", "8.6"),
        "h200": ("NVIDIA H200", "9.0")}
BUILDER = {"7.5": "t4", "8.6": "a10", "9.0": "h200"}  # the host that builds each target
FOLDERS = ("smoke_trt", "smoke_trt_end2end")


class Host(Project):
    """A fresh clone on one simulated machine: its GPU (or none), the shared cache."""

    def __init__(self, root, tmp, cache_url, gpu=None, extra_env=None):
        super().__init__(root)
        self.env = {"PIPELINE_CACHE": cache_url, "XDG_CACHE_HOME": str(tmp / "xdg"), **(extra_env or {})}
        self.log = tmp / "trt.log"
        if gpu:
            name, cc = GPUS[gpu]
            self.env.update(S.install(tmp / "site-packages", "10.13.3.9", cc=cc, gpu_name=name))
            self.env["TRT_STANDIN_LOG"] = str(self.log)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (self.env.get("PYTHONPATH"), str(root)) if p)

    def doit(self, *args) -> DoitRun:
        return super().doit("manifest=manifests/m.yaml", *args, env=self.env)

    def builds(self, run: DoitRun) -> list[str]:
        """The plan tasks this run built: executed, not kept, restored or left to another host — and as
        many engines as the stand-in TensorRT's own log counts."""
        done = set(re.findall(r"^   (plan:\S+): (?:restored|not built here|already built)", run.out, re.M))
        built = sorted(t for t in run.executed if t.startswith("plan:") and t not in done)
        engines = [e for e in S.read_log(self.log) if e["kind"] == "call" and e["name"] == "build_serialized_network"]
        assert len(engines) == len(built), (built, len(engines))
        return built


class Fleet:
    def __init__(self, tmp, cache_url, extra_env=None):
        self.tmp, self.cache_url, self.extra_env, self.n = tmp, cache_url, extra_env or {}, 0

    def host(self, gpu=None) -> Host:
        self.n += 1
        d = self.tmp / f"{self.n}-{gpu or 'assembler'}"
        proj = make_project(d / "proj")
        proj.write("manifests/m.yaml", MANIFEST)
        return Host(proj.root, d, self.cache_url, gpu, self.extra_env)


def missing_pairs(text: str) -> set[tuple[str, str]]:
    return set(re.findall(r"^\s+models/(\S+)\s+compute capability (\S+): build on", text, re.M))


def repository(host: Host) -> dict[str, str]:
    return {str(p.relative_to(host.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(host.path("models").rglob("*")) if p.is_file() and p.name != "README.md"}


@pytest.fixture(scope="module")
def local_fleet(tmp_path_factory):
    """Hosts in the order A40, A10, T4, (assembler too early), H200, assembler, over a file:// cache."""
    tmp = tmp_path_factory.mktemp("fleet")
    fleet = Fleet(tmp, f"file://{tmp / 'cache'}")
    runs = {}
    for gpu in ("a40", "a10", "t4"):
        host = fleet.host(gpu)
        runs[gpu] = (host, host.doit())
    early = fleet.host()
    runs["early"] = (early, early.doit("assemble"))
    h200 = fleet.host("h200")
    runs["h200"] = (h200, h200.doit())
    runs["h200 again"] = (h200, h200.doit())
    assembler = fleet.host()
    runs["assembler"] = (assembler, assembler.doit("assemble"))
    return runs


def test_each_gpu_host_builds_only_its_own_targets(local_fleet):
    for gpu in ("a40", "a10", "t4", "h200"):
        host, run = local_fleet[gpu]
        assert run.rc == 0, run.text
        mine = [cc for cc, builder in BUILDER.items() if builder == gpu]
        want = sorted(f"plan:{f}.sm{cc.replace('.', '')}" for f in FOLDERS for cc in mine)
        assert host.builds(run) == want, (gpu, run.out)
    # the A40 is compute capability 8.6 too, but the manifest pins 8.6 to the A10: it builds nothing
    host, run = local_fleet["a40"]
    assert "this host's GPU is NVIDIA A40, and the manifest pins 8.6 to NVIDIA A10" in run.out, run.out
    # later hosts restore what earlier ones built: the recipes agree across hosts
    host, run = local_fleet["t4"]
    assert "plan:smoke_trt.sm86: restored from the artifact cache" in run.out, run.out


def test_a_folder_is_published_only_when_every_target_is_there(local_fleet):
    for gpu in ("a40", "a10", "t4"):
        host, run = local_fleet[gpu]
        for folder in FOLDERS:
            assert not host.path(f"models/{folder}").exists(), (gpu, folder)  # Triton would refuse it
            assert f"models/{folder}: no plan yet for compute capability 9.0 (1/model.sm90.plan): build it with " \
                   "doit on a GPU host with compute capability 9.0 and TensorRT 10.13.3" in run.out, run.out
        assert host.path("models/smoke/config.pbtxt").is_file()  # the rest of the repository is served
    host, run = local_fleet["h200"]
    for folder in FOLDERS:
        assert f"models/{folder}: version 1 published; versions 1 kept; plans for compute capability 7.5, 8.6, " \
               "9.0" in run.out, run.out
    host, again = local_fleet["h200 again"]
    assert again.rc == 0 and again.executed == set(), again.out


def test_the_assembler_lists_exactly_the_missing_pairs(local_fleet):
    host, run = local_fleet["early"]
    assert run.rc != 0 and "Traceback" not in run.text, run.text
    assert "the repository is incomplete: 2 (folder, GPU target) pair(s)" in run.text, run.text
    assert missing_pairs(run.text) == {(f, "9.0") for f in FOLDERS}, run.text
    assert not any(host.path(f"models/{f}").exists() for f in FOLDERS)
    assert host.builds(run) == []  # no TensorRT on the assembler


def test_the_assembler_writes_the_complete_repository_from_the_cache(local_fleet):
    host, run = local_fleet["assembler"]
    assert run.rc == 0, run.text
    assert "assemble: complete: 2 folder(s) with GPU targets, 6 plan(s)" in run.out
    assert "export_onnx:smoke: restored from the artifact cache" in run.out  # nothing was rebuilt here
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    for folder in FOLDERS:
        cfg = text_format.Parse(host.path(f"models/{folder}/config.pbtxt").read_text(), mc.ModelConfig())
        assert dict(cfg.cc_model_filenames) == {"7.5": "model.sm75.plan", "8.6": "model.sm86.plan",
                                                "9.0": "model.sm90.plan"}
        for cc, filename in cfg.cc_model_filenames.items():
            plan = host.path(f"models/{folder}/1/{filename}")
            assert plan.read_bytes() == S.plan_bytes(*GPUS[BUILDER[cc]]), (folder, cc)  # built by the right host
        assert host.path(f"models/{folder}/labels.txt").read_text() == "a\nb\n"
        assert not host.path(f"models/{folder}/1/model.plan").exists()


def test_host_order_and_cache_backend_do_not_change_a_byte(local_fleet, tmp_path):
    """Another order (H200, T4, A10), over S3 (moto's server, HTTP): the same repository, byte for byte."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        h, port = server.get_host_and_port()
        env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": f"http://{h}:{port}"}
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                     aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket="fleet")
        fleet = Fleet(tmp_path, "s3://fleet/artifacts", env)
        for gpu in ("h200", "t4", "a10"):
            run = fleet.host(gpu).doit()
            assert run.rc == 0, run.text
        assembler = fleet.host()
        run = assembler.doit("assemble")
        assert run.rc == 0, run.text
    finally:
        server.stop()
    first, _ = local_fleet["assembler"]
    assert repository(assembler) == repository(first)


@pytest.mark.triton
def test_the_assembled_folders_pass_tritons_strict_config_validation(local_fleet, tmp_path):
    from helpers.triton_harness import TritonServer

    host, _ = local_fleet["assembler"]
    served = tmp_path / "served"
    for folder in FOLDERS:
        shutil.copytree(host.path(f"models/{folder}"), served / folder)
        cfg = served / folder / "config.pbtxt"
        cfg.write_text(cfg.read_text().replace("KIND_GPU", "KIND_CPU"))
    control = served / "invalid_config"  # Triton's validation does reject a broken config
    shutil.copytree(served / FOLDERS[0], control)
    text = (control / "config.pbtxt").read_text().replace(f'name: "{FOLDERS[0]}"', 'name: "invalid_config"')
    (control / "config.pbtxt").write_text(text.replace("max_batch_size: ", "max_batch_size: -"))
    with TritonServer(served, tmp_path) as server:
        for folder in FOLDERS:
            ok, why = server.load(folder)
            # validation passed; no tensorrt backend exists here to go further
            assert not ok and "unable to find backend library for backend 'tensorrt'" in why, why
        ok, why = server.load("invalid_config")
        assert not ok and "unable to find backend library" not in why, why


def test_a_published_version_stays_complete_until_the_next_one_is(local_fleet, tmp_path):
    """On a copy of the H200 host: a stray file in a published version is noticed and removed; when this host's
    plan fails to rebuild, or a target goes missing, the last complete version keeps serving and no incomplete
    version ever appears."""
    from pipeline.engine.publish import versions_of

    host, _ = local_fleet["h200"]
    shutil.copytree(host.root, tmp_path / "proj", symlinks=True)
    h = Host(tmp_path / "proj", tmp_path, host.env["PIPELINE_CACHE"], "h200")
    h.doit("publish:smoke_trt")  # the copy's published files are copies: checked by content once
    quiet = h.doit("publish:smoke_trt")  # a no-op: the next call is checked against its snapshot first
    assert quiet.rc == 0 and quiet.executed == set() and h.path(".pipeline/noop").is_dir(), quiet.text
    published = h.path("models/smoke_trt")
    complete = sorted(p.name for p in (published / "1").iterdir())
    stray = published / "1/model.plan"
    stray.write_bytes(b"left over from a single-plan build")
    run = h.doit("publish:smoke_trt")
    assert run.rc == 0 and "publish:smoke_trt" in run.executed and not stray.exists(), run.text
    assert versions_of(published) == [1] and sorted(p.name for p in (published / "1").iterdir()) == complete
    # this host's TensorRT no longer is the Triton's and a plan setting changes: its plan fails to build;
    # version 1, complete, keeps serving
    installed = dict(h.env)
    h.write("manifests/m.yaml", MANIFEST.replace("max_batch: 4", "max_batch: 4, workspace_gb: 2"))
    h.env.update(S.install(tmp_path / "site-10.16", "10.16.1.11", cc="9.0", gpu_name="NVIDIA H200"))
    run = h.doit("trt:smoke")
    assert run.rc != 0 and "TensorRT 10.16.1.11 is installed" in run.text, run.text
    assert versions_of(published) == [1] and sorted(p.name for p in (published / "1").iterdir()) == complete
    # as before: everything is still built (recorded) or in the cache: the same bytes, no new version
    h.env = installed
    h.write("manifests/m.yaml", MANIFEST)
    run = h.doit()
    assert run.rc == 0 and versions_of(published) == [1], run.text
    # a setting of every plan changes: this host rebuilds its own target, the others are missing: version 2
    # waits for them, version 1 is still served
    h.write("manifests/m.yaml", MANIFEST.replace("max_batch: 4", "max_batch: 8"))
    run = h.doit()
    assert run.rc == 0, run.text
    assert "models/smoke_trt: no plan yet for compute capability 7.5 (1/model.sm75.plan)" in run.out, run.out
    assert "(version 1 is still served)" in run.out, run.out
    assert versions_of(published) == [1] and "max_batch_size: 4" in (published / "config.pbtxt").read_text()
    assert h.path("models/smoke/2/version.json").is_file()  # the folders without GPU targets moved on
