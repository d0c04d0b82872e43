"""What a user looks at: `doit status`, `doit graph`, `doit clean`, `doit builtins`."""
from __future__ import annotations

import json
import shutil

import pytest

pytestmark = pytest.mark.slow

MANIFEST = "defaults: {formats: [onnx], imgsz: 256, max_batch: 8}\nmodels:\n  mine: {pt_file: ../mine.pt}\n"


@pytest.fixture
def built(project, checkpoints):
    shutil.copy(checkpoints["det"], project.path("mine.pt"))
    project.write("manifests/m.yaml", MANIFEST)
    assert project.doit("manifest=manifests/m.yaml").rc == 0
    return project


def status(proj):
    run = proj.doit("status", "--json", "manifest=manifests/m.yaml")
    assert run.rc == 0, run.text
    return {r["task"]: r for r in json.loads(run.out)}


def test_status_says_what_is_there_and_why_it_is_stale(built):
    rows = status(built)
    assert set(rows) == {"inspect:mine", "export_onnx:mine", "config:mine", "labels:mine"}
    assert all(r["status"] == "up-to-date" and r["present"] for r in rows.values())
    assert rows["export_onnx:mine"]["verification"] == "passed" and rows["export_onnx:mine"]["bytes"] > 1e6
    built.write("manifests/m.yaml", MANIFEST.replace("max_batch: 8", "max_batch: 16"))
    built.path("models/mine/labels.txt").unlink()
    rows = status(built)
    assert rows["config:mine"]["status"] == "stale" and "max_batch: 8 -> 16" in rows["config:mine"]["why"][0]
    assert rows["labels:mine"]["status"] == "stale" and not rows["labels:mine"]["present"]
    assert rows["export_onnx:mine"]["status"] == "up-to-date"
    table = built.doit("status", "manifest=manifests/m.yaml")
    assert "export_onnx:mine" in table.out and "2 stale" in table.out


def test_graph_picture_coloured_by_status(built):
    built.path("models/mine/config.pbtxt").unlink()
    run = built.doit("graph", "--out", "graph.svg", "manifest=manifests/m.yaml")
    assert run.rc == 0, run.text
    dot = built.path("graph.dot").read_text()
    assert '"export_onnx:mine" [fillcolor="#b7e4b9", label="export_onnx:mine\\npipeline/builders/raw_onnx.py"]' in dot
    assert '"config:mine" [fillcolor="#ffcc80"' in dot       # stale: orange
    assert '"inspect:mine" -> "export_onnx:mine"' in dot and '"onnx:mine" [fillcolor="#dddddd"' in dot
    if shutil.which("dot"):
        assert built.path("graph.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


def test_clean_is_previewable_and_keeps_user_files(built):
    before = built.generated()
    preview = built.doit("clean", "-n", "manifest=manifests/m.yaml")
    assert preview.rc == 0 and "models/mine/1/model.onnx" in preview.out
    assert built.generated() == before
    run = built.doit("clean", "manifest=manifests/m.yaml")
    assert run.rc == 0
    assert built.generated() == []
    assert built.path("mine.pt").exists() and built.path("manifests/m.yaml").exists()


def test_builtins_lists_the_documented_sizes(project):
    run = project.doit("builtins", "--json")
    rows = json.loads(run.out)
    assert [(r["triton_name"], r["max_batch"]) for r in rows] == [
        ("yolov11_nano", 128), ("yolov11_small", 64), ("yolov11_medium", 32), ("yolov11_large", 16),
        ("yolov11_xlarge", 8)]
