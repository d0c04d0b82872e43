"""Every artifact is complete or absent: killed builds and failed checks leave no finished-looking target."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

ONNX = "pytorch_models/staged/smoke_yolo11n/1/model.onnx"  # built here, then published as a version
SERVED = "models/smoke_yolo11n"


def test_failed_verification_leaves_no_target(project):
    # Make the parity check impossible to pass, as a broken exporter would.
    code = project.path("pipeline/families/ultralytics.py")
    code.write_text(code.read_text().replace("SCORE_TOL = 1e-4", "SCORE_TOL = -1.0"))
    run = project.doit("manifest=manifests/smoke.yaml", "onnx:smoke_yolo11n")
    assert run.rc != 0
    assert "disagrees with its source model" in " ".join(run.text.split()) and "Traceback" not in run.text
    assert not project.path(ONNX).exists()
    assert not project.path(ONNX + ".verification.json").exists()
    assert not project.path(SERVED).exists()  # nothing published
    assert not list(project.path("pytorch_models").rglob(".*tmp-*"))


def test_failed_rebuild_removes_the_stale_target(project):
    assert project.doit("manifest=manifests/smoke.yaml", "onnx:smoke_yolo11n").rc == 0
    code = project.path("pipeline/families/ultralytics.py")
    code.write_text(code.read_text().replace("SCORE_TOL = 1e-4", "SCORE_TOL = -1.0"))
    assert project.doit("manifest=manifests/smoke.yaml", "onnx:smoke_yolo11n").rc != 0
    assert not project.path(ONNX).exists()  # not the old graph, which no longer matches its recipe
    # the version published before stays served, complete, and is not made a new version of anything
    assert sorted(p.name for p in project.path(SERVED).iterdir() if p.name.isdigit()) == ["1"]
    assert project.path(f"{SERVED}/1/model.onnx").stat().st_size > 1_000_000


def _mid_export(project, stop) -> int:
    """Start `doit onnx:smoke_yolo11n` (its checkpoint built first), call stop(proc) once the export is
    writing its graph, and return the exit status."""
    assert project.doit("materialize:smoke_yolo11n", "manifest=manifests/smoke.yaml").rc == 0
    proc = subprocess.Popen([sys.executable, "-m", "doit", "manifest=manifests/smoke.yaml", "onnx:smoke_yolo11n"],
                            cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    version_dir = project.path("pytorch_models/staged/smoke_yolo11n/1")
    deadline = time.time() + 120
    try:
        while time.time() < deadline and not list(version_dir.glob(".model.tmp-*.onnx")):
            time.sleep(0.02)
        assert list(version_dir.glob(".model.tmp-*.onnx")), "export never started"
        stop(proc)
    finally:
        rc = proc.wait(timeout=120)
    return rc


def test_sigkill_mid_export_leaves_no_finished_target(project):
    _mid_export(project, lambda proc: os.killpg(proc.pid, signal.SIGKILL))
    version_dir = project.path("pytorch_models/staged/smoke_yolo11n/1")
    assert not project.path(ONNX).exists() and not project.path(SERVED).exists()
    assert not project.path(ONNX + ".verification.json").exists()
    # The next run cleans the leftover and builds the same thing a clean build does.
    run = project.doit("manifest=manifests/smoke.yaml", "onnx:smoke_yolo11n")
    assert run.rc == 0 and "export_onnx:smoke_yolo11n" in run.executed
    assert not list(version_dir.glob(".model.tmp-*"))
    assert project.path(ONNX).stat().st_size > 1_000_000
    assert os.path.samefile(project.path(ONNX), project.path(f"{SERVED}/1/model.onnx"))


def test_an_interrupted_build_exits_non_zero_and_leaves_no_finished_target(project):
    """Ctrl-C mid-step: the run reports failure (a successful run skips Python's teardown with status 0; an
    interrupted one must not)."""
    rc = _mid_export(project, lambda proc: proc.send_signal(signal.SIGINT))
    assert rc != 0
    assert not project.path(ONNX).exists() and not project.path(ONNX + ".verification.json").exists()
    assert not project.path(SERVED).exists()
