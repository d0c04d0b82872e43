"""Untrusted and broken inputs: a checkpoint never runs code while it loads, and every broken file — the
user's or the pipeline's own — ends in one paragraph or a correct rebuild, never a traceback, with nothing
the user had lost and nothing finished-looking but wrong left in models/.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import resource
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from helpers.project import REPORTS, Project, make_project
from test_bad_input import MANIFEST_CASES, check_paragraph

pytestmark = pytest.mark.slow

# Kind of bad input -> how many were tried, printed in the test summary with their total.
TRIED: dict[str, int] = {"manifest mistakes (test_bad_input.py)": len(MANIFEST_CASES) + 1 + 4,  # + missing file,
                         "total": len(MANIFEST_CASES) + 1 + 4}                                    # 4 custom= values


def tried(kind: str, n: int = 1) -> None:
    REPORTS["bad inputs tried"] = TRIED
    TRIED[kind] = TRIED.get(kind, 0) + n
    TRIED["total"] += n
MARKER = "/tmp/triton-export-pipeline-pwned-{}"


class Evil:
    """What a hostile checkpoint holds: unpickling it runs a shell command (it creates MARKER)."""

    def __init__(self, tag: str):
        self.tag = tag

    def __reduce__(self):
        return (os.system, (f"touch {MARKER.format(self.tag)}",))


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def paragraphs(text: str) -> dict[str, str]:
    """doit --continue: task id -> its failure paragraph (whitespace normalised)."""
    out = {}
    for block in text.split("TaskFailed - taskid:")[1:]:
        task, _, rest = block.partition("\n")
        out[task.strip()] = " ".join(rest.split("\n\n")[0].split())
    return out


def without_file_permissions() -> tuple:
    """Root reads any file whatever its mode: drop the capabilities that allow it, so a chmod 000 file is
    unreadable for this run as it would be for a normal user."""
    if os.geteuid() != 0:
        return ()
    caps = "-dac_override,-dac_read_search"
    return ("setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}")


# ---- the checkpoints a user may legitimately have --------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory, yolo_env) -> Path:
    """A checkpoint from a short real training run (synthetic images, custom class names)."""
    import numpy as np
    from PIL import Image
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(8):
            img = np.full((64, 64, 3), 114, np.uint8)
            x, y = rng.integers(8, 40, 2)
            img[y:y + 16, x:x + 16] = (255, 0, 0)
            Image.fromarray(img).save(root / "images" / split / f"{i}.png")
            (root / "labels" / split / f"{i}.txt").write_text(f"0 {(x + 8) / 64} {(y + 8) / 64} 0.25 0.25\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\n"
                                    "names: {0: red square, 1: other thing}\n")
    YOLO("yolo11n.yaml").train(data=str(root / "data.yaml"), epochs=1, imgsz=64, batch=4, workers=0, device="cpu",
                               plots=False, amp=False, project=str(root / "runs"), name="t", exist_ok=True,
                               verbose=False)
    return root / "runs" / "t" / "weights" / "best.pt"


def test_legitimate_checkpoints_load_under_the_allowlist(trained, checkpoints, tmp_path):
    """Model.save() of every built-in size's architecture, a trained checkpoint with custom class names:
    loaded weights-only, each gives exactly the outputs of the full (trusting) load."""
    import torch
    from ultralytics import YOLO

    from pipeline.families.yolo11 import FAMILY as yolo11

    files = {"trained (best.pt)": trained, "trained (last.pt)": trained.with_name("last.pt"),
             "Model.save() yolo11n": checkpoints["det"]}
    for arch in ("yolo11s", "yolo11m", "yolo11l", "yolo11x"):
        files[f"Model.save() {arch}"] = tmp_path / f"{arch}.pt"
        YOLO(f"{arch}.yaml").save(str(files[f"Model.save() {arch}"]))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for what, pt in files.items():
        safe = yolo11.load(pt, "k")
        full = yolo11.load(pt, "k", trust=True)
        with torch.inference_mode():
            assert torch.equal(safe(x)[0], full(x)[0]), what
        assert dict(safe.names) == dict(full.names), what
    assert dict(yolo11.load(trained, "k").names) == {0: "red square", 1: "other thing"}
    REPORTS["legitimate checkpoints loaded weights-only"] = {"files": len(files)}


# ---- hostile checkpoints ----------------------------------------------------------------------------------

def test_hostile_checkpoints_never_run_and_trust_is_explicit(project, checkpoints):
    import datetime

    import torch

    good = torch.load(checkpoints["det"], map_location="cpu", weights_only=False)
    hostile = project.path("user/hostile")
    hostile.mkdir(parents=True)
    torch.save({"model": Evil("zip")}, hostile / "zip.pt")                      # torch's zip format
    torch.save({**good, "extras": [Evil("inside")]}, hostile / "inside.pt")     # hidden in a real checkpoint
    with open(hostile / "legacy.pt", "wb") as f:                                # a plain pickle
        pickle.dump(Evil("legacy"), f, protocol=2)
    torch.save({**good, "date": datetime.datetime(2026, 1, 1)}, hostile / "odd.pt")  # harmless, not allowlisted
    for tag in ("zip", "inside", "legacy"):
        Path(MARKER.format(tag)).unlink(missing_ok=True)
    before = {p.name: sha(p) for p in hostile.iterdir()}
    project.write("manifests/m.yaml", "defaults: {formats: [onnx], imgsz: 64}\nmodels:\n" + "".join(
        f"  {n}: {{pt_file: ../user/hostile/{n}.pt}}\n" for n in ("zip", "inside", "legacy", "odd")))
    run = project.doit("--continue", "manifest=manifests/m.yaml")
    assert run.rc != 0 and "Traceback" not in run.text, run.text
    found = paragraphs(run.text)
    for name in ("zip", "inside", "legacy"):
        assert not Path(MARKER.format(name)).exists(), f"{name}.pt ran its code"
        para = found[f"inspect:{name}"]
        for must in (f"models.{name}.pt_file", "'posix.system'", "refused before anything in it ran",
                     "trust_checkpoint: true", f"under 'models.{name}' in the manifest"):
            assert must in para, para
    assert "'datetime.datetime'" in found["inspect:odd"]
    assert project.generated() == []
    assert {p.name: sha(p) for p in hostile.iterdir()} == before

    # The way out, per model: the user trusts odd.pt; the hostile ones stay refused.
    project.write("manifests/m.yaml", "defaults: {formats: [onnx], imgsz: 64}\nmodels:\n"
                  "  odd: {pt_file: ../user/hostile/odd.pt, trust_checkpoint: true}\n"
                  "  zip: {pt_file: ../user/hostile/zip.pt}\n")
    run = project.doit("--continue", "manifest=manifests/m.yaml")
    assert "export_onnx:odd" in run.executed and "inspect:zip" in paragraphs(run.text), run.text
    record = json.loads(project.path("pytorch_models/odd.checkpoint.json").read_text())["verification"]
    assert record["trusted"] is True and "full unpickler" in record["loaded_with"]
    assert not Path(MARKER.format("zip")).exists()
    tried("hostile checkpoints", 4)


# ---- broken checkpoints: one doit --continue run, one paragraph per file ----------------------------------

def truncation_offsets(data: bytes) -> dict[str, int]:
    """Where to cut a torch zip: its headers, the pickle, tensor data, the central directory."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    infos = zf.infolist()

    def data_start(info) -> int:
        name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
        return info.header_offset + 30 + name_len + extra_len

    pkl = next(i for i in infos if i.filename.endswith("/data.pkl"))
    tensors = [i for i in infos if "/data/" in i.filename]
    eocd = data.rfind(b"PK\x05\x06")
    cd = struct.unpack("<I", data[eocd + 16:eocd + 20])[0]
    cuts = {
        "1 byte": 1, "zip signature": 4, "mid local header": 20, "after local header": 30,
        "pickle start": data_start(pkl) + 2, "mid pickle": data_start(pkl) + pkl.file_size // 2,
        "pickle end": data_start(pkl) + pkl.file_size - 1,
        "first tensor header": tensors[0].header_offset + 10, "first tensor data": data_start(tensors[0]) + 3,
        "middle tensor": data_start(tensors[len(tensors) // 2]) + tensors[len(tensors) // 2].file_size // 2,
        "last tensor": data_start(tensors[-1]) + tensors[-1].file_size // 2,
        "25%": len(data) // 4, "50%": len(data) // 2, "75%": 3 * len(data) // 4, "5000 bytes": 5000,
        "central directory start": cd, "inside central directory": cd + 46,
        "central directory end": eocd - 10, "end record": eocd + 4, "end record, comment length": eocd + 20,
        "last byte": len(data) - 1,
    }
    assert all(0 < n < len(data) for n in cuts.values()) and len(set(cuts.values())) >= 20
    return cuts


def test_broken_checkpoints_each_get_one_paragraph(project, checkpoints):
    import torch

    data = checkpoints["det"].read_bytes()
    user = project.path("user")
    user.mkdir()
    files: dict[str, tuple[str, str]] = {}  # model key -> (file, what the paragraph must say)
    for i, (where, n) in enumerate(sorted(truncation_offsets(data).items(), key=lambda kv: kv[1])):
        (user / f"cut{i:02d}.pt").write_bytes(data[:n])
        files[f"cut{i:02d}"] = (f"cut{i:02d}.pt", "is not a loadable checkpoint")
    (user / "random.pt").write_bytes(os.urandom(4096))
    files["random"] = ("random.pt", "is not a loadable checkpoint")
    (user / "empty.pt").write_bytes(b"")
    files["empty"] = ("empty.pt", "is empty (0 bytes)")
    with zipfile.ZipFile(user / "notes.pt", "w") as z:
        z.writestr("notes.txt", "a zip, but not a torch checkpoint")
    files["notes"] = ("notes.pt", "is not a loadable checkpoint")
    model = torch.load(checkpoints["det"], map_location="cpu", weights_only=False)["model"]
    torch.save(model.state_dict(), user / "state_dict.pt")
    files["state_dict"] = ("state_dict.pt", "holds no model")
    prefix = without_file_permissions()
    if not prefix or shutil.which(prefix[0]):
        (user / "locked.pt").write_bytes(data)
        (user / "locked.pt").chmod(0)
        files["locked"] = ("locked.pt", "(Permission denied)")
    before = {p.name: sha(p) for p in user.iterdir() if p.name != "locked.pt"}

    project.write("manifests/m.yaml", "defaults: {formats: [onnx], imgsz: 64}\nmodels:\n"
                  + "".join(f"  {key}: {{pt_file: ../user/{file}}}\n" for key, (file, _) in files.items())
                  + f"  fine: {{pt_file: {checkpoints['det']}, triton_name: fine}}\n")
    run = project.doit("--continue", "manifest=manifests/m.yaml", prefix=prefix if "locked" in files else ())
    assert run.rc != 0 and "Traceback" not in run.text, run.text
    found = paragraphs(run.text)
    for key, (file, must) in files.items():
        para = found.get(f"inspect:{key}")
        assert para, f"no paragraph for {file}:\n{run.text}"
        for s in (f"models.{key}", file, must, "Fix:", "m.yaml"):
            assert s in para, para
    assert "export_onnx:fine" in run.executed  # the good model still builds in the same run
    assert project.generated() and all("fine" in p for p in project.generated())
    if "locked" in files:
        (user / "locked.pt").chmod(0o644)
    assert {p.name: sha(p) for p in user.iterdir() if p.name != "locked.pt"} == before
    tried("broken checkpoints (truncated at 21 offsets, random, empty, zip, state_dict, unreadable)", len(files))


def symlink_loop(p: Path) -> None:
    p.symlink_to(p.with_name("y.pt"))
    p.with_name("y.pt").symlink_to(p)


@pytest.mark.parametrize("make,must", [(Path.mkdir, "is a directory, not a file"),
                                       (symlink_loop, "is a broken symlink or a symlink loop")],
                         ids=["directory", "symlink-loop"])
def test_checkpoint_path_that_is_no_file(project, make, must):
    project.path("user").mkdir()
    make(project.path("user/x.pt"))
    project.write("manifests/m.yaml", "models:\n  x: {pt_file: ../user/x.pt}\n")
    run = project.doit("manifest=manifests/m.yaml")
    assert run.rc != 0
    check_paragraph(run.text, ["m.yaml", "models.x.pt_file", must])
    assert project.generated() == []
    tried("checkpoint paths that are no file")


# ---- the pipeline's own files, damaged: a correct rebuild (or a paragraph), never a traceback --------------

MANIFEST = "defaults: {formats: [onnx_end2end], imgsz: 64, max_batch: 2}\nmodels:\n  a: {arch: yolo11n}\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A finished build with an artifact cache; every case below damages a copy of it."""
    d = tmp_path_factory.mktemp("built")
    proj = make_project(d / "proj")
    proj.write("manifests/m.yaml", MANIFEST)
    run = proj.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": str(d / "cache")})
    assert run.rc == 0, run.text
    return proj, d / "cache", {p: sha(proj.path(p)) for p in proj.generated()}


def truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def garble(p: Path) -> None:
    p.write_text('{"recipe": "abc", "outputs": [1, 2')


def damage_cache_index(proj: Project, cache: Path) -> None:
    staged = "pytorch_models/staged/a_end2end/1"
    rec = json.loads(proj.path(f"{staged}/model.onnx.verification.json").read_text())["recipe"]
    (cache / rec[:2] / rec / "index.json").write_text('{"outputs": "not a list"}')
    for p in (f"{staged}/model.onnx", f"{staged}/model.onnx.verification.json"):
        proj.path(p).unlink()


# name: (how to damage a finished build, what the next run must show besides ending byte-identical:
#        the tasks that rebuild, and a phrase of its output)
STATE_CASES = {
    "truncated-intermediate-onnx": (lambda proj, cache: truncate(proj.path("pytorch_models/a.onnx")),
                                    {"export_onnx:a"}, ""),
    "truncated-staged-onnx": (lambda proj, cache: truncate(proj.path("pytorch_models/staged/a_end2end/1/model.onnx")),
                              {"end2end_onnx:a"}, ""),
    # a published copy damaged (not the staged file it was linked from): the same version, relinked
    "truncated-served-onnx": (lambda proj, cache: truncate(proj.path("models/a_end2end/1/model.onnx")),
                              {"publish:a_end2end"}, "version 1 repaired"),
    "truncated-checkpoint": (lambda proj, cache: truncate(proj.path("pytorch_models/a.untrained.pt")),
                             {"materialize:a"}, ""),
    "corrupt-verification-record": (lambda proj, cache: garble(proj.path("pytorch_models/a.onnx.verification.json")),
                                    {"export_onnx:a"}, ""),
    "corrupt-checkpoint-record": (lambda proj, cache: garble(proj.path("pytorch_models/a.checkpoint.json")),
                                  {"materialize:a"}, ""),
    # every task runs once, finds its artifacts recorded with the same recipe and keeps them
    "corrupt-doit-state": (lambda proj, cache: proj.write(".doit.json", '{"materialize:a": {"_params": '),
                           None, "is not valid JSON"),
    "doit-state-not-a-table": (lambda proj, cache: proj.write(".doit.json", "[1, 2, 3]"),
                               None, "does not hold doit's task table"),
    "corrupt-manifest-cache": (lambda proj, cache: [garble(p) for p in proj.path(".pipeline/manifests").iterdir()],
                               set(), ""),
    "corrupt-code-index": (lambda proj, cache: proj.write(".pipeline/code-index.json", '{"format": 1, "files": ['),
                           set(), ""),
    "corrupt-artifact-cache-index": (damage_cache_index, {"end2end_onnx:a"}, "is unusable"),
}


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_damaged_state_rebuilds_correctly(built, tmp_path, case):
    src, cache, want = built
    damage, rebuilt, says = STATE_CASES[case]
    proj = Project(tmp_path / "proj")
    shutil.copytree(src.root, proj.root, symlinks=True)
    shutil.copytree(cache, tmp_path / "cache")
    damage(proj, tmp_path / "cache")
    run = proj.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": str(tmp_path / "cache")})
    assert run.rc == 0 and "Traceback" not in run.text, run.text
    assert says in run.text
    if rebuilt is not None:
        assert run.executed == rebuilt, run.text
    else:
        for task in ("materialize:a", "export_onnx:a", "end2end_onnx:a"):  # the expensive ones: kept, not rebuilt
            assert f"{task}: already built with this recipe" in run.out, run.text
    assert {p: sha(proj.path(p)) for p in proj.generated()} == want
    again = proj.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": str(tmp_path / "cache")})
    assert again.rc == 0 and not again.executed, again.text  # and the state is whole again
    tried("damaged pipeline files")


def test_disk_full_during_a_write(built, tmp_path):
    """The file-size limit stands in for a full disk (the same failed write, without a mount)."""
    src, cache, want = built
    proj = Project(tmp_path / "proj")
    shutil.copytree(src.root, proj.root, symlinks=True)
    served = proj.path("models/a_end2end/1/model.onnx")
    for p in proj.generated():
        if not p.startswith("pytorch_models/a.untrained"):
            proj.path(p).unlink()
    limit = proj.path("pytorch_models/a.untrained.pt").stat().st_size + (1 << 20)  # the ONNX is larger
    run = proj.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": "off"},
                    preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert run.rc != 0
    check_paragraph(run.text, ["m.yaml", "models.a", "could not write its files", "size limit",
                               "nothing half-written was kept"])
    assert not served.exists() and not proj.path("pytorch_models/a.onnx").exists()
    assert not [p for p in proj.root.rglob("*.tmp-*")]
    run = proj.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": "off"})
    assert run.rc == 0, run.text
    assert {p: sha(proj.path(p)) for p in proj.generated()} == want
    tried("disk full during a write")



def test_hostile_open_clip_checkpoint_never_runs(tmp_path):
    """open_clip reads local checkpoints weights-only too; the refusal names the global and the way out."""
    import torch

    from pipeline.engine.errors import UserError
    from pipeline.families import mobileclip2 as mobileclip

    Path(MARKER.format("clip")).unlink(missing_ok=True)
    torch.save({"state_dict": {}, "extra": Evil("clip")}, tmp_path / "clip.bin")
    with pytest.raises(UserError) as e:
        mobileclip.create("MobileCLIP2-S2", "file", str(tmp_path / "clip.bin"), None, "encoders.e")
    text = " ".join(str(e.value).split())
    assert "'posix.system'" in text and "under 'encoders.e' in the manifest" in text, text
    assert not Path(MARKER.format("clip")).exists()
    tried("hostile checkpoints")
