"""Which code and which tools a doit call uses: this checkout's own code, whatever venv runs it, and every
distribution Python itself would import — wherever it was installed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers.project import REPO, make_project

DOIT = Path(sys.executable).parent / "doit"  # the venv's console script: sys.path[0] is its bin folder, not cwd


def console_doit(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`doit` as a user types it: the venv's script, whose command plugins import `pipeline` through the venv
    (installed with `pip install -e` from some checkout) before this project's dodo.py runs."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIPELINE_CHECKOUT")}
    return subprocess.run([str(DOIT), *args], cwd=root, env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=300)


def where_pipeline_is_installed() -> Path:
    """The checkout the venv's `pipeline` comes from when nothing else is on the path."""
    out = subprocess.run([sys.executable, "-c", "import pipeline; print(pipeline.__file__)"], cwd="/",
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, capture_output=True,
                         text=True, check=True).stdout
    return Path(out.strip()).resolve().parents[1]


def test_another_checkout_runs_its_own_code(tmp_path):
    """A copy (or git worktree) of the project run with a venv installed from another checkout: doit runs
    the copy's code, not the venv's checkout's."""
    copy = make_project(tmp_path / "copy")
    assert where_pipeline_is_installed() != copy.root  # the venv maps `pipeline` elsewhere
    dag = copy.path("pipeline/declarations/dag.py")
    dag.write_text(dag.read_text().replace('"Download built-in detector weights', '"THIS COPY: download built-in '
                                                                                   'detector weights'))
    run = console_doit(copy.root, "list", "manifest=manifests/smoke.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "THIS COPY: download" in run.stdout
    # and the copy's code is what its artifacts are hashed with
    recipe = console_doit(copy.root, "recipe", "--json", "manifest=manifests/smoke.yaml")
    assert recipe.returncode == 0, recipe.stderr
    code = json.loads(recipe.stdout)["artifacts"][0]["code"]
    assert code and all((copy.root / f).is_file() for f in code)


def test_a_checkout_that_cannot_get_its_own_code_refuses_naming_both(tmp_path):
    """When even this checkout first on PYTHONPATH does not give its own `pipeline` (here: another copy
    forced in front), doit refuses in one paragraph naming both, instead of running the other's code."""
    copy, other = make_project(tmp_path / "copy"), make_project(tmp_path / "other")
    run = console_doit(copy.root, "list", "manifest=manifests/smoke.yaml",
                       env={"PYTHONPATH": str(other.root), "PIPELINE_CHECKOUT": str(copy.root)})
    assert run.returncode != 0
    text = " ".join(run.stderr.split())
    assert f"{copy.root}/dodo.py" in text and str(other.root) in text and "Fix:" in text and "Traceback" not in text


def test_tools_are_found_wherever_python_would_import_them(tmp_path):
    """A distribution installed with `pip install --target DIR` and put on PYTHONPATH counts, whatever DIR
    is called (not only folders named site-packages): here NVIDIA DALI's metadata in a folder `deps`."""
    deps = tmp_path / "deps"
    info = deps / "nvidia_dali_cuda130-2.4.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nvidia-dali-cuda130\nVersion: 2.4.0\n")
    (info / "RECORD").write_text("nvidia/dali/__init__.py,,\n")
    (deps / "legacy.egg-info").mkdir()  # a version-less egg-info: its PKG-INFO says the version
    (deps / "legacy.egg-info" / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: legacy\nVersion: 3.1\n\n")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from pipeline.engine import tools; "
            "print(json.dumps([tools.dali_version(), tools.installed().get('legacy')]))")
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], env={**os.environ, "PYTHONPATH": str(deps)},
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["2.4.0", "3.1"]
    # ... and so in a DALI step's recorded tool versions
    proj = make_project(tmp_path / "proj")
    proj.write("manifests/m.yaml", "models:\n  d: {arch: yolo11n, formats: [dali_end2end]}\n")
    run = proj.doit("recipe", "--json", "manifest=manifests/m.yaml", env={"PYTHONPATH": str(deps)})
    assert run.rc == 0, run.text
    rows = {r["task"]: r for r in json.loads(run.out)["artifacts"]}
    assert rows["dali_pipeline:d_dali_end2end_preprocess"]["tools"]["nvidia_dali_cuda130"] == "2.4.0"
