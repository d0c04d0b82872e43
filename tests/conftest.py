"""Fixtures shared by the tests; the helpers themselves are in tests/helpers/."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.project import REPO, REPORTS, Project, make_project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "proj")


@pytest.fixture(scope="session")
def yolo_env(tmp_path_factory):
    """Ultralytics offline, settings in a temp dir, for tests that import it in-process."""
    sys.path.insert(0, str(REPO))
    os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("ultralytics"))
    from pipeline.families.ultralytics import configure
    configure()


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, yolo_env) -> dict[str, Path]:
    """Small real checkpoints built offline from architecture YAML (random weights)."""
    from ultralytics import YOLO

    d = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name, cfg in {"det": "yolo11n.yaml", "seg": "yolo11n-seg.yaml", "cls": "yolo11n-cls.yaml",
                      "pose": "yolo11n-pose.yaml"}.items():
        model = YOLO(cfg)
        out[name] = d / f"{name}_yolo11n.pt"
        model.save(str(out[name]))
    return out


DALI = "nvidia-dali-cuda130==2.4.0"


@pytest.fixture(scope="session")
def dali_site() -> Path:
    """NVIDIA DALI (the `dali` extra) installed BESIDE the test venv, not in it: the suite's own doit runs
    are the build without DALI; a run given PYTHONPATH=<this folder> is the build with it. Only what the
    venv lacks goes here (pip's own resolution, pinned by requirements.lock), so nothing the venv has is
    shadowed. Made once per machine under ~/.cache, keyed by the pins."""
    import hashlib
    import json

    lock = (REPO / "requirements.lock").read_text()
    key = hashlib.sha256((DALI + lock + sys.version).encode()).hexdigest()[:12]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "triton-export-pipeline" / f"dali-{key}"
    site = root / "site-packages"
    if not (root / ".ready").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        pip = [sys.executable, "-m", "pip", "install", "-q", "-c", str(REPO / "requirements.lock")]
        subprocess.run([*pip, "--dry-run", "--report", str(root / "plan.json"), DALI], check=True)
        missing = [f"{i['metadata']['name']}=={i['metadata']['version']}"
                   for i in json.loads((root / "plan.json").read_text())["install"]]
        subprocess.run([*pip, "--no-deps", "--target", str(site), *missing], check=True)
        (root / ".ready").touch()
    return site


def pytest_terminal_summary(terminalreporter):
    import json

    for title, report in REPORTS.items():
        terminalreporter.write_sep("-", title)
        for key, value in report.items():
            terminalreporter.write_line(f"{key}: {json.dumps(value)}")
