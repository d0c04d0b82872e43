"""What a step depends on is derived from the code, and it is the truth — proven with real doit runs.

Fast checks (no torch): every declaration against its builder's source. Slow checks: one project with
every kind of step (download, inspect, materialize, raw/End2End/FP16 ONNX, plans through the TensorRT
stand-in, MobileCLIP2 encoders) is built once while an import hook records, per task, every module of
the package its builder really imported (`dodo_traced.py` below: the runtime truth, independent of the
static analysis). Then, for EVERY module of the package, in turn:
* a semantic change makes stale (doit list --all --status) exactly the tasks whose builder's import
  closure holds the module — never fewer than the tasks that really imported it — and changes exactly
  their recipe hashes, so a warm artifact cache cannot hand out the old artifact;
* a comment or docstring change makes nothing stale and changes no recipe.
And end to end: a fresh clone sharing a warm cache rebuilds, not restores, what a code change touched.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from helpers.project import REPO, DoitRun, Project, make_project

sys.path.insert(0, str(REPO))

from pipeline.declarations.dag import all_steps  # noqa: E402
from pipeline.engine import codedeps  # noqa: E402

PACKAGE = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "pipeline").rglob("*.py"))


def module_name(rel: str) -> str:
    name = rel[:-3].replace("/", ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def builder_function(step) -> ast.FunctionDef:
    module, func = step.builder.split(":")
    tree = ast.parse(codedeps.module_file(module).read_text())
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func)


def literal_reads(fn: ast.FunctionDef) -> dict[str, set[str]]:
    """ctx.param("x") / ctx.input("x") / ctx.output("x") / ctx.final("x") with literal names."""
    reads: dict[str, set[str]] = {"param": set(), "input": set(), "output": set()}
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name) and node.func.value.id == "ctx" and node.args and \
                isinstance(node.args[0], ast.Constant):
            kind = {"param": "param", "input": "input", "output": "output",
                    "final": "output"}.get(node.func.attr)
            if kind:
                reads[kind].add(node.args[0].value)
    return reads


SAMPLE = """\
defaults: {max_batch: 4, imgsz: 128}
builtins: {nano: {formats: [onnx]}}
models:
  mine: {pt_file: ../mine.pt, formats: [onnx]}
  smoke: {arch: yolo11n, class_names: [a, b], formats: [onnx, onnx_end2end, trt, trt_end2end, dali_end2end,
                                                     dali_trt_end2end]}
  fp32: {arch: yolo11n, precision: fp32, formats: [trt_end2end]}
  nofree: {arch: yolo26n, class_names: [a], nms_free: true, topk: 50, formats: [onnx_end2end, trt_end2end]}
  fleet: {arch: yolo11n, formats: [trt, trt_end2end], gpu_targets: ["9.0"], tensorrt: "10.16.1.11"}
  q8: {arch: yolo11n, class_names: [a], precision: int8, calibration: {images: ../calibration, count: 32, method: max},
       accept_accuracy_drop: true, formats: [trt, trt_end2end]}
  q8free: {arch: yolo26n, class_names: [a], nms_free: true, topk: 50, precision: int8, accept_accuracy_drop: true,
           calibration: {images: ../calibration, count: 32, method: max}, formats: [trt_end2end]}
encoders:
  clip: {model: MobileCLIP2-S2, weights: untrained, image_max_batch: 2, text_max_batch: 2}
  clipfleet: {weights: untrained, gpu_targets: {"8.6": "NVIDIA A10"}, triton: "24.12"}
ensembles:
  search: {detector: smoke, encoder: clip}
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from pipeline.declarations.manifest.records import resolve

    d = tmp_path_factory.mktemp("decl")
    (d / "mine.pt").write_bytes(b"x")
    (d / "manifests").mkdir()
    (d / "manifests/m.yaml").write_text(SAMPLE)
    calibration_images(d / "calibration")
    return resolve(d / "manifests/m.yaml", d)


# ---------------------------------------------------------------- fast: every declaration, no torch
def test_every_declaration_names_a_builder_that_reads_only_what_it_declares(records):
    for step in all_steps():
        assert step.module.startswith("pipeline.builders."), step.builder
        fn = builder_function(step)
        reads = literal_reads(fn)
        models = [i for m in records for i in step.instances(m)]
        assert models, f"{step.basename}: no sample model uses it"
        for m in models:
            params = set(step.params(m))
            inputs = {k for k, f in step.inputs.items() if f(m) is not None}
            assert reads["param"] <= params, (step.builder, reads["param"] - params)
            assert reads["output"] <= set(step.outputs), (step.builder, reads["output"])
            # an optional input (a local open_clip checkpoint) is read only under its condition
            assert reads["input"] <= set(step.inputs), (step.builder, reads["input"])
            assert inputs <= set(step.inputs)
            json.dumps(step.params(m))  # parameters are data: they are stored and hashed


