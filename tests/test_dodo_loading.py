"""Loading dodo.py stays light: no torch, ultralytics, onnx, tensorrt — and no pydantic once validated."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "ultralytics", "onnx", "onnxruntime", "tensorrt", "open_clip", "tritonclient")

PROBE = """
import sys
from doit.doit_cmd import DoitMain
from doit.cmd_base import ModuleTaskLoader
code = DoitMain().run(sys.argv[1:])
mods = set(sys.modules)
print("LOADED", ",".join(sorted(m for m in %r if m in mods)))
print("PYDANTIC", "pydantic" in mods)
sys.exit(code)
""" % (HEAVY,)


def probe(project, *args):
    p = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=project.root, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def test_listing_imports_nothing_heavy(project):
    rc, out = probe(project, "list", "--all", "manifest=manifests/smoke.yaml")
    assert rc == 0, out
    assert "LOADED \n" in out, out
    assert "export_onnx:smoke_yolo11n" in out


def test_validated_manifest_is_cached(project):
    rc, out = probe(project, "list", "manifest=manifests/smoke.yaml")
    assert rc == 0 and "PYDANTIC True" in out  # first load validates
    rc, out = probe(project, "list", "manifest=manifests/smoke.yaml")
    assert rc == 0 and "PYDANTIC False" in out, out  # then the cached records are used
    project.write("manifests/smoke.yaml", project.path("manifests/smoke.yaml").read_text() + "\n# edited\n")
    rc, out = probe(project, "list", "manifest=manifests/smoke.yaml")
    assert "PYDANTIC True" in out  # any edit re-validates


def test_an_invalid_edit_is_never_hidden_by_the_cache(project):
    assert probe(project, "list", "manifest=manifests/smoke.yaml")[0] == 0
    text = project.path("manifests/smoke.yaml").read_text()
    project.write("manifests/smoke.yaml", text.replace("max_batch: 8", "max_batch: 0"))
    rc, out = probe(project, "list", "manifest=manifests/smoke.yaml")
    assert rc != 0 and "defaults.max_batch" in out
    project.write("manifests/smoke.yaml", text)
    assert probe(project, "list", "manifest=manifests/smoke.yaml")[0] == 0


def test_seed_config_file_example_validates_once_its_paths_exist(project, tmp_path):
    """The seed's models_config.yaml, paths pointed at existing files."""
    sys.path.insert(0, str(project.root))
    from pipeline.declarations.manifest.records import resolve

    text = project.path("manifests/models_config.yaml").read_text()
    for name in ("vehicle_yolo11s.pt", "person_yolo11m.pt", "defect_yolo11n.pt"):
        (tmp_path / name).write_bytes(b"placeholder")
    path = project.write("manifests/seed.yaml", text.replace("/app/pytorch_models/", f"{tmp_path}/"))
    records = {r["name"]: r for r in resolve(path, project.root)}
    assert set(records) == {"vehicle_detector_v1", "person_detector_v1", "defect_yolo11n"}
    assert [records[n]["settings"]["max_batch"] for n in sorted(records)] == [128, 32, 64]
    assert {r["settings"]["topk"] for r in records.values()} == {300}
    assert records["defect_yolo11n"]["pt"] == f"{tmp_path}/defect_yolo11n.pt"


def test_builtin_sizes_follow_the_seed_table(project):
    sys.path.insert(0, str(project.root))
    from pipeline.declarations.manifest.records import resolve

    path = project.write("manifests/all.yaml", "builtins: [nano, small, medium, large, xlarge]\n")
    records = resolve(path, project.root)
    assert [(r["name"], r["pt"], r["settings"]["max_batch"], r["settings"]["topk"]) for r in records] == [
        ("yolov11_nano", "pytorch_models/yolo11n.pt", 128, 300),
        ("yolov11_small", "pytorch_models/yolo11s.pt", 64, 300),
        ("yolov11_medium", "pytorch_models/yolo11m.pt", 32, 300),
        ("yolov11_large", "pytorch_models/yolo11l.pt", 16, 300),
        ("yolov11_xlarge", "pytorch_models/yolo11x.pt", 8, 300),
    ]
    s = records[0]["settings"]
    assert (s["imgsz"], s["precision"], s["iou"], s["conf"], s["normalize_boxes"]) == (640, "fp16", 0.7, 0.25, True)


@pytest.mark.parametrize("argv,n", [(["doit"], 1), (["doit", "-n", "2"], 2), (["doit", "-n4", "onnx"], 4),
                                    (["doit", "--process=3"], 3), (["doit", "--process", "2", "-P", "thread"], 2),
                                    (["doit", "info", "x"], 1)])
def test_worker_count_read_from_the_command_line(argv, n, monkeypatch):
    from pipeline.engine import threads

    assert threads.workers(argv) == n
    for var in ("PIPELINE_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, "")  # recorded, so that what share_cores sets is undone after the test
        monkeypatch.delenv(var)
    threads.share_cores(argv)
    want = None if n == 1 else max(1, len(os.sched_getaffinity(0)) // n)
    assert threads.threads() == want
    assert os.environ.get("OMP_NUM_THREADS") == (None if want is None else str(want))
