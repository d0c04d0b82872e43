"""A repeated no-op `doit` answered from a stat of every file it looked at, without doit's per-task checks.

doit decides a no-op task by task: build each task, read its state, stat and compare its files, call its
`uptodate` checks. That is ~0.2 ms a task of doit's own work before ours (about 1.5x a bare doit startup
with 100 models, 500 tasks), all of it to reach the answer the previous identical call reached.

So a building call in which **every task was up to date** leaves a snapshot, `.pipeline/noop/<key>.json`:
what doit printed, and (mtime, size, inode) of every file the call's tasks depend on or produce, of every
path their `uptodate` checks read, and of doit's state file. The key covers everything else a task's
declaration and doit's decision come from: the command line, the interpreter and its import path, the
environment, the resolved manifest, the installed distributions (tool versions, TensorRT, DALI), and
(mtime, size) of every file of dodo.py, pyproject.toml and the pipeline package. The next call with the same
key replays the output and exits 0 only if every one of those stats is unchanged; anything else (a file
touched, a target deleted, `doit forget`, another argument or tool version) goes through doit as usual.

Sound by construction: a task's up-to-date answer is a function of its declaration (the key), doit's
state (the state file's stat) and the files it names (their stats). Stats are taken before the run and
again after it; a snapshot is written only when both agree, so an edit made while doit was deciding is
never recorded as seen. A task whose `uptodate` check is not one of ours (which say what they read) makes
no snapshot. `PIPELINE_EXPLAIN_NOOP=1` says on stderr which way a call went and why.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

from . import paths, quick_exit

FORMAT = 1
KEEP = 16  # snapshots kept (one per distinct command line and manifest in use)
EXPLAIN = "PIPELINE_EXPLAIN_NOOP"
# Shell bookkeeping that changes between identical calls, this run's id and the explanation switch: no
# task reads them.
VOLATILE_ENV = frozenset({"_", "OLDPWD", "PWD", "SHLVL", "PIPELINE_RUN_ID", EXPLAIN})

_KEY: str | None = None  # this call's key, set by replay_if_unchanged() and read by noop_reporter.py
_PARTS: dict = {}  # digests of what the key is made of


def explain(text: str) -> None:
    if os.environ.get(EXPLAIN):
        sys.stderr.write(f"no-op snapshot: {text}\n")


def stat(path: str) -> list[int]:
    try:
        st = os.stat(path)
    except OSError:
        return [-1, -1, -1]
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def _code_stamps(root: str) -> list:
    """(file, mtime, size) of dodo.py, pyproject.toml and every file of the pipeline package."""
    out = []
    for rel in ("dodo.py", "pyproject.toml"):
        out.append([rel, *stat(os.path.join(root, rel))[:2]])
    stack = [os.path.join(root, "pipeline")]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        stack.append(entry.path)
                elif not entry.name.endswith(".pyc"):
                    st = entry.stat()
                    out.append([entry.path[len(root) + 1:], st.st_mtime_ns, st.st_size])
    return sorted(out)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]


def run_key(root: str, argv: list[str], environ: dict, manifest_key: str, installed: dict,
            tensorrt: str | None, dali: str | None) -> str:
    """This call's key; its parts' digests are kept for PIPELINE_EXPLAIN_NOOP (environment values: hashed)."""
    global _PARTS
    env = {k: _digest(v) for k, v in environ.items() if k not in VOLATILE_ENV}
    _PARTS = {
        "format": _digest(FORMAT), "project folder": _digest(root), "command line": _digest(argv),
        "interpreter and import path": _digest([sys.executable, sys.path]), "environment": _digest(sorted(env.items())),
        "manifest": _digest(manifest_key), "installed distributions": _digest([sorted(installed.items()), tensorrt, dali]),
        "pipeline code": _digest(_code_stamps(root)), "env": env,
    }
    return _digest(_PARTS)


def _why_missing() -> str:
    """What differs from the most recent snapshot (only asked for with PIPELINE_EXPLAIN_NOOP)."""
    try:
        latest = max((e for e in os.scandir(paths.NOOP_SNAPSHOTS) if e.name.endswith(".json")),
                     key=lambda e: e.stat().st_mtime_ns)
        with open(latest.path) as f:
            old = json.load(f)["parts"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no earlier no-op recorded"
    changed = [k for k in _PARTS if k != "env" and old.get(k) != _PARTS[k]]
    if "environment" in changed:
        names = sorted(k for k in {*old.get("env", {}), *_PARTS["env"]} if old.get("env", {}).get(k) != _PARTS["env"].get(k))
        changed[changed.index("environment")] = f"environment ({', '.join(names)})"
    return "the last one differs in " + ", ".join(changed) if changed else "none recorded"


def current_key() -> str | None:
    """This call's key (None until replay_if_unchanged ran: then no snapshot is made)."""
    return _KEY


def parts() -> dict:
    """The digests this call's key is made of, stored in its snapshot for PIPELINE_EXPLAIN_NOOP."""
    return _PARTS


def replay_if_unchanged(key: str) -> None:
    """Print the recorded output and exit 0 when this exact call was a no-op and nothing it read changed."""
    global _KEY
    _KEY = key
    path = os.path.join(paths.NOOP_SNAPSHOTS, f"{key}.json")
    try:
        with open(path) as f:
            snap = json.load(f)
        files, out = snap["files"], snap["out"]
    except (OSError, ValueError, KeyError, TypeError):
        if os.environ.get(EXPLAIN):
            explain(f"none for this call ({_why_missing()}): doit checks every task")
        return
    for p, stamp in files.items():
        if stat(p) != stamp:
            explain(f"{p} changed since the last no-op: doit checks every task")
            return
    explain(f"nothing changed since the last no-op ({len(files)} files): doit's task checks skipped")
    sys.stdout.write(out)
    sys.stdout.flush()
    quick_exit.succeeded()  # nothing to unload either
    raise SystemExit(0)


def save(key: str, snap: dict) -> None:
    folder = paths.NOOP_SNAPSHOTS
    tmp = os.path.join(folder, f".{key}.tmp-{os.getpid()}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(snap, f)
        os.replace(tmp, os.path.join(folder, f"{key}.json"))
        kept = sorted((e for e in os.scandir(folder) if e.name.endswith(".json")),
                      key=lambda e: e.stat().st_mtime_ns, reverse=True)
        for old in kept[KEEP:]:
            os.unlink(old.path)
    except OSError:  # read-only or full disk: the next call goes through doit, as without a snapshot
        if os.path.exists(tmp):
            os.unlink(tmp)