def test_no_builder_imports_another_builder_and_closures_are_complete():
    idx = codedeps.index()
    for step in all_steps():
        closure = idx.closure(step.module)
        others = [m for m in closure if m.startswith("pipeline.builders.") and m not in (step.module,)
                  and m != "pipeline.builders"]
        assert others == [], (step.builder, others)
        assert not any(m.startswith(("pipeline.declarations", "pipeline.engine.runner", "pipeline.commands",
                                     "pipeline.families")) for m in closure), (step.builder, closure)
    # what the closure must hold, from what each builder plainly uses
    code = lambda b: set(idx.code(b))  # noqa: E731
    assert {"pipeline/tooling/onnx_tools.py", "pipeline/tooling/efficient_nms.py"} <= code("pipeline.builders.end2end_onnx")
    assert "pipeline/tooling/onnx_tools.py" in code("pipeline.builders.encoder_trt_onnx")
    # a step's code is its builder's and its family's: never another family's
    from pipeline.declarations.steps.graphs import EXPORT_ONNX
    step_code, tools = EXPORT_ONNX.derived({"family": "pipeline.families.yolo11:FAMILY"})
    assert {"pipeline/families/yolo11.py", "pipeline/families/ultralytics.py", "pipeline/builders/raw_onnx.py"} <= set(step_code)
    assert "pipeline/families/mobileclip2.py" not in step_code
    assert {"torch", "ultralytics", "onnx", "onnxruntime"} <= set(tools) and "rich" not in tools
    assert "tritonclient" in idx.tools("pipeline.builders.triton_config")
    assert "tensorrt" in idx.tools("pipeline.builders.tensorrt_plan")


def test_the_analysis_sees_what_python_runs(tmp_path, monkeypatch):
    """Relative and function-level imports count; TYPE_CHECKING imports, comments and docstrings do not."""
    pkg = tmp_path / "pipeline"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub/__init__.py").write_text('"""doc"""\n')
    (pkg / "sub/a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
                                  "def f():\n    '''doc'''\n    from .b import g  # lazy\n    import numpy\n    return g\n")
    (pkg / "sub/b.py").write_text("from .. import other\nDATA_FILES = ('table.json',)\ndef g():\n    return 1\n")
    (pkg / "sub/c.py").write_text("x = 1\n")
    (pkg / "other.py").write_text("import yaml\n")
    (pkg / "sub/table.json").write_text("{}")
    monkeypatch.setattr(codedeps, "ROOT", tmp_path)
    idx = codedeps.CodeIndex(tmp_path / "index.json")
    assert idx.closure("pipeline.sub.a") == ["pipeline", "pipeline.other", "pipeline.sub", "pipeline.sub.a",
                                             "pipeline.sub.b"]
    code = idx.code("pipeline.sub.a")
    assert "pipeline/sub/table.json" in code and "pipeline/sub/c.py" not in code
    assert set(idx.info("pipeline.sub.a")["third_party"]) == {"numpy"}
    before = code["pipeline/sub/a.py"]
    a = pkg / "sub/a.py"
    a.write_text("# comment\n" + a.read_text().replace("'''doc'''", "'''another doc'''"))
    os.utime(a, ns=(1, 1))
    assert codedeps.CodeIndex(tmp_path / "index.json").code("pipeline.sub.a")["pipeline/sub/a.py"] == before
    a.write_text(a.read_text().replace("return g", "return g()"))
    assert codedeps.CodeIndex(tmp_path / "index.json").code("pipeline.sub.a")["pipeline/sub/a.py"] != before
    (pkg / "sub/table.json").write_text('{"changed": 1}')
    assert codedeps.CodeIndex(tmp_path / "index.json").code("pipeline.sub.a")["pipeline/sub/table.json"] != \
        code["pipeline/sub/table.json"]


def test_undeclared_reads_fail_loudly():
    from pipeline.engine.context import StepContext
    from pipeline.engine.errors import UndeclaredRead

    ctx = StepContext(task="t:x", inputs={"onnx": Path("a.onnx")}, outputs={"plan": Path("b")}, tmp={},
                      params={"imgsz": 640})
    assert ctx.param("imgsz") == 640 and ctx.input("onnx") == Path("a.onnx")
    for read in (lambda: ctx.param("max_batch"), lambda: ctx.input("weights"), lambda: ctx.final("onnx")):
        with pytest.raises(UndeclaredRead, match="does not declare"):
            read()


def _strings(path: Path):
    """String constants of a module, docstrings excluded."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_only_the_layout_module_knows_paths():
    for rel in PACKAGE + ["dodo.py"]:
        if rel in ("pipeline/declarations/layout.py", "pipeline/engine/paths.py"):  # artifacts; the engine's own
            continue
        bad = [s for s in _strings(REPO / rel) if re.search(r"pytorch_models|(^|\s)models/|\.pipeline", s)]
        assert bad == [], (rel, bad)


