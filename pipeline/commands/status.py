"""`doit status` and `doit graph`: every artifact, present or not, up to date or why stale — read from doit's own
state through its Dependency manager (what `doit info` uses), so "stale" means exactly what the next `doit`
would rebuild."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from doit.cmd_base import DoitCmdBase

from ..declarations import layout
from .specs import opt_json, spec_of

GRAPH_PICTURE = f"{layout.MODELS}/pipeline-graph.svg"
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
            if v.get("accuracy"):  # a quantized graph: its accuracy against FP32 (and FP16)
                row["accuracy"] = v["accuracy"]
            if task.name.startswith("plan:"):
                row.update(tensorrt=v.get("tensorrt"), gpu=v.get("gpu"), compute_capability=v.get("compute_capability"))
        if task.name.startswith("publish:"):  # a published folder: its versions, and those Triton serves
            row.update(_published(Path(primary).parent))
        values = dep_manager.get_values(task.name) if row["present"] else {}
        row["build_seconds"] = values.get("build_seconds")
        row["restored"] = bool(values.get("restored"))
        rows.append(row)
    return rows


def _published(folder: Path) -> dict:
    from ..engine import publish

    present = publish.versions_of(folder)
    config = folder / publish.CONFIG
    serves = publish.served_versions(config.read_text(), present) if config.is_file() else []
    return {"artifact": f"{folder}/", "versions": present, "serves": serves,
            "pinned": (publish.read_state(folder) or {}).get("pinned")}


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

        table = Table("task", "artifact", "size", "built in", "status", "verified", "TensorRT / GPU / versions",
                      show_lines=False)
        for r in rows:
            size = "-" if r["bytes"] is None else _human(r["bytes"])
            status = "[green]up to date" if r["status"] == "up-to-date" else "[yellow]stale: " + "; ".join(r["why"])
            trt = f"{r.get('tensorrt')} / {r.get('gpu')} sm{r.get('compute_capability')}" if r.get("tensorrt") else ""
            if r.get("versions") is not None:
                trt = (f"versions {', '.join(map(str, r['versions'])) or 'none'}; serves "
                       f"{', '.join(map(str, r['serves'])) or 'none'}" + (" (pinned)" if r.get("pinned") else ""))
            took = f"{r['build_seconds']:.1f} s" if r.get("build_seconds") is not None else \
                ("restored" if r.get("restored") else "")
            verified = r["verification"] or ""
            if r.get("accuracy"):
                verified += " " + _accuracy(r["accuracy"])
            table.add_row(r["task"], r["artifact"], size, took, status, verified, trt)
        Console(file=self.outstream, width=200).print(table)
        stale = sum(r["status"] != "up-to-date" for r in rows)
        self.outstream.write(f"{len(rows)} artifacts, {stale} stale\n")
        return 0


def _accuracy(a: dict) -> str:
    """One line: the quantized graph's score beside FP32's (and FP16's), the drop and its limit."""
    if a.get("metric") == "cosine to FP32":
        return f"(cosine to FP32 {a['mean_cosine']:.4f}, drop {a['drop']:.2f} % of {a['max_drop']})"
    quantized = next(k for k in a if k in ("int8", "fp8"))
    m = a["metric"]
    return (f"({quantized} {m} {a[quantized][m]:.3f}, fp32 {a['fp32'][m]:.3f}, fp16 {a['fp16'][m]:.3f}; drop "
            f"{a['drop']:.2f} {a['unit']} of {a['max_drop']}" + (", accepted" if a.get("accepted") else "") + ")")


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
            spec = spec_of(t)
            if spec is None and t.name.startswith("publish:"):  # a publication: coloured like a step
                color = "#b7e4b9" if self.dep_manager.get_status(t, by_name).status == "up-to-date" else "#ffcc80"
                label = f"{t.name}\\n{Path(t.targets[0]).parent}/"
            elif spec is None:
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


