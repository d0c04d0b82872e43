"""CI caching on recipe hashes: a fresh clone with a warm cache builds nothing; crashes and races are safe."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers.project import Project, make_project

pytestmark = pytest.mark.slow

MANIFEST = "defaults: {formats: [onnx, onnx_end2end], imgsz: 256, max_batch: 4}\n" \
           "models:\n  a: {arch: yolo11n, class_names: [x, y]}\n"
TASKS = {"materialize:a", "export_onnx:a", "config:a", "labels:a", "probe:a", "end2end_onnx:a", "config:a_end2end",
         "labels:a_end2end", "probe:a_end2end"}  # the steps (cached); publications are made from them, not cached
PUBLISH = {"publish:a", "publish:a_end2end"}


def artifacts(proj: Project) -> dict[str, str]:
    return {p: hashlib.sha256(proj.path(p).read_bytes()).hexdigest() for p in proj.generated()}


def fresh(tmp_path, name) -> Project:
    proj = make_project(tmp_path / name)
    proj.write("manifests/m.yaml", MANIFEST)
    return proj


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A clean build with a cache: the artifacts every other run must reproduce byte for byte."""
    d = tmp_path_factory.mktemp("cache")
    proj = fresh(d, "ref")
    cache = d / "shared-cache"
    run = proj.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": str(cache)})
    assert run.rc == 0 and run.executed == TASKS | PUBLISH, run.text
    return proj, cache, artifacts(proj)


def test_fresh_clone_with_warm_cache_builds_nothing(reference, tmp_path):
    src, cache, want = reference
    clone = fresh(tmp_path, "clone")  # another path, no models/, no doit state
    t = time.perf_counter()
    run = clone.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": f"file://{cache}"})
    assert run.rc == 0, run.text
    assert run.out.count("restored from the artifact cache") == len(TASKS), run.out
    assert "YOLO11n summary" not in run.text and artifacts(clone) == want
    assert clone.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": str(cache)}).executed == set()
    print(f"\nwarm-cache fresh clone: {time.perf_counter() - t:.2f} s")


def test_restored_outputs_without_state_or_cache_are_kept(reference, tmp_path):
    src, _, want = reference
    clone = fresh(tmp_path, "clone")
    for top in ("models", "pytorch_models"):
        shutil.copytree(src.path(top), clone.path(top), dirs_exist_ok=True)
    later = time.time() + 500
    for p in clone.root.rglob("*"):
        os.utime(p, (later, later))
    run = clone.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": "off"})
    assert run.rc == 0
    # recorded steps recognise their outputs; the record-less small ones (config, labels) are re-made
    assert run.out.count("already built with this recipe") == 3, run.out
    assert artifacts(clone) == want


def test_recipes_and_manifest_key_are_stable_and_sensitive(reference, tmp_path):
    src, _, _ = reference
    clone = fresh(tmp_path, "clone")
    key = lambda p: p.doit("recipe", "--key", "manifest=manifests/m.yaml").out.strip()  # noqa: E731
    assert key(src) == key(clone) and len(key(src)) == 64
    data = json.loads(src.doit("recipe", "--json", "manifest=manifests/m.yaml").out)
    rec = json.loads(src.path("models/a/1/model.onnx.verification.json").read_text())
    assert {r["task"]: r["recipe"] for r in data["artifacts"]}["export_onnx:a"] == rec["recipe"]
    clone.write("manifests/m.yaml", MANIFEST.replace("max_batch: 4", "max_batch: 8"))
    assert key(clone) != key(src)


def test_corrupt_cache_entry_is_never_served(reference, tmp_path):
    src, cache, want = reference
    bad = tmp_path / "bad-cache"
    shutil.copytree(cache, bad)
    rec = json.loads(src.path("models/a/1/model.onnx.verification.json").read_text())["recipe"]
    blob = bad / rec[:2] / rec / json.loads((bad / rec[:2] / rec / "index.json").read_text())["outputs"][0]["blob"]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    clone = fresh(tmp_path, "clone")
    run = clone.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": str(bad)})
    assert run.rc == 0
    assert f"entry {rec[:12]}" in run.err and "does not match its recorded SHA-256" in run.err
    assert "export_onnx:a: restored" not in run.out
    assert artifacts(clone) == want
    assert (bad / rec[:2] / rec / "index.json").exists()  # rebuilt and stored again, intact
    index = json.loads((bad / rec[:2] / rec / "index.json").read_text())
    stored = bad / rec[:2] / rec / index["outputs"][0]["blob"]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == want["models/a/1/model.onnx"]


def test_unusable_cache_degrades_to_building_with_a_warning(tmp_path):
    not_a_dir = tmp_path / "cache-file"
    not_a_dir.write_text("a file where the cache directory should be")
    proj = fresh(tmp_path, "p")
    run = proj.doit("manifest=manifests/m.yaml", "onnx:a", env={"PIPELINE_CACHE": str(not_a_dir)})
    assert run.rc == 0, run.text
    assert "warning: artifact cache" in run.err and "the build goes on" in run.err
    assert proj.path("models/a/1/model.onnx").exists()


def test_two_doit_runs_at_once_never_interleave(tmp_path):
    proj = fresh(tmp_path, "p")
    env = {**os.environ, "PIPELINE_CACHE": "off"}
    cmd = [sys.executable, "-m", "doit", "manifest=manifests/m.yaml"]
    first = subprocess.Popen(cmd, cwd=proj.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    second = subprocess.Popen(cmd, cwd=proj.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out1, err1 = first.communicate(timeout=600)
    out2, err2 = second.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert "another doit is building this project" in err2
    assert "materialize:a" in out1 and ".  materialize:a" not in out2  # the second found it all done
    json.loads(proj.path(".doit.json").read_text())  # the state is intact JSON


@pytest.mark.parametrize("when", ["materialize", "export", "end2end"])
def test_sigkill_then_rerun_equals_a_clean_build(reference, tmp_path, when):
    _, _, want = reference
    proj = fresh(tmp_path, "p")
    env = {**os.environ, "PIPELINE_CACHE": "off"}
    marker = {"materialize": "pytorch_models/.a.untrained.tmp-*.pt",
              "export": "pytorch_models/staged/a/1/.model.tmp-*.onnx",
              "end2end": "pytorch_models/staged/a_end2end/1/.model.tmp-*.onnx"}[when]
    proc = subprocess.Popen([sys.executable, "-m", "doit", "manifest=manifests/m.yaml"], cwd=proj.root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(proj.root.glob(marker)) and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = proj.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": "off"})
    assert run.rc == 0, run.text
    assert artifacts(proj) == want
    assert not list(proj.root.rglob("*.tmp-*"))