def test_every_file_a_message_points_at_exists():
    for rel in PACKAGE + ["dodo.py"]:
        for s in _strings(REPO / rel):
            for ref in re.findall(r"(?:manifests|pipeline|bench|tests)/[\w/.-]+\.(?:md|py|yaml)|README\.md", s):
                assert (REPO / ref).exists(), (rel, ref)


# ---------------------------------------------------------------- slow: real doit runs, runtime truth
TRACED_DODO = '''\
"""dodo.py plus an import hook: per task, every module of the package its builder imports (test only)."""
import builtins, importlib, json, os, sys
from dodo import *  # noqa: F401,F403  (the real DAG)
from pipeline.engine import runner

_call = runner.call_builder


def _traced(builder, ctx):
    # Forget the package's modules so every import statement the builder reaches runs again; the engine
    # stays (the runner holds it), and so does the module that registers a process-wide onnxruntime op
    # (it imports nothing of the package; the statements importing it are still seen).
    for name in [m for m in sys.modules if m.startswith("pipeline.") and not m.startswith("pipeline.engine")
                 and m != "pipeline.tooling.efficient_nms"]:
        del sys.modules[name]
    seen, real = {builder.split(":")[0]}, builtins.__import__

    def hook(name, globals=None, locals=None, fromlist=(), level=0):
        mod = real(name, globals, locals, fromlist, level)
        if level:
            base = (globals or {}).get("__package__", "").split(".")
            name = ".".join(base[: len(base) - (level - 1)] + ([name] if name else []))
        if name.split(".")[0] == "pipeline":
            seen.add(name)
            seen.update(f"{name}.{f}" for f in (fromlist or ()) if f"{name}.{f}" in sys.modules)
        return mod

    import_module = importlib.import_module

    def by_name(name, package=None):  # how the runner imports a builder and ctx.use() a family
        if name.split(".")[0] == "pipeline":
            seen.add(name)
        return import_module(name, package)

    builtins.__import__, importlib.import_module = hook, by_name
    try:
        return _call(builder, ctx)
    finally:
        builtins.__import__, importlib.import_module = real, import_module
        with open(os.environ["TRACE_FILE"], "a") as f:
            f.write(json.dumps({"task": ctx.task, "modules": sorted(seen)}) + "\\n")


runner.call_builder = _traced
runner._call_isolated = lambda spec, ctx: _traced(spec["builder"], ctx)  # in-process: the stand-in needs no CUDA
'''

MANIFEST = SAMPLE.replace("  fp32: {arch: yolo11n, precision: fp32, formats: [trt_end2end]}\n", "").replace(
    '  clipfleet: {weights: untrained, gpu_targets: {"8.6": "NVIDIA A10"}, triton: "24.12"}\n', "")


class Built(Project):
    def __init__(self, root: Path, env: dict):
        super().__init__(root)
        self.env = env

    def doit(self, *args, **kw) -> DoitRun:
        return super().doit(*args, "manifest=manifests/m.yaml", env=self.env, **kw)

    def statuses(self) -> dict[str, str]:
        run = self.doit("list", "--all", "--status")
        assert run.rc == 0, run.text
        return {m[1]: m[0] for m in re.findall(r"^([RUI]) (\S+:\S+)", run.out, re.M)}

    def recipe_rows(self) -> list[dict]:
        run = self.doit("recipe", "--json")
        assert run.rc == 0, run.text
        return json.loads(run.out)["artifacts"]

    def recipes(self) -> dict[str, str]:
        return {r["task"]: r["recipe"] for r in self.recipe_rows()}


def calibration_images(folder: Path) -> None:
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(32):
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 255, (96, 120, 3), dtype=np.uint8))


def place_user_files(proj: Project, checkpoints) -> None:
    proj.write("manifests/m.yaml", MANIFEST)
    calibration_images(proj.path("calibration"))
    shutil.copy(checkpoints["det"], proj.path("mine.pt"))
    shutil.copy(checkpoints["det"], proj.path("pytorch_models/yolo11n.pt"))  # a "download" already present


