"""A task reruns if and only if something it depends on changed — proven with real doit runs."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from helpers.project import make_project

pytestmark = pytest.mark.slow

TWO_MODELS = """\
defaults: {formats: [onnx], max_batch: 8, imgsz: 320}
models:
  alpha: {arch: yolo11n, class_names: [car, truck]}
  beta: {arch: yolo11n, num_classes: 1, max_batch: %d}
"""

ALPHA = {"materialize:alpha", "export_onnx:alpha", "config:alpha", "labels:alpha", "probe:alpha", "publish:alpha"}
BETA = {"materialize:beta", "export_onnx:beta", "config:beta", "labels:beta", "probe:beta", "publish:beta"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two untrained models built once; each test works on its own copy of the built project."""
    proj = make_project(tmp_path_factory.mktemp("staleness") / "proj")
    proj.write("manifests/two.yaml", TWO_MODELS % 4)
    run = proj.doit("manifest=manifests/two.yaml")
    assert run.rc == 0, run.text
    assert run.executed == ALPHA | BETA
    return proj


@pytest.fixture
def proj(built, tmp_path):
    """A copy of the built project after one no-op there: every change a test makes is first checked against
    that no-op's snapshot (pipeline/engine/noop.py), so each test also proves the snapshot hides nothing."""
    dest = tmp_path / "copy"
    shutil.copytree(built.root, dest, symlinks=True)
    from helpers.project import Project
    copy = Project(dest)
    noop = copy.doit("manifest=manifests/two.yaml")
    assert noop.rc == 0 and noop.executed == set(), noop.text
    assert len(list(copy.path(".pipeline/noop").glob("*.json"))) == 1
    copy.noop_out = noop.out
    return copy


def test_second_run_executes_nothing(proj):
    run = proj.doit("manifest=manifests/two.yaml")
    assert run.rc == 0 and run.executed == set(), run.text


def test_a_repeated_noop_prints_what_doit_printed_without_doits_checks(proj):
    explain = {"PIPELINE_EXPLAIN_NOOP": "1"}
    run = proj.doit("manifest=manifests/two.yaml", env=explain)
    assert run.rc == 0 and "nothing changed since the last no-op" in run.err, run.err
    assert run.out == proj.noop_out and "-- export_onnx:alpha" in run.out
    # another command line, or another environment, is another call: doit checks it (and snapshots it)
    for args, env, why in ((("manifest=manifests/two.yaml", "onnx:alpha"), explain, "command line"),
                           (("manifest=manifests/two.yaml",), {**explain, "OMP_NUM_THREADS": "1"},
                            "environment (OMP_NUM_THREADS)")):
        run = proj.doit(*args, env=env)
        assert run.rc == 0 and run.executed == set(), run.text
        assert "none for this call (the last one differs in" in run.err and why in run.err, run.err
    # a file touched without a change: doit decides (up to date), and that no-op becomes the snapshot
    later = time.time() + 50
    os.utime(proj.path("models/alpha/labels.txt"), (later, later))
    run = proj.doit("manifest=manifests/two.yaml", env=explain)
    assert "models/alpha/labels.txt changed since the last no-op" in run.err and run.executed == set(), run.err
    assert "nothing changed" in proj.doit("manifest=manifests/two.yaml", env=explain).err
    # doit's own state changed (forget): doit decides, and reruns what was forgotten
    assert proj.doit("forget", "manifest=manifests/two.yaml", "labels:beta").rc == 0
    assert proj.doit("manifest=manifests/two.yaml").executed == {"labels:beta"}


