"""User mistakes: one paragraph naming file, key and fix; exit != 0; no traceback; nothing written."""
from __future__ import annotations

import hashlib
import re

import pytest

ARCH = "arch: yolo11n"

# (case id, manifest text, substrings the paragraph must contain: the key path and the gist)
MANIFEST_CASES = [
    ("unknown-key", f"models:\n  a: {{{ARCH}, toppk: 5}}\n", ["models.a.toppk", "unknown key 'toppk'", "Fix:"]),
    ("unknown-top-key", "modles:\n  a: {arch: yolo11n}\n", ["modles", "unknown key", "builtins, models"]),
    ("wrong-type", f"defaults: {{max_batch: lots}}\nmodels:\n  a: {{{ARCH}}}\n", ["defaults.max_batch", "'lots'"]),
    ("name-slash", f"models:\n  a: {{{ARCH}, triton_name: 'a/b'}}\n", ["models.a.triton_name", "no '/'"]),
    ("name-dotdot", f"models:\n  a: {{{ARCH}, triton_name: 'a..b'}}\n", ["'a..b'", "triton_name"]),
    ("name-space", f"models:\n  a: {{{ARCH}, triton_name: 'my model'}}\n", ["models.a.triton_name", "spaces"]),
    ("key-slash", f"models:\n  'x/y': {{{ARCH}}}\n", ["models.x/y", "no '/'"]),
    ("duplicate-names", f"models:\n  a: {{{ARCH}, triton_name: det}}\n  b: {{{ARCH}, triton_name: det}}\n",
     ["'det'", "models.a", "models.b", "different triton_name"]),
    ("folder-collision", f"models:\n  a: {{{ARCH}, formats: [trt]}}\n  a_trt: {{{ARCH}, formats: [onnx]}}\n",
     ["'a_trt'", "models.a", "models.a_trt"]),
    ("missing-pt-file", "models:\n  a: {pt_file: nowhere/missing.pt}\n", ["models.a.pt_file", "does not exist"]),
    ("no-source", "models:\n  a: {max_batch: 4}\n", ["models.a", "exactly one of 'pt_file'"]),
    ("max-batch-zero", f"models:\n  a: {{{ARCH}, max_batch: 0}}\n", ["models.a.max_batch", "positive integer"]),
    ("max-batch-negative", f"defaults: {{max_batch: -4}}\nmodels:\n  a: {{{ARCH}}}\n", ["defaults.max_batch"]),
    ("topk-zero", f"models:\n  a: {{{ARCH}, topk: 0}}\n", ["models.a.topk", "1 to 4096"]),
    ("topk-too-big", "builtins:\n  small: {topk: 5000}\n", ["builtins.small.topk", "1 to 4096"]),
    ("imgsz-not-32", f"models:\n  a: {{{ARCH}, imgsz: 650}}\n", ["models.a.imgsz", "multiple of 32"]),
    ("unknown-format", f"models:\n  a: {{{ARCH}, formats: [onnx, tflite]}}\n", ["models.a.formats", "'tflite'"]),
    ("empty-formats", f"models:\n  a: {{{ARCH}, formats: []}}\n", ["models.a.formats", "empty"]),
    ("unknown-size", "builtins: [tiny]\n", ["builtins", "'tiny'"]),
    ("classes-mismatch", f"models:\n  a: {{{ARCH}, num_classes: 2, class_names: [x, y, z]}}\n",
     ["models.a", "3 names but num_classes is 2"]),
    ("empty-manifest", "", ["declares no model"]),
    ("only-comments", "# nothing here\n", ["declares no model"]),
    ("malformed-yaml", "models:\n  a: {arch: yolo11n\n  b: [\n", ["malformed", "line"]),
    ("top-level-list", "- small\n- nano\n", ["top level is a list"]),
    ("iou-out-of-range", f"defaults: {{iou: 1.5}}\nmodels:\n  a: {{{ARCH}}}\n", ["defaults.iou"]),
    ("agnostic-served-by-onnxruntime", f"models:\n  a: {{{ARCH}, class_agnostic: true}}\n",
     ["models.a.class_agnostic", "onnx_end2end", "trt_end2end"]),
    ("engine-cache-relative", f"defaults: {{onnx_tensorrt: {{engine_cache_path: cache}}}}\nmodels:\n  a: {{{ARCH}}}\n",
     ["defaults.onnx_tensorrt.engine_cache_path", "absolute path"]),
    ("triton-release-unknown", f'defaults: {{triton: "25.10"}}\nmodels:\n  a: {{{ARCH}}}\n',
     ["models.a.triton", "25.10 is not in the pipeline's table", "set tensorrt", "tritonserver:25.10-py3"]),
    ("triton-release-unquoted", f"defaults: {{triton: 24.10}}\nmodels:\n  a: {{{ARCH}}}\n",
     ["defaults.triton", "24.1", 'quoted YY.MM, e.g. "24.12"']),
    ("tensorrt-contradicts-triton", f'models:\n  a: {{{ARCH}, triton: "24.12", tensorrt: "10.8.0.43"}}\n',
     ["models.a.tensorrt", "Triton 24.12 ships TensorRT 10.7.0.23", "10.8.0.43"]),
    ("tensorrt-unsupported", f'defaults: {{tensorrt: "8.6.1"}}\nmodels:\n  a: {{{ARCH}}}\n',
     ["defaults.tensorrt", "'8.6.1' is not a TensorRT 10.x or 11.x version"]),
    ("trust-not-a-boolean", f"models:\n  a: {{{ARCH}, trust_checkpoint: maybe}}\n",
     ["models.a.trust_checkpoint", "'maybe'"]),
    ("gpu-targets-without-triton", f'defaults: {{gpu_targets: ["8.6", "9.0"]}}\nmodels:\n  a: {{{ARCH}}}\n',
     ["models.a.gpu_targets", "not which Triton serves the plans", 'add triton: "24.12"']),
    ("gpu-targets-too-old", f'defaults: {{gpu_targets: ["7.0"], triton: "24.12"}}\nmodels:\n  a: {{{ARCH}}}\n',
     ["defaults.gpu_targets", "'7.0' is not a compute capability TensorRT 10/11 builds for", "known: 7.5"]),
    ("gpu-targets-twice", f'models:\n  a: {{{ARCH}, gpu_targets: ["8.6", 8.6], triton: "24.12"}}\n',
     ["models.a.gpu_targets", "8.6 is listed twice"]),
    ("gpu-targets-bad-gpu", f'defaults: {{gpu_targets: {{"8.6": 42}}, triton: "24.12"}}\nmodels:\n  a: {{{ARCH}}}\n',
     ["defaults.gpu_targets", "GPU model for 8.6", "got 42"]),
    ("ensemble-unknown-detector", f"models:\n  a: {{{ARCH}}}\nencoders:\n  e: {{weights: untrained}}\n"
     "ensembles:\n  s: {detector: b, encoder: e}\n", ["ensembles.s.detector", "'b'", "use one of: a"]),
    ("ensemble-unknown-encoder", f"models:\n  a: {{{ARCH}}}\nensembles:\n  s: {{detector: a, encoder: e}}\n",
     ["ensembles.s.encoder", "not an encoders key", "add an encoders entry"]),
    ("ensemble-bad-backend", f"models:\n  a: {{{ARCH}}}\nencoders:\n  e: {{weights: untrained}}\n"
     "ensembles:\n  s: {detector: a, encoder: e, backend: tensorrt}\n", ["ensembles.s.backend", "'onnx'"]),
    ("ensemble-unknown-key", f"models:\n  a: {{{ARCH}}}\nencoders:\n  e: {{weights: untrained}}\n"
     "ensembles:\n  s: {detector: a, encoder: e, size: 3}\n", ["ensembles.s.size", "detector, encoder, backend"]),
    ("gpu-targets-empty", 'encoders:\n  e: {weights: untrained, gpu_targets: [], triton: "24.12"}\n',
     ["encoders.e.gpu_targets", "non-empty list"]),
    ("dali-threads-zero", f"models:\n  a: {{{ARCH}, dali: {{num_threads: 0}}}}\n",
     ["models.a.dali.num_threads", "positive integer of CPU threads per DALI model instance"]),
    ("dali-hw-load-too-big", f"defaults: {{dali: {{hw_decoder_load: 1.5}}}}\nmodels:\n  a: {{{ARCH}}}\n",
     ["defaults.dali.hw_decoder_load", "(got 1.5)", "a number from 0 to 1"]),
    ("dali-instances-text", f"models:\n  a: {{{ARCH}, dali: {{instances: two}}}}\n",
     ["models.a.dali.instances", "'two'", "DALI model instances per GPU"]),
    ("dali-unknown-key", f"models:\n  a: {{{ARCH}, dali: {{threads: 4}}}}\n",
     ["models.a.dali.threads", "unknown key 'threads'", "num_threads, hw_decoder_load, instances"]),
]