@pytest.fixture(scope="module")
def built(tmp_path_factory, checkpoints, dali_site):
    from helpers import trt_standin

    d = tmp_path_factory.mktemp("derived")
    env = trt_standin.install(d / "site-packages", "10.16.1.11", cc="9.0")
    env.update(PIPELINE_CACHE=str(d / "cache"), XDG_CACHE_HOME=str(d / "xdg"), TRACE_FILE=str(d / "trace.jsonl"))
    proj = Built(make_project(d / "proj").root, env)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(proj.root), str(dali_site)])  # DALI steps too
    place_user_files(proj, checkpoints)
    proj.write("dodo_traced.py", TRACED_DODO)
    run = proj.doit("-f", "dodo_traced.py")
    assert run.rc == 0, run.text
    trace: dict[str, set[str]] = {}
    for line in (d / "trace.jsonl").read_text().splitlines():
        entry = json.loads(line)
        trace.setdefault(entry["task"], set()).update(entry["modules"])
    proj.path("dodo_traced.py").unlink()
    return proj, trace, d


@pytest.mark.slow
def test_every_kind_of_step_ran_under_the_trace(built):
    proj, trace, _ = built
    basenames = {t.split(":")[0] for t in trace}
    assert basenames == {s.basename for s in all_steps()}, basenames
    # the runtime truth agrees with the static closure: nothing imported at run time is missing from it
    code = {r["task"]: set(r["code"]) for r in proj.recipe_rows()}
    for task, modules in trace.items():
        files = {str(codedeps.module_file(m).relative_to(REPO).as_posix()) for m in modules}
        assert files <= code[task], (task, files - code[task])


@pytest.mark.slow
def test_every_module_changes_exactly_the_tasks_that_depend_on_it(built):
    proj, trace, _ = built
    base_status, base_recipes = proj.statuses(), proj.recipes()
    artifacts = {t for t in base_recipes}
    assert artifacts and all(base_status[t] == "U" for t in artifacts), base_status
    spec_code = {r["task"]: set(r["code"]) for r in proj.recipe_rows()}
    report = {}
    for rel in PACKAGE:
        path = proj.path(rel)
        original = path.read_text()
        try:
            path.write_text(original + "\n_SEMANTIC_PROBE = 1\n")
            stale = {t for t, s in proj.statuses().items() if s == "R" and t in artifacts}
            changed = {t for t, r in proj.recipes().items() if r != base_recipes[t]}
            imported = {t for t, mods in trace.items() if module_name(rel) in mods}
            derived = {t for t, code in spec_code.items() if rel in code}
            assert imported <= stale, (rel, imported - stale)  # never fewer than the runtime truth
            assert stale == derived == changed, (rel, stale ^ derived, derived ^ changed)
            report[rel] = len(stale)

            path.write_text(f"# a comment\n{_reword_docstrings(original)}")
            assert {t for t, s in proj.statuses().items() if s == "R" and t in artifacts} == set(), rel
            assert proj.recipes() == base_recipes, rel
        finally:
            path.write_text(original)
    from helpers.project import REPORTS
    REPORTS["derived dependencies: tasks made stale by a semantic change, per module"] = report
    assert sum(report.values()) > 0


def _reword_docstrings(source: str) -> str:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body and \
                isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) and \
                isinstance(node.body[0].value.value, str):
            i = node.body[0].lineno - 1
            lines[i] = re.sub(r'("""|\'\'\')', r'\1Reworded. ', lines[i], count=1)
    return "".join(lines)


@pytest.mark.slow
def test_fresh_clone_with_warm_cache_rebuilds_what_a_code_change_touched(built, tmp_path, checkpoints):
    src, _, d = built
    clone = Built(make_project(tmp_path / "clone").root, src.env)
    place_user_files(clone, checkpoints)
    nms = clone.path("pipeline/tooling/efficient_nms.py")
    nms.write_text(nms.read_text() + "\n_SEMANTIC_PROBE = 1\n")
    run = clone.doit()
    assert run.rc == 0, run.text
    rebuilt = {"end2end_onnx:smoke", "fp16_end2end_onnx:smoke"}
    assert rebuilt <= run.executed
    for task in rebuilt:
        assert f"{task}: restored" not in run.out, run.out  # the old graph is not handed out
    restored = set(re.findall(r"^   (\S+): restored from the artifact cache", run.out, re.M))
    assert "export_onnx:smoke" in restored and "encoder_onnx:clip_text_encoder" in restored
    assert not restored & rebuilt


@pytest.mark.slow
def test_a_builder_reading_an_undeclared_parameter_fails_the_build(built, tmp_path):
    src, _, _ = built
    shutil.copytree(src.root, tmp_path / "p", symlinks=True)
    proj = Built(tmp_path / "p", {**src.env, "PIPELINE_CACHE": "off"})
    labels = proj.path("pipeline/builders/labels.py")
    labels.write_text(labels.read_text().replace('    names = json.loads(', '    ctx.param("max_batch")\n'
                                                                          '    names = json.loads('))
    run = proj.doit("labels:smoke")
    assert run.rc != 0
    assert "read parameter 'max_batch', which its step does not declare" in run.text
    assert not proj.path("pytorch_models/staged/smoke/labels.txt").exists()