def test_a_building_run_or_a_file_changed_mid_run_leaves_no_snapshot(proj, monkeypatch):
    """Only a call in which doit found everything up to date, with every file as it was when doit started
    deciding, is replayed (the reporter, in process, with doit's own Task objects)."""
    import io

    from doit.task import Task

    from pipeline.engine import noop
    from pipeline.engine.noop_reporter import SnapshotReporter
    from pipeline.engine.step import params_unchanged

    monkeypatch.chdir(proj.root)
    monkeypatch.setattr(noop, "_KEY", "k")
    dep, out = "models/alpha/labels.txt", "models/alpha/config.pbtxt"

    def call(between=lambda: None, run=False, check=None):
        shutil.rmtree(".pipeline/noop", ignore_errors=True)
        rep = SnapshotReporter(io.StringIO(), {})
        t = Task("t:a", [lambda: True], file_dep=[dep], targets=[out], uptodate=[check or params_unchanged({})])
        rep.initialize({"t:a": t}, ["t:a"])
        between()
        (rep.execute_task if run else rep.skip_uptodate)(t)
        rep.complete_run()
        return os.path.exists(".pipeline/noop/k.json")

    assert call()  # everything up to date, nothing moved: a snapshot
    assert not call(run=True)  # the task ran
    later = time.time() + 80
    assert not call(between=lambda: os.utime(dep, (later, later)))  # its input changed while doit decided
    assert not call(between=lambda: os.utime(out, (later + 1, later + 1)))  # its target too
    assert not call(check=lambda task, values: True)  # a check whose reads are unknown


def test_max_batch_touches_only_that_models_config(proj):
    proj.write("manifests/two.yaml", TWO_MODELS % 16)
    run = proj.doit("manifest=manifests/two.yaml")
    # the config, the probe made from it (the same bytes: its request has batch 1) and a new version
    assert run.rc == 0 and run.executed == {"config:beta", "probe:beta", "publish:beta"}, run.text
    assert "max_batch_size: 16" in proj.path("models/beta/config.pbtxt").read_text()
    assert "max_batch_size: 4" in proj.path("models/beta/1/version.json").read_text()  # version 1 is kept as it was
    assert "max_batch_size: 16" in proj.path("models/beta/2/version.json").read_text()
    info = proj.doit("info", "manifest=manifests/two.yaml", "config:alpha")
    assert "up-to-date" in info.out


def test_doit_info_says_which_parameter_changed(proj):
    proj.write("manifests/two.yaml", TWO_MODELS % 16)
    info = proj.doit("info", "manifest=manifests/two.yaml", "config:beta")
    assert "max_batch: 4 -> 16" in info.out, info.out


def test_imgsz_rebuilds_exports_not_weights(proj):
    proj.write("manifests/two.yaml", TWO_MODELS.replace("imgsz: 320", "imgsz: 256") % 4)
    run = proj.doit("manifest=manifests/two.yaml")
    assert run.rc == 0
    # The config is rewritten because the graph's input dims changed; the weights are untouched.
    assert run.executed == {f"{step}:{m}" for step in ("export_onnx", "config", "probe", "publish")
                            for m in ("alpha", "beta")}, run.text


def test_replacing_a_checkpoint_rebuilds_its_chain(proj):
    shutil.copy(proj.path("pytorch_models/alpha.untrained.pt"), proj.path("mine.pt"))
    proj.write("manifests/user.yaml", "defaults: {formats: [onnx], max_batch: 8, imgsz: 320}\n"
                                      "models:\n  mine: {pt_file: ../mine.pt}\n")
    first = proj.doit("manifest=manifests/user.yaml")
    chain = {f"{step}:mine" for step in ("inspect", "export_onnx", "config", "labels", "probe", "publish")}
    assert first.rc == 0 and first.executed == chain
    assert proj.doit("manifest=manifests/user.yaml").executed == set()
    shutil.copy(proj.path("pytorch_models/beta.untrained.pt"), proj.path("mine.pt"))  # other weights, 1 class
    run = proj.doit("manifest=manifests/user.yaml")
    assert run.rc == 0
    assert run.executed == chain, run.text
    assert "dims: 5" in proj.path("models/mine/config.pbtxt").read_text()  # 4 + 1 class


def test_touching_a_checkpoint_without_changing_it_rebuilds_nothing(proj):
    pt = proj.path("pytorch_models/alpha.untrained.pt")
    later = time.time() + 100
    os.utime(pt, (later, later))
    assert proj.doit("manifest=manifests/two.yaml").executed == set()


