"""doit commands for people looking at the build (registered in pyproject.toml, [tool.doit.plugins.command]).

    doit status [--json] [manifest=...]     per artifact: present, size, build time, up to date or why
                                            stale, verification result, TensorRT version and GPU for plans
    doit graph [--out models.svg]           the DAG as graphviz DOT (+ SVG/PNG when `dot` exists),
                                            coloured by status
    doit builtins                           the built-in YOLO11 sizes and their settings
    doit recipe [--json] [--key]            each artifact's recipe hash; one cache key for the manifest
    doit clean-downloads [-n]               remove downloaded weights (`doit clean` never does)

They read doit's own state through its Dependency manager (what `doit info` uses), so "stale" means
exactly what the next `doit` would rebuild.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from doit.cmd_base import DoitCmdBase

from .declarations import layout

GRAPH_PICTURE = f"{layout.MODELS}/pipeline-graph.svg"

opt_json = {"name": "as_json", "long": "json", "type": bool, "default": False,
            "help": "print JSON for scripts instead of a table"}
opt_out = {"name": "out", "long": "out", "type": str, "default": GRAPH_PICTURE,
           "help": "picture to write (.svg or .png); the .dot source is written beside it"}


def _reasons(status) -> list[str]:
    r = status.reasons
    if any("no successful run" in str(utd) for utd, _, _ in r.get("uptodate_false", [])):
        return ["never built"]
    out = []
    for utd, _, _ in r.get("uptodate_false", []):
        out.append(str(utd))
    for key, text in (("missing_target", "missing"), ("changed_file_dep", "changed"),
                      ("missing_file_dep", "input missing"), ("added_file_dep", "new input"),
                      ("removed_file_dep", "input removed")):
        if r.get(key):
            out.append(f"{text}: {', '.join(r[key])}")
    if r.get("has_no_dependencies"):
        out.append("never built")
    return out or (["never built"] if status.status == "run" else [])


def artifact_rows(tasks, dep_manager) -> list[dict]:
    by_name = {t.name: t for t in tasks}
    rows = []
    for task in tasks:
        if not task.targets or ":" not in task.name:
            continue
        status = dep_manager.get_status(task, by_name, get_log=True)
        primary = task.targets[0]
        record = next((t for t in task.targets if t.endswith((".verification.json", ".checkpoint.json",
                                                                ".clip.json"))), None)
        row = {"task": task.name, "artifact": primary, "present": all(os.path.exists(t) for t in task.targets),
               "bytes": os.path.getsize(primary) if os.path.exists(primary) else None,
               "status": "up-to-date" if status.status == "up-to-date" else "stale",
               "why": [] if status.status == "up-to-date" else _reasons(status), "verification": None}
        if record and os.path.exists(record):
            try:
                saved = json.loads(Path(record).read_text())
            except ValueError:  # damaged: the next doit rebuilds it
                saved = {}
            v = saved.get("verification", {}) if isinstance(saved, dict) else {}
            row["verification"] = ("passed" if v.get("passed") else "recorded") if v else None
            if task.name.startswith("plan:"):
                row.update(tensorrt=v.get("tensorrt"), gpu=v.get("gpu"), compute_capability=v.get("compute_capability"))
        values = dep_manager.get_values(task.name) if row["present"] else {}
        row["build_seconds"] = values.get("build_seconds")
        row["restored"] = bool(values.get("restored"))
        rows.append(row)
    return rows


class Status(DoitCmdBase):
    doc_purpose = "show every artifact: present, size, up to date or why stale, verification"
    doc_usage = "[TASK ...]"
    doc_description = None
    cmd_options = (opt_json,)

    def _execute(self, pos_args=None, as_json=False):
        tasks = [t for t in self.task_list if not pos_args or t.name in pos_args or t.name.split(":")[0] in pos_args]
        rows = artifact_rows(tasks, self.dep_manager)
        self.dep_manager.close()
        if as_json:
            self.outstream.write(json.dumps(rows, indent=1) + "\n")
            return 0
        from rich.console import Console
        from rich.table import Table

        table = Table("task", "artifact", "size", "built in", "status", "verified", "TensorRT / GPU", show_lines=False)
        for r in rows:
            size = "-" if r["bytes"] is None else _human(r["bytes"])
            status = "[green]up to date" if r["status"] == "up-to-date" else "[yellow]stale: " + "; ".join(r["why"])
            trt = f"{r.get('tensorrt')} / {r.get('gpu')} sm{r.get('compute_capability')}" if r.get("tensorrt") else ""
            took = f"{r['build_seconds']:.1f} s" if r.get("build_seconds") is not None else \
                ("restored" if r.get("restored") else "")
            table.add_row(r["task"], r["artifact"], size, took, status, r["verification"] or "", trt)
        Console(file=self.outstream, width=200).print(table)
        stale = sum(r["status"] != "up-to-date" for r in rows)
        self.outstream.write(f"{len(rows)} artifacts, {stale} stale\n")
        return 0


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


class Graph(DoitCmdBase):
    doc_purpose = "draw the DAG (graphviz), coloured by status: green up to date, orange stale, grey group"
    doc_usage = ""
    doc_description = None
    cmd_options = (opt_out,)

    def _execute(self, pos_args=None, out=GRAPH_PICTURE):
        by_name = {t.name: t for t in self.task_list}
        producer = {target: t.name for t in self.task_list for target in t.targets}
        lines = ["digraph pipeline {", '  rankdir=LR; node [shape=box, style="rounded,filled", fontname=Helvetica];']
        for t in self.task_list:
            if ":" not in t.name:
                continue
            spec = _spec(t)
            if spec is None:
                color, label = "#dddddd", t.name
            else:
                color = "#b7e4b9" if self.dep_manager.get_status(t, by_name).status == "up-to-date" else "#ffcc80"
                label = f"{t.name}\\n{spec['builder'].split(':')[0].replace('.', '/')}.py"
            lines.append(f'  "{t.name}" [fillcolor="{color}", label="{label}"];')
            for dep in t.file_dep:
                if dep in producer:
                    lines.append(f'  "{producer[dep]}" -> "{t.name}";')
            for dep in t.task_dep:
                if dep in by_name and ":" in dep:
                    lines.append(f'  "{dep}" -> "{t.name}" [style=dashed];')
        lines.append("}")
        self.dep_manager.close()
        out_path = Path(out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        dot_file = out_path.with_suffix(".dot")
        dot_file.write_text("\n".join(lines) + "\n")
        dot = shutil.which("dot")
        if dot:
            subprocess.run([dot, f"-T{out_path.suffix.lstrip('.')}", str(dot_file), "-o", str(out_path)], check=True)
            self.outstream.write(f"wrote {out_path} and {dot_file}\n")
        else:
            self.outstream.write(f"wrote {dot_file} (install graphviz for the {out_path.suffix} picture: "
                                 f"apt-get install graphviz)\n")
        return 0


class Builtins(DoitCmdBase):
    doc_purpose = "list the built-in YOLO11 models and their settings (the documented sizes)"
    doc_usage = ""
    doc_description = None
    cmd_options = (opt_json,)

    def execute(self, params, args):  # needs no dodo.py
        from .declarations.manifest import BUILTIN_RELEASE_URL, BUILTIN_SIZES, Settings

        d = Settings()
        rows = [{"size": size, "triton_name": f"yolov11_{size}", "checkpoint": f"yolo11{letter}.pt",
                 "max_batch": mb, "topk": 300, "imgsz": d.imgsz, "precision": d.precision, "iou": d.iou,
                 "conf": d.conf, "url": BUILTIN_RELEASE_URL.format(file=f"yolo11{letter}.pt")}
                for size, (letter, mb) in BUILTIN_SIZES.items()]
        if params.get("as_json"):
            self.outstream.write(json.dumps(rows, indent=1) + "\n")
            return 0
        for r in rows:
            self.outstream.write(f"{r['size']:7s} {r['triton_name']:15s} {r['checkpoint']:11s} max_batch {r['max_batch']:3d}"
                                 f"  topk {r['topk']}  {r['imgsz']} px  {r['precision']}  iou {r['iou']}"
                                 f"  conf {r['conf']}\n")
        return 0


opt_key = {"name": "key_only", "long": "key", "type": bool, "default": False,
           "help": "print only the manifest's cache key (for a CI cache step)"}


def _spec(task) -> dict | None:
    """The runner spec of an artifact task (its python-action's argument), None for groups."""
    from .engine.runner import run_step

    return next((a.args[0] for a in task.actions if getattr(a, "py_callable", None) is run_step), None)


def step_specs(tasks) -> dict:
    """{task name: the runner spec} of every artifact task."""
    return {t.name: s for t in tasks if (s := _spec(t)) is not None}


def manifest_key(specs: dict) -> str:
    """One key for the whole build: every step's declaration, the code, and the content of the inputs
    no step makes (user checkpoints). Computable before anything is built; equal on every clone."""
    import hashlib

    from .engine.hashing import sha256
    from .engine.step import staleness

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
        from .engine.runner import step_recipe

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


opt_images = {"name": "images", "long": "images", "type": str, "default": "",
              "help": "a folder of images (default: synthetic scenes, PNG and JPEG)"}
opt_out = {"name": "out", "long": "out", "type": str, "default": layout.TRACKS,
           "help": "where tracks.json and tracks.png go"}
opt_batch = {"name": "batch", "long": "batch", "type": int, "default": 8, "help": "batch size for throughput"}


class CompareTracks(DoitCmdBase):
    doc_purpose = "the same images through Track A (PyTorch), raw ONNX + client NMS, End2End ONNX and Track D: " \
                  "agreement, latency, throughput, a plot (CPU numbers)"
    doc_usage = "NAME"
    doc_description = None
    cmd_options = (opt_images, opt_out, opt_batch)

    def _execute(self, pos_args=None, images="", out=layout.TRACKS, batch=8):
        from pathlib import Path

        from .engine.errors import UserError, exit_with
        from .engine.tools import dali_version

        specs = step_specs(self.task_list)
        self.dep_manager.close()
        names = sorted(t.split(":", 1)[1] for t in specs if t.startswith("end2end_onnx:"))
        if not pos_args or len(pos_args) != 1 or pos_args[0] not in names:
            exit_with(UserError("compare-tracks needs the name of one YOLO model with an End2End ONNX",
                                key="NAME", fix=f"doit compare-tracks NAME, NAME one of: {', '.join(names) or '(none)'}"))
        name = pos_args[0]
        raw, e2e = specs[f"export_onnx:{name}"], specs[f"end2end_onnx:{name}"]
        pre = specs.get(f"dali_pipeline:{name}_dali_end2end_preprocess")
        boxes = specs.get(f"boxes_onnx:{name}_dali_end2end_postprocess")
        need = [raw["outputs"]["onnx"], e2e["outputs"]["onnx"], raw["inputs"]["checkpoint"]]
        dali = None
        if pre and boxes and dali_version():
            need += [pre["record"], boxes["outputs"]["onnx"]]
            dali = {"record": pre["record"], "boxes_onnx": boxes["outputs"]["onnx"]}
        missing = [p for p in need if not os.path.exists(p)]
        if missing:
            groups = f"onnx:{name} onnx_end2end:{name}" + (f" dali_end2end:{name}" if dali else "")
            exit_with(UserError(f"compare-tracks {name} needs {', '.join(missing)}", key=name,
                                fix=f"build them first: doit {groups}"))
        if dali:
            dali["definition"] = json.loads(Path(dali["record"]).read_text())["verification"]["definition"]
        from . import tracks

        files = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
            if images else tracks.sample_images(Path(out) / "images")
        settings = {**e2e["params"], "imgsz": raw["params"]["imgsz"]}
        rows = tracks.compare(raw["inputs"]["checkpoint"], raw["outputs"]["onnx"], e2e["outputs"]["onnx"], settings,
                              files, batch, dali)
        title = f"{name}: {len(files)} images, imgsz {settings['imgsz']}, conf {settings['conf']}, iou {settings['iou']}"
        from rich.console import Console
        from rich.table import Table

        table = Table("track", "agreement with A", "detections", "latency (ms, 1 image)", "images/s (batch "
                      f"{batch})", title=title + " — CPU, this host")
        for r in rows:
            table.add_row(r["track"], f"{100 * r['agreement']:.1f} % ({r['matched']}/{r['track_a_detections']})",
                          str(r["detections"]), f"{r['latency_ms']:.1f}", f"{r['images_per_s']:.1f}")
        Console(file=self.outstream, width=140).print(table)
        if not dali:
            self.outstream.write("Track D left out: " + ("NVIDIA DALI is not installed here" if not dali_version()
                                 else f"no dali_end2end format for {name}") + "\n")
        j, png = tracks.write(rows, Path(out), title)
        self.outstream.write(f"wrote {j} and {png}\n")
        return 0
