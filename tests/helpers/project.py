"""Tests run the real `doit` in a subprocess on a temporary copy of the project."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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
             preexec_fn=None, clear: bool = False) -> DoitRun:
        """`clear`: `env` is the whole environment (else it is added to this process's)."""
        given = env or {}
        env = {**({} if clear else os.environ), "PYTHONDONTWRITEBYTECODE": "1", **given}
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



REPORTS: dict[str, object] = {}  # tests that want their findings in CI's output put them here
