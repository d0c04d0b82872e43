"""Tests run the real `doit` in a subprocess on a temporary copy of the project."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Importing Ultralytics in this process (fixtures that build checkpoints) sets OMP_NUM_THREADS=1 here; the
# doit runs under test get the environment a user's shell would give them.
_USER_OMP = os.environ.get("OMP_NUM_THREADS")
sys.path.insert(0, str(REPO))  # `pipeline` for in-process checks, installed (-e) or not
COPIED = ("dodo.py", "pipeline", "manifests", "models/README.md", "pytorch_models/README.md", "pyproject.toml")


@dataclass
class DoitRun:
    rc: int
    out: str
    err: str

    @property
    def executed(self) -> set[str]:
        """Tasks whose actions ran (doit prints '.  task' for those, '-- task' for up-to-date ones)."""
        return {m for m in re.findall(r"^\.  (\S+)$", self.out, re.M) if ":" in m}

    @property
    def text(self) -> str:
        return self.out + self.err


class Project:
    def __init__(self, root: Path):
        self.root = root

    def doit(self, *args: str, timeout: float = 600, env: dict | None = None, prefix: tuple = (),
             preexec_fn=None) -> DoitRun:
        given = env or {}
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **given}
        env.pop("PYTEST_CURRENT_TEST", None)  # pytest's bookkeeping (setup/call): not part of the user's call
        if "OMP_NUM_THREADS" not in given:
            env.pop("OMP_NUM_THREADS", None)
            if _USER_OMP is not None:
                env["OMP_NUM_THREADS"] = _USER_OMP
        p = subprocess.run([*prefix, sys.executable, "-m", "doit", *args], cwd=self.root, env=env,
                           capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)
        return DoitRun(p.returncode, p.stdout, p.stderr)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, text: str) -> Path:
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def generated(self) -> list[str]:
        """Everything under models/ and pytorch_models/ except the placeholders."""
        out = []
        for top in ("models", "pytorch_models"):
            for p in sorted(self.path(top).rglob("*")):
                if p.is_file() and p.name != "README.md":
                    out.append(str(p.relative_to(self.root)))
        return out


def make_project(dest: Path) -> Project:
    for rel in COPIED:
        src, dst = REPO / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    return Project(dest)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "proj")


@pytest.fixture(scope="session")
def yolo_env(tmp_path_factory):
    """Ultralytics offline, settings in a temp dir, for tests that import it in-process."""
    sys.path.insert(0, str(REPO))
    os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("ultralytics"))
    from pipeline.families.yolo import configure
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


REPORTS: dict[str, object] = {}  # tests that want their findings in CI's output put them here


def pytest_terminal_summary(terminalreporter):
    import json

    for title, report in REPORTS.items():
        terminalreporter.write_sep("-", title)
        for key, value in report.items():
            terminalreporter.write_line(f"{key}: {json.dumps(value)}")


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
