"""Publication as numbered versions (engine/publish.py): a new version only when served bytes change, pruned to
`versions.keep`, swapped in whole; hand edits of config.pbtxt kept, held, adopted into the manifest.

The unit tests drive publish() on a small staged folder; the last ones run the real doit on a small detector."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.engine import publish

CONFIG = """name: "m"
platform: "onnxruntime_onnx"
max_batch_size: 4
input {
  name: "images"
  data_type: TYPE_FP32
  dims: 3
}
output {
  name: "out"
  data_type: TYPE_FP32
  dims: 2
}
dynamic_batching {
  max_queue_delay_microseconds: 5000
}
"""
FILES = ["1/model.onnx", "1/probe.npz", "config.pbtxt", "labels.txt"]
LATEST = {"serve": "latest 1", "keep": 2}
WHERE = {"manifest": "manifests/x.yaml", "key": "models.m"}


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # publish.lock lives in the project's .pipeline/
    staged, final = tmp_path / "pytorch_models/staged/m", tmp_path / "models/m"
    (staged / "1").mkdir(parents=True)
    (staged / "config.pbtxt").write_text(CONFIG)
    (staged / "labels.txt").write_text("a\nb\n")
    (staged / "1/probe.npz").write_bytes(b"probe")
    _replace(staged / "1/model.onnx", b"graph one")
    return staged, final


def _replace(path: Path, data: bytes) -> None:
    """How every step writes its artifact: a new file renamed over the old one."""
    tmp = path.with_name(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _publish(staged, final, versions=LATEST):
    return publish.publish(str(staged), str(final), FILES, {}, versions, WHERE)


def test_versions_appear_only_when_served_bytes_change_and_old_ones_are_pruned(folders):
    staged, final = folders
    assert _publish(staged, final)["version"] == 1
    assert publish.versions_of(final) == [1]
    assert os.path.samefile(final / "1/model.onnx", staged / "1/model.onnx")  # a hard link, not a copy
    assert "version_policy {\n  latest {\n    num_versions: 1\n  }\n}" in (final / "config.pbtxt").read_text()
    before = os.stat(final).st_ino
    assert _publish(staged, final).get("unchanged")  # an unchanged rebuild: no new version, no swap
    assert os.stat(final).st_ino == before
    _replace(staged / "1/model.onnx", b"graph two")
    assert _publish(staged, final)["version"] == 2
    assert (final / "1/model.onnx").read_bytes() == b"graph one" and (final / "2/model.onnx").read_bytes() == b"graph two"
    rec = json.loads((final / "2/version.json").read_text())
    assert rec["config"] == CONFIG and set(rec["files"]) == {"model.onnx", "probe.npz"}
    (staged / "labels.txt").write_text("a\nc\n")  # a sidecar is served too
    assert _publish(staged, final)["version"] == 3
    assert publish.versions_of(final) == [2, 3]  # keep 2: version 1 pruned
    assert publish.served_versions((final / "config.pbtxt").read_text(), [2, 3]) == [3]


def test_the_version_policy_follows_the_manifest_without_a_new_version(folders):
    staged, final = folders
    _publish(staged, final)
    _replace(staged / "1/model.onnx", b"graph two")
    _publish(staged, final)
    out = _publish(staged, final, {"serve": "all", "keep": 2})
    assert out["new"] is False and publish.versions_of(final) == [1, 2]
    assert "all {\n  }" in (final / "config.pbtxt").read_text()
    assert publish.served_versions((final / "config.pbtxt").read_text(), [1, 2]) == [1, 2]
    _publish(staged, final, {"serve": [1], "keep": 1})  # a listed version is kept whatever `keep` says
    assert publish.versions_of(final) == [1, 2]
    assert publish.served_versions((final / "config.pbtxt").read_text(), [1, 2]) == [1]


def test_a_killed_publication_leaves_the_served_folder_as_it_was(folders, monkeypatch):
    staged, final = folders
    _publish(staged, final)
    _replace(staged / "1/model.onnx", b"graph two")

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(publish, "write_state", killed)  # the last thing written before the swap
    with pytest.raises(KeyboardInterrupt):
        _publish(staged, final)
    assert publish.versions_of(final) == [1] and (final / "1/model.onnx").read_bytes() == b"graph one"
    assert not list(final.parent.glob(".*")) and not list(staged.parent.glob(".m.*"))
    monkeypatch.undo()
    assert _publish(staged, final)["version"] == 2


@pytest.mark.parametrize("how", ["exchange", "two renames", "another filesystem"])
def test_each_way_of_swapping_gives_the_same_folder(folders, monkeypatch, how):
    staged, final = folders
    _publish(staged, final)
    if how == "two renames":  # no renameat2 here
        monkeypatch.setattr(publish, "_exchange", lambda a, b: False)
    elif how == "another filesystem":  # staging and models/ on different filesystems: moved piece by piece
        monkeypatch.setattr(publish, "_same_filesystem", lambda a, b: False)
    for data in (b"graph two", b"graph three"):
        _replace(staged / "1/model.onnx", data)
        _publish(staged, final)
    assert publish.versions_of(final) == [2, 3]
    assert sorted(p.name for p in final.iterdir()) == [".publication.json", "2", "3", "config.pbtxt", "labels.txt"]
    assert (final / "3/model.onnx").read_bytes() == b"graph three"
    assert not list(final.parent.glob(".*")) and not list(staged.parent.glob(".m.*"))


def test_a_damaged_published_file_is_relinked_from_staging(folders):
    staged, final = folders
    _publish(staged, final)
    (final / "1/model.onnx").unlink()
    (final / "1/model.onnx").write_bytes(b"garbage")  # replaced by hand (a new inode: staging keeps the good one)
    out = _publish(staged, final)
    assert out["version"] == 1 and (final / "1/model.onnx").read_bytes() == b"graph one"


def test_a_hand_edit_is_kept_and_served_and_holds_the_next_version(folders, capsys):
    from doit.exceptions import TaskFailed

    staged, final = folders
    _publish(staged, final)
    cfg = final / "config.pbtxt"
    edited = cfg.read_text().replace("5000", "100")
    cfg.write_text(edited)
    out = _publish(staged, final)  # nothing new to publish: the edit stays, with a notice
    assert out.get("hand_edited") == ["config.pbtxt"] and cfg.read_text() == edited
    assert "edited by hand, kept" in capsys.readouterr().out
    _replace(staged / "1/model.onnx", b"graph two")
    held = _publish(staged, final)
    assert isinstance(held, TaskFailed)
    text = str(held)
    assert "edited by hand" in text and "doit adopt-config m" in text and "config_overrides" in text
    assert "-  max_queue_delay_microseconds: 5000" in text and "+  max_queue_delay_microseconds: 100" in text
    assert cfg.read_text() == edited and publish.versions_of(final) == [1]  # nothing written
    # the manifest now makes exactly the edit (what adopt-config arranges): published, the edit taken over
    (staged / "config.pbtxt").write_text(CONFIG.replace("5000", "100"))
    assert _publish(staged, final)["version"] == 2
    assert cfg.read_text() == edited


def test_clean_moves_a_hand_edit_aside(folders):
    staged, final = folders
    _publish(staged, final)
    (final / "config.pbtxt").write_text((final / "config.pbtxt").read_text().replace("5000", "7"))
    publish.CleanPublished(str(final), FILES)()
    assert not final.exists()
    kept = list(Path(publish.BACKUPS, "m").glob("config.pbtxt.*"))
    assert len(kept) == 1 and "max_queue_delay_microseconds: 7" in kept[0].read_text()


def test_a_folder_published_before_versions_were_recorded_is_taken_over(folders):
    """An earlier release wrote models/m/1/ in place, without .publication.json."""
    staged, final = folders
    shutil.copytree(staged, final)
    assert _publish(staged, final).get("new") is False  # the same bytes: version 1 stays, now recorded
    assert publish.read_state(final)["files"]["config.pbtxt"]


# ---- through doit: a small detector, its manifest, adopt-config
MANIFEST = """# the live test model
defaults:
  formats: [onnx_end2end]
  imgsz: 320
  max_batch: 4
  instance_group: {kind: cpu}   # a CPU server
