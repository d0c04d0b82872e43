"""The engine's small modules on their own, fast: the no-op replay, the quick exit, the build-time summary,
the validated-manifest cache."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from helpers.project import REPO


def run_python(code: str, cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=60)


# ---------------------------------------------------------------- noop.py: the replay
REPLAY = """
import sys
from pipeline.engine import noop
noop.replay_if_unchanged(sys.argv[1])
print("went through doit")
"""


def _snapshot(folder, key: str, files: dict, out: str) -> None:
    from pipeline.engine import noop

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        noop.save(key, {"files": files, "out": out, "parts": {}})
    finally:
        os.chdir(cwd)


def test_a_snapshot_replays_only_while_every_file_it_names_is_as_it_was(tmp_path):
    from pipeline.engine import noop

    (tmp_path / "input.txt").write_text("a")
    stamp = noop.stat(str(tmp_path / "input.txt"))
    _snapshot(tmp_path, "k1", {str(tmp_path / "input.txt"): stamp}, "-- task:x\n")
    replay = subprocess.run([sys.executable, "-c", REPLAY, "k1"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "PIPELINE_EXPLAIN_NOOP": "1"})
    assert replay.returncode == 0 and replay.stdout == "-- task:x\n", replay.stdout + replay.stderr
    assert "task checks skipped" in replay.stderr
    other = subprocess.run([sys.executable, "-c", REPLAY, "k2"], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    assert other.stdout == "went through doit\n"  # another call's key: no snapshot
    (tmp_path / "input.txt").write_text("bb")
    changed = subprocess.run([sys.executable, "-c", REPLAY, "k1"], cwd=tmp_path, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO), "PIPELINE_EXPLAIN_NOOP": "1"})
    assert changed.stdout == "went through doit\n" and "input.txt changed" in changed.stderr


def test_a_damaged_snapshot_goes_through_doit(tmp_path):
    (tmp_path / ".pipeline" / "noop").mkdir(parents=True)
    (tmp_path / ".pipeline" / "noop" / "k1.json").write_text("{not json")
    run = subprocess.run([sys.executable, "-c", REPLAY, "k1"], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0 and run.stdout == "went through doit\n"


def test_the_key_changes_with_what_a_task_declaration_comes_from():
    from pipeline.engine import noop

    base = dict(root=str(REPO), argv=["manifest=m.yaml"], environ={"A": "1"}, manifest_key="m", installed={"x": "1"},
                tensorrt=None, dali=None)
    key = noop.run_key(**base)
    assert noop.run_key(**base) == key
    for change in ({"argv": ["manifest=n.yaml"]}, {"environ": {"A": "2"}}, {"manifest_key": "n"},
                   {"installed": {"x": "2"}}, {"tensorrt": "10.7.0"}):
        assert noop.run_key(**{**base, **change}) != key, change
    assert noop.run_key(**{**base, "environ": {"A": "1", "OLDPWD": "/elsewhere", "SHLVL": "3"}}) == key  # shell noise


def test_only_the_newest_snapshots_are_kept(tmp_path, monkeypatch):
    from pipeline.engine import noop

    monkeypatch.chdir(tmp_path)
    for i in range(noop.KEEP + 3):
        noop.save(f"k{i}", {"files": {}, "out": "", "parts": {}})
        os.utime(tmp_path / ".pipeline" / "noop" / f"k{i}.json", ns=(i * 10**9, i * 10**9))
    noop.save("last", {"files": {}, "out": "", "parts": {}})
    kept = sorted(p.name for p in (tmp_path / ".pipeline" / "noop").iterdir())
    assert len(kept) == noop.KEEP and "last.json" in kept and "k0.json" not in kept


# ---------------------------------------------------------------- quick_exit.py
QUICK = """
import atexit, sys
from pipeline.engine import quick_exit
atexit.register(lambda: print("first registered, runs last"))
quick_exit.install()
atexit.register(lambda: print("registered after install, runs first"))
if sys.argv[1] == "ok":
    quick_exit.succeeded()
elif sys.argv[1] == "raising":
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        quick_exit.succeeded()  # called while an exception is on its way out: not a success
    raise SystemExit(3)
"""


@pytest.mark.parametrize("how,rc,lines", [
    ("ok", 0, ["registered after install, runs first"]),
    ("not-ok", 0, ["registered after install, runs first", "first registered, runs last"]),
    ("raising", 3, ["registered after install, runs first", "first registered, runs last"]),
])
def test_only_a_successful_run_skips_the_teardown(tmp_path, how, rc, lines):
    run = subprocess.run([sys.executable, "-c", QUICK, how], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == rc and run.stdout.splitlines() == lines, run.stdout + run.stderr


# ---------------------------------------------------------------- timings.py
def test_build_times_of_every_worker_are_summed_up_by_the_run(tmp_path):
    run = run_python("""
        import os
        from pipeline.engine import timings
        timings.start_run()
        timings.record("export_onnx:a", 2.5)
        if os.fork() == 0:          # a `doit -n 2` worker appends to the same run's file
            timings.record("export_onnx:b", 4.0)
            os._exit(0)
        os.wait()
        print(timings.summary())
        print(timings.summary())    # read once: the run's file is gone
    """, tmp_path)
    first, second = run.stdout.splitlines()
    assert first == "built 2 step(s), 6.5 s of build time; slowest: export_onnx:b 4.0 s, export_onnx:a 2.5 s"
    assert second == "None" and not list((tmp_path / ".pipeline" / "runs").iterdir())


def test_no_summary_outside_a_building_run(tmp_path):
    run = run_python("""
        from pipeline.engine import timings
        timings.record("x:y", 1.0)
        print(timings.summary())
    """, tmp_path, env={"PIPELINE_RUN_ID": ""})
    assert run.stdout.strip() == "None"


# ---------------------------------------------------------------- declarations/manifest/cache.py
def test_the_manifest_cache_reuses_valid_resolutions_and_recovers_from_damage(tmp_path, monkeypatch):
    import pipeline.declarations.manifest.records as records
    from pipeline.declarations.manifest import cache

    (tmp_path / "m.yaml").write_text("models:\n  a: {arch: yolo11n, formats: [onnx]}\n")
    calls = []
    real = records.resolve
    monkeypatch.setattr(records, "resolve", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.chdir(tmp_path)
    first = cache.load_models("m.yaml", None, tmp_path)
    assert cache.load_models("m.yaml", None, tmp_path) == first and len(calls) == 1  # the second from the cache
    (entry,) = (tmp_path / cache.CACHE_DIR).iterdir()
    entry.write_text("[{\"damaged\": ")
    assert cache.load_models("m.yaml", None, tmp_path) == first and len(calls) == 2  # validated again
    assert json.loads(entry.read_text()) == first  # and the entry rewritten whole
    (tmp_path / "m.yaml").write_text("models:\n  a: {arch: yolo11n, formats: [nope]}\n")
    from pipeline.engine.errors import UserError

    with pytest.raises(UserError, match="models.a.formats"):
        cache.load_models("m.yaml", None, tmp_path)
    assert len(list((tmp_path / cache.CACHE_DIR).iterdir())) == 1  # an invalid manifest is never cached
