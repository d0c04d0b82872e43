"""No command writes into the user's home: Ultralytics' settings, matplotlib's font cache and every other
tool's files stay in the project's .pipeline/ (TensorRT's timing caches and GPU locks, host-wide by design,
go to $XDG_CACHE_HOME or ~/.cache only when plans are built)."""
from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.slow


def test_no_command_writes_into_home(project, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    unset = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "YOLO_CONFIG_DIR", "MPLCONFIGDIR", "TORCH_HOME",
             "HF_HOME")  # each tool falls back to its default under $HOME
    project.write("manifests/m.yaml", "defaults: {imgsz: 64, formats: [onnx, onnx_end2end]}\nmodels:\n"
                  "  small: {arch: yolo11n, class_names: [a, b]}\n")
    clean_env = {k: v for k, v in os.environ.items() if k not in unset} | {"HOME": str(home)}
    commands = [("manifest=manifests/m.yaml",), ("status", "manifest=manifests/m.yaml"),
                ("graph", "manifest=manifests/m.yaml"), ("builtins",), ("recipe", "manifest=manifests/m.yaml"),
                ("compare-tracks", "manifest=manifests/m.yaml", "small"), ("clean", "-n", "manifest=manifests/m.yaml")]
    for args in commands:
        run = project.doit(*args, env=clean_env, clear=True)
        assert run.rc == 0, (args, run.text)
        written = [str(p.relative_to(home)) for p in home.rglob("*")]
        assert written == [], (args, written)
    assert project.path(".pipeline/ultralytics").is_dir() and project.path(".pipeline/tracks/tracks.png").is_file()