models:
  shapes:
    arch: yolo11n
    class_names: [a, b, c]
  other:
    arch: yolo11n
    class_names: [x]
"""


@pytest.mark.slow
def test_a_hand_edit_survives_a_rebuild_and_adopt_config_makes_it_the_manifest_s(project):
    project.write("manifests/live.yaml", MANIFEST)
    m = "manifest=manifests/live.yaml"
    assert project.doit(m).rc == 0
    cfg = project.path("models/shapes_end2end/config.pbtxt")
    edited = cfg.read_text().replace("max_queue_delay_microseconds: 5000", "max_queue_delay_microseconds: 100")
    cfg.write_text(edited)
    run = project.doit(m)
    assert run.rc == 0 and "edited by hand, kept" in run.out and cfg.read_text() == edited, run.text
    project.write("manifests/live.yaml", MANIFEST.replace("imgsz: 320", "imgsz: 320\n  conf: 0.4"))
    run = project.doit(m)
    assert run.rc != 0 and "shapes_end2end is held" in run.text and "+  max_queue_delay_microseconds: 100" in run.text
    assert cfg.read_text() == edited
    assert "models/other_end2end: version 2 published" in run.out  # the rest of the build went on
    run = project.doit(m, "adopt-config", "shapes_end2end")
    assert run.rc == 0 and "models.shapes.config_overrides.onnx_end2end.dynamic_batching" in run.out, run.text
    text = project.path("manifests/live.yaml").read_text()
    assert text.startswith("# the live test model") and "# a CPU server" in text  # comments kept
    assert list(project.path(".pipeline/manifest-backups").glob("live.yaml.*"))
    run = project.doit(m)
    assert run.rc == 0 and "models/shapes_end2end: version 2 published" in run.out, run.text
    assert cfg.read_text() == edited  # the same bytes, now made by the build
    assert project.doit(m, "adopt-config", "shapes_end2end").out.strip().endswith("no hand edit to adopt")
    run = project.doit(m)
    assert run.rc == 0 and not run.executed, run.out


@pytest.mark.parametrize("block,complaint", [
    ("config_overrides: {onnx: {dynamic_batching: {}}}", "'onnx', which is not a Triton folder of this model"),
    ("config_overrides: {onnx_end2end: {input: []}}", "'input' comes from the model file's real inputs"),
    ("config_overrides: {onnx_end2end: {dynamic_batching: {max_delay: 3}}}", "not a Triton ModelConfig field value"),
    ("versions: {serve: latest 3}", "needs keep: 3 or more"),
    ("versions: {serve: newest}", "'latest 1' (the default"),
])
def test_bad_versions_and_overrides_are_a_paragraph(project, block, complaint):
    project.write("manifests/live.yaml", MANIFEST.replace("    class_names: [a, b, c]",
                                                          f"    class_names: [a, b, c]\n    {block}"))
    run = project.doit("manifest=manifests/live.yaml", "list")
    text = " ".join(run.text.split())
    assert run.rc != 0 and complaint in text and "models.shapes" in text and "Traceback" not in text, run.text