def test_editing_export_code_rebuilds_that_kind(proj):
    code = proj.path("pipeline/builders/raw_onnx.py")
    code.write_text(code.read_text() + "\n_EDITED = True  # code Python runs: a new hash\n")
    graph = proj.path("models/alpha/1/model.onnx")
    before = graph.stat().st_mtime_ns
    info = proj.doit("info", "manifest=manifests/two.yaml", "export_onnx:alpha")
    assert "code.pipeline/builders/raw_onnx.py:" in info.out, info.out
    run = proj.doit("manifest=manifests/two.yaml")
    assert run.rc == 0
    # Byte-identical ONNX output: configs and probes stay up to date (their input's content did not change);
    # publication looks (the verification record names the new code) and publishes no new version.
    assert run.executed == {"export_onnx:alpha", "export_onnx:beta", "publish:alpha", "publish:beta"}, run.text
    assert "published" not in run.out and not proj.path("models/alpha/2").exists()
    assert graph.stat().st_mtime_ns == before  # the same bytes: the finished file stays, mtime and all
    info = proj.doit("info", "manifest=manifests/two.yaml", "export_onnx:alpha")
    assert "up-to-date" in info.out


def test_comments_and_docstrings_rebuild_nothing(proj):
    code = proj.path("pipeline/builders/raw_onnx.py")
    text = code.read_text().replace('"""Step builder: export,', '"""Step builder (reworded docstring): export,')
    code.write_text("# a new comment at the top\n" + text.replace("\n\n\ndef export", "\n\n\n# and here\ndef export"))
    assert proj.doit("manifest=manifests/two.yaml").executed == set()


def test_tool_version_change_rebuilds_dependent_steps(proj):
    """A different onnx version (as if upgraded) makes exports and configs stale, not weights or labels."""
    state = json.loads(proj.path(".doit.json").read_text())
    state["export_onnx:alpha"]["_values_:"]["_params"]["tools"]["onnx"] = "0.0.1"
    proj.path(".doit.json").write_text(json.dumps(state))
    info = proj.doit("info", "manifest=manifests/two.yaml", "export_onnx:alpha")
    assert "tools.onnx: '0.0.1' ->" in info.out, info.out
    run = proj.doit("manifest=manifests/two.yaml")
    assert run.executed == {"export_onnx:alpha"}, run.text


def test_deleting_a_target_rebuilds_it(proj):
    staged = "pytorch_models/staged/alpha/labels.txt"
    proj.path(staged).unlink()
    info = proj.doit("info", "manifest=manifests/two.yaml", "labels:alpha")
    assert staged in info.out and "do not exist" in info.out
    run = proj.doit("manifest=manifests/two.yaml")
    assert run.executed == {"labels:alpha"}, run.text  # the same bytes again: nothing new to publish
    proj.path("pytorch_models/staged/beta/1/model.onnx").unlink()
    assert proj.doit("manifest=manifests/two.yaml").executed == {"export_onnx:beta"}
    # a published file deleted: published again from staging, as the same version
    proj.path("models/alpha/labels.txt").unlink()
    proj.path("models/beta/1/model.onnx").unlink()
    run = proj.doit("manifest=manifests/two.yaml")
    assert run.executed == {"publish:alpha", "publish:beta"}, run.text
    assert proj.path("models/alpha/labels.txt").read_text() == "car\ntruck\n"
    assert sorted(p.name for p in proj.path("models/beta").iterdir() if p.name.isdigit()) == ["1"]


def test_class_names_change_rebuilds_labels_only_downstream_of_checkpoint(proj):
    proj.write("manifests/two.yaml", (TWO_MODELS % 4).replace("[car, truck]", "[car, lorry]"))
    run = proj.doit("manifest=manifests/two.yaml")
    # New names are baked into the untrained .pt: its chain rebuilds, beta is untouched.
    assert run.executed <= ALPHA and "labels:alpha" in run.executed and "materialize:alpha" in run.executed
    assert proj.path("models/alpha/labels.txt").read_text() == "car\nlorry\n"


def test_state_survives_a_move_with_new_mtimes(proj, tmp_path):
    """A restored checkout elsewhere (CI cache): json state, relative paths, content hashes -> no-op."""
    state = json.loads(proj.path(".doit.json").read_text())  # portable JSON, not dbm
    assert "export_onnx:alpha" in state
    moved = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(proj.root, moved)
    later = time.time() + 1000
    for p in moved.rglob("*"):
        os.utime(p, (later, later))
    from helpers.project import Project
    run = Project(moved).doit("manifest=manifests/two.yaml")
    assert run.rc == 0 and run.executed == set(), run.text