def check_paragraph(text: str, must: list[str]) -> str:
    assert "Traceback" not in text, text
    m = re.search(r"(?:^error: |^TaskFailed - taskid:\S+\n)(.+?)(?:\n\n|\Z)", text, re.S | re.M)
    assert m, f"no error paragraph in:\n{text}"
    para = " ".join(m.group(1).split())
    for s in must:
        assert s in para, f"{s!r} not in {para!r}"
    assert "Fix:" in para, para
    return para


@pytest.mark.parametrize("case,text,must", MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_bad_manifest(project, case, text, must):
    project.write("manifests/bad.yaml", text)
    run = project.doit("manifest=manifests/bad.yaml")
    assert run.rc != 0
    para = check_paragraph(run.text, must)
    if case not in ("empty-manifest",):
        assert "bad.yaml" in para
    assert project.generated() == []
    assert not (project.root / ".doit.json").exists() or "bad" not in (project.root / ".doit.json").read_text()


def test_missing_manifest_file(project):
    run = project.doit("manifest=manifests/nope.yaml")
    assert run.rc != 0
    check_paragraph(run.text, ["nope.yaml", "does not exist", "manifest=manifests/smoke.yaml"])


@pytest.mark.parametrize("value,must", [
    ("foo.txt", ["custom", "path[:name[:batch]]"]),
    ("a.pt:name:zero", ["custom", "'zero'", "positive integer"]),
    ("a.pt:bad name", ["custom=a.pt:bad name", "not a usable Triton model name"]),
    (",", ["custom", "empty"]),
], ids=["not-pt", "bad-batch", "bad-name", "empty"])
def test_bad_custom_value(project, value, must):
    project.write("a.pt", "x")
    run = project.doit(f"custom={value}")
    assert run.rc != 0
    check_paragraph(run.text, must)
    assert project.generated() == []


@pytest.mark.slow
def test_truncated_checkpoint(project, checkpoints):
    data = checkpoints["det"].read_bytes()
    user = project.write("mine/broken.pt", "")
    user.write_bytes(data[: len(data) // 3])
    before = hashlib.sha256(user.read_bytes()).hexdigest()
    project.write("manifests/m.yaml", "defaults: {formats: [onnx]}\nmodels:\n  b: {pt_file: ../mine/broken.pt}\n")
    run = project.doit("manifest=manifests/m.yaml")
    assert run.rc != 0
    check_paragraph(run.text, ["m.yaml", "models.b.pt_file", "is not a loadable checkpoint", "broken.pt"])
    assert project.generated() == []
    assert hashlib.sha256(user.read_bytes()).hexdigest() == before  # the user's file is untouched


@pytest.mark.slow
@pytest.mark.parametrize("kind,word", [("seg", "segmentation"), ("cls", "classification"), ("pose", "pose")])
def test_non_detection_checkpoint(project, checkpoints, kind, word):
    project.write("manifests/m.yaml", f"defaults: {{formats: [onnx]}}\nmodels:\n  x: {{pt_file: {checkpoints[kind]}}}\n")
    run = project.doit("manifest=manifests/m.yaml")
    assert run.rc != 0
    check_paragraph(run.text, ["models.x.pt_file", f"is a {word} model", "detection models only"])
    assert project.generated() == []
    assert checkpoints[kind].exists()


@pytest.mark.slow
def test_offline_download_says_what_to_do(project):
    project.write("manifests/m.yaml", "builtins: [nano]\ndefaults: {formats: [onnx]}\n")
    run = project.doit("manifest=manifests/m.yaml")
    assert run.rc != 0
    check_paragraph(run.text, ["builtins.nano", "could not download yolo11n.pt", "pytorch_models/yolo11n.pt",
                               "manifests/smoke.yaml"])
    assert project.generated() == []
