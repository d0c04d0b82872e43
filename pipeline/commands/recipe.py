"""`doit recipe` (each artifact's recipe hash; one cache key for the manifest) and `doit clean-downloads`."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from doit.cmd_base import DoitCmdBase

from .specs import opt_json, step_specs


opt_key = {"name": "key_only", "long": "key", "type": bool, "default": False,
           "help": "print only the manifest's cache key (for a CI cache step)"}


def manifest_key(specs: dict) -> str:
    """One key for the whole build: every step's declaration, the code, and the content of the inputs
    no step makes (user checkpoints). Computable before anything is built; equal on every clone."""
    import hashlib

    from ..engine.hashing import sha256
    from ..engine.step import staleness

    made = {o for s in specs.values() for o in list(s["outputs"].values()) + ([s["record"]] if s["record"] else [])}
    doc = []
    for name in sorted(specs):
        s = specs[name]
        doc.append({"task": name, "builder": s["builder"], **staleness(s),
                    "sources": {k: sha256(i) if os.path.exists(i) else "missing"
                                for k, i in s["inputs"].items() if i not in made}})
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class Recipe(DoitCmdBase):
    doc_purpose = "show each artifact's recipe hash (its cache key) and one key for the whole manifest"
    doc_usage = "[TASK ...]"
    doc_description = None
    cmd_options = (opt_json, opt_key)

    def _execute(self, pos_args=None, as_json=False, key_only=False):
        from ..engine.runner import step_recipe

        specs = step_specs(self.task_list)
        self.dep_manager.close()
        key = manifest_key(specs)
        if key_only:
            self.outstream.write(key + "\n")
            return 0
        rows = []
        for name, s in specs.items():
            if pos_args and name not in pos_args and name.split(":")[0] not in pos_args:
                continue
            missing = [i for i in s["inputs"].values() if not os.path.exists(i)]
            r = None if missing else step_recipe(s)
            rows.append({"task": name, "recipe": r, "pending_inputs": missing, "code": sorted(s["code"]),
                         "tools": s["tools"]})
        if as_json:
            self.outstream.write(json.dumps({"manifest_key": key, "artifacts": rows}, indent=1) + "\n")
            return 0
        for r in rows:
            self.outstream.write(f"{r['task']:55s} {r['recipe'] or 'pending: needs ' + ', '.join(r['pending_inputs'])}\n")
        self.outstream.write(f"manifest key: {key}\n")
        return 0


opt_dry = {"name": "dry_run", "short": "n", "long": "dry-run", "type": bool, "default": False,
           "help": "only print what would be removed"}


class CleanDownloads(DoitCmdBase):
    doc_purpose = "remove downloaded weights (built-in .pt files, open_clip downloads); `doit clean` keeps them"
    doc_usage = ""
    doc_description = None
    cmd_options = (opt_dry,)

    def _execute(self, pos_args=None, dry_run=False):
        specs = step_specs(self.task_list)
        self.dep_manager.close()
        paths = sorted({p for s in specs.values() for p in s["downloads"]}
                       | {s["params"]["download_dir"] for s in specs.values() if s["params"].get("download_dir")})
        for p in map(Path, paths):
            if not p.exists():
                continue
            self.outstream.write(f"{'would remove' if dry_run else 'removing'} {p}\n")
            if not dry_run:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        return 0


