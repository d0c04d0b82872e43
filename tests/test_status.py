"""What a user looks at: `doit status`, `doit graph`, `doit clean`, `doit builtins`."""
from __future__ import annotations

import json
import os
import re
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
    assert set(rows) == {"inspect:mine", "export_onnx:mine", "config:mine", "labels:mine", "probe:mine", "publish:mine"}
    assert rows["publish:mine"]["artifact"] == "models/mine/" and rows["publish:mine"]["serves"] == [1]
    assert all(r["status"] == "up-to-date" and r["present"] for r in rows.values())
    assert rows["export_onnx:mine"]["verification"] == "passed" and rows["export_onnx:mine"]["bytes"] > 1e6
    built.write("manifests/m.yaml", MANIFEST.replace("max_batch: 8", "max_batch: 16"))
    built.path("pytorch_models/staged/mine/labels.txt").unlink()
    rows = status(built)
    assert rows["config:mine"]["status"] == "stale" and "max_batch: 8 -> 16" in rows["config:mine"]["why"][0]
    assert rows["labels:mine"]["status"] == "stale" and not rows["labels:mine"]["present"]
    assert rows["export_onnx:mine"]["status"] == "up-to-date"
    assert rows["publish:mine"]["status"] == "stale"  # a staged file it published is gone
    table = built.doit("status", "manifest=manifests/m.yaml")
    assert "export_onnx:mine" in table.out and "3 stale" in table.out and "versions 1; serves 1" in table.out


def test_graph_picture_coloured_by_status(built):
    built.path("pytorch_models/staged/mine/config.pbtxt").unlink()
    run = built.doit("graph", "--out", "graph.svg", "manifest=manifests/m.yaml")
    assert run.rc == 0, run.text
    dot = built.path("graph.dot").read_text()
    assert '"export_onnx:mine" [fillcolor="#b7e4b9", label="export_onnx:mine\\npipeline/builders/raw_onnx.py"]' in dot
    assert '"config:mine" [fillcolor="#ffcc80"' in dot       # stale: orange
    assert '"publish:mine" [fillcolor="#ffcc80", label="publish:mine\\nmodels/mine/"]' in dot
    assert '"inspect:mine" -> "export_onnx:mine"' in dot and '"onnx:mine" [fillcolor="#dddddd"' in dot
    if shutil.which("dot"):
        assert built.path("graph.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


def test_clean_is_previewable_and_keeps_user_files(built):
    before = built.generated()
    preview = built.doit("clean", "-n", "manifest=manifests/m.yaml")
    assert preview.rc == 0 and "pytorch_models/staged/mine/1/model.onnx" in preview.out
    assert "remove models/mine/ (every version" in preview.out
    assert built.generated() == before
    run = built.doit("clean", "manifest=manifests/m.yaml")
    assert run.rc == 0
    assert built.generated() == []
    assert built.path("mine.pt").exists() and built.path("manifests/m.yaml").exists()


def test_builtins_lists_the_documented_sizes(project):
    run = project.doit("builtins", "--json")
    rows = json.loads(run.out)
    assert [(r["triton_name"], r["max_batch"]) for r in rows if r["family"] == "yolo11"] == [
        ("yolov11_nano", 128), ("yolov11_small", 64), ("yolov11_medium", 32), ("yolov11_large", 16),
        ("yolov11_xlarge", 8)]
    assert {r["family"] for r in rows} == {"yolo11", "yolov8", "yolo26", "yolov10"}
    assert [r["key"] for r in rows if r["family"] == "yolov10"] == [f"yolov10{s}" for s in "nsmblx"]  # b: balanced
    assert [r["key"] for r in rows if r["family"] == "yolo26"] == [f"yolo26{s}" for s in "nsmlx"]


@pytest.mark.slow
def test_build_times_recorded_shown_and_summed_up(project):
    project.write("manifests/m.yaml", "defaults: {formats: [onnx], imgsz: 64}\nmodels:\n"
                  "  a: {arch: yolo11n}\n  b: {arch: yolo11n, class_names: [x]}\n")
    run = project.doit("-n", "2", "manifest=manifests/m.yaml")
    assert run.rc == 0, run.text
    # one summary line at the end of a building run, slowest first
    (line,) = [x for x in run.err.splitlines() if x.startswith("built ")]
    assert line.startswith("built 10 step(s)") and "slowest: " in line, line
    seconds = [float(s) for s in re.findall(r" (\d+\.\d) s", line.split("slowest: ")[1])]
    assert seconds == sorted(seconds, reverse=True) and seconds[0] > 0
    for name in ("a", "b"):
        rec = json.loads(project.path(f"models/{name}/1/model.onnx.verification.json").read_text())
        assert "build_seconds" not in rec  # records stay the same bytes on every host (cache keys)
        # two workers on this machine's cores: each torch got its share, not every core
        cores = len(os.sched_getaffinity(0))
        assert rec["verification"]["torch_threads"] == max(1, cores // 2)
    status = project.doit("status", "--json", "manifest=manifests/m.yaml")
    rows = {r["task"]: r for r in json.loads(status.out)}
    assert rows["export_onnx:a"]["build_seconds"] > 0 and rows["materialize:b"]["build_seconds"] > 0
    table = project.doit("status", "manifest=manifests/m.yaml")
    assert re.search(r"export_onnx:a .*\d+\.\d s", table.out), table.out
    again = project.doit("manifest=manifests/m.yaml")
    assert again.rc == 0 and not [x for x in again.err.splitlines() if x.startswith("built ")]  # nothing built


def test_importing_ultralytics_first_leaves_torch_on_every_core(tmp_path):
    """Ultralytics sets OMP_NUM_THREADS=1 on import when it is unset; a step that imports it before torch
    (the weights download) would leave every later step of that doit process on one core."""
    import subprocess
    import sys

    from helpers.project import REPO, _USER_OMP

    code = ("from pipeline.families.ultralytics import configure; configure(); import ultralytics, torch; "
            "print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PIPELINE_THREADS")}
    if _USER_OMP is not None:
        env["OMP_NUM_THREADS"] = _USER_OMP
    env["YOLO_CONFIG_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) == int(_USER_OMP or len(os.sched_getaffinity(0)))
