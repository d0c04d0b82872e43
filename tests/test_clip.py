"""Track E: MobileCLIP2 image and text encoders (untrained weights: no download here)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers.project import REPO, Project, make_project

pytestmark = pytest.mark.slow

S2 = "mobileclip2_s2"
MANIFEST = """\
encoders:
  mobileclip2_s2: {model: MobileCLIP2-S2, weights: untrained, image_max_batch: 16, text_max_batch: 8}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    proj = make_project(tmp_path_factory.mktemp("clip") / "proj")
    proj.write("manifests/m.yaml", MANIFEST)
    run = proj.doit("manifest=manifests/m.yaml")
    assert run.rc == 0, run.text
    return proj


@pytest.fixture
def copy(built, tmp_path):
    shutil.copytree(built.root, tmp_path / "proj")
    return Project(tmp_path / "proj")


def untrained_s2():
    from pipeline.families.mobileclip2 import create

    return create("MobileCLIP2-S2", "untrained", None, None, f"encoders.{S2}")


def io(path):
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    desc = lambda v: (v.name, onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type),  # noqa: E731
                      [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim])
    return [desc(v) for v in g.input], [desc(v) for v in g.output]


def test_encoder_io_as_documented(built):
    assert io(built.path("pytorch_models/mobileclip2_s2_image_encoder.onnx")) == (
        [("images", "FLOAT", ["batch", 3, 256, 256])], [("image_embeddings", "FLOAT", ["batch", 512])])
    assert io(built.path("pytorch_models/mobileclip2_s2_text_encoder.onnx")) == (
        [("text_tokens", "INT64", ["batch", 77])], [("text_embeddings", "FLOAT", ["batch", 512])])
    # the graphs TensorRT compiles: FP32 I/O around an FP16 body; INT32 tokens
    assert io(built.path("pytorch_models/mobileclip2_s2_text_encoder.trt.onnx"))[0] == [
        ("text_tokens", "INT32", ["batch", 77])]
    import onnx
    body = onnx.load(str(built.path("pytorch_models/mobileclip2_s2_image_encoder.trt.onnx"))).graph.initializer
    assert sum(i.data_type == onnx.TensorProto.FLOAT16 for i in body) > 100


def test_servable_onnx_folders_and_client_info(built):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    for role, batch in (("image", 16), ("text", 8)):
        folder = built.path(f"models/{S2}_{role}_encoder_onnx")
        cfg = text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())
        assert cfg.name == f"{S2}_{role}_encoder_onnx" and cfg.platform == "onnxruntime_onnx"
        assert cfg.max_batch_size == batch and list(cfg.output[0].dims) == [512]
        assert cfg.parameters["untrained_random_weights"].string_value == "true"
        assert (folder / "1/model.onnx").samefile(built.path(f"pytorch_models/{S2}_{role}_encoder.onnx"))
        info = json.loads((folder / "encoder.json").read_text())
        assert info["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-6) and info["embedding"]["dim"] == 512
    image = json.loads(built.path(f"models/{S2}_image_encoder_onnx/encoder.json").read_text())["preprocessing"]
    assert image["image_size"] == [256, 256] and image["mean"] == [0, 0, 0] and image["std"] == [1, 1, 1]
    assert image["interpolation"] == "bilinear"
    text = json.loads(built.path(f"models/{S2}_text_encoder_onnx/encoder.json").read_text())["tokenizer"]
    assert text["context_length"] == 77
    assert not built.path(f"models/{S2}_image_encoder").exists()  # no TensorRT here: no plan folder


def test_onnx_matches_the_pytorch_model(built, yolo_env):
    """Fresh batch sizes and inputs, against the un-reparameterized model rebuilt in this process."""
    import open_clip
    import torch

    from pipeline.families.mobileclip2 import QUERIES
    from pipeline.tooling.onnx_tools import run as run_onnx

    model = untrained_s2()
    x = torch.rand(3, 3, 256, 256, generator=torch.Generator().manual_seed(42))
    with torch.no_grad():
        want = model.encode_image(x, normalize=True).numpy()
    got = run_onnx(built.path("pytorch_models/mobileclip2_s2_image_encoder.onnx"), {"images": x.numpy()})[0]
    assert (got * want).sum(-1).min() >= 0.9999 and np.abs(got - want).max() <= 1e-4
    tokens = open_clip.get_tokenizer("MobileCLIP2-S2")(list(QUERIES[:5]))
    with torch.no_grad():
        want = model.encode_text(tokens, normalize=True).numpy()
    got = run_onnx(built.path("pytorch_models/mobileclip2_s2_text_encoder.onnx"), {"text_tokens": tokens.numpy()})[0]
    assert (got * want).sum(-1).min() >= 0.9999 and np.abs(got - want).max() <= 1e-4
    rec = json.loads(built.path("pytorch_models/mobileclip2_s2_text_encoder.onnx.verification.json").read_text())
    sim = np.array(rec["verification"]["similarity"]["matrix"])
    assert sim.shape == (8, 8) and np.allclose(np.diag(sim), 1, atol=1e-4) and np.allclose(sim, sim.T, atol=1e-5)


def test_unreparameterized_export_is_caught(built, monkeypatch, tmp_path, yolo_env):
    import pipeline.families.mobileclip2 as C
    from pipeline.builders.encoder_onnx import export
    from pipeline.engine.context import StepContext

    with pytest.raises(RuntimeError, match="not reparameterized.*MobileOneBlock"):
        C.assert_reparameterized(untrained_s2())
    assert C.assert_reparameterized(C.reparameterized(untrained_s2())) < 1750
    monkeypatch.setattr(C.MobileClip2, "reparameterized", staticmethod(lambda model: model))  # an exporter that forgets
    out = tmp_path / "x.onnx"
    ctx = StepContext(task="test", inputs={"clip_record": built.path(f"pytorch_models/{S2}.clip.json")},
                      outputs={"onnx": out}, tmp={out: out}, key=f"encoders.{S2}",
                      params={"opset": 17, "role": "image", "clip_model": "MobileCLIP2-S2",
                              "weights_source": "untrained", "weights": None, "download_dir": None,
                              "trust_checkpoint": False}, uses={"family": "pipeline.families.mobileclip2:FAMILY"})
    with pytest.raises(RuntimeError, match="not reparameterized"):
        export(ctx)
    assert not out.exists()


def test_batch_size_and_precision_rebuild_only_what_depends_on_them(copy):
    copy.write("manifests/m.yaml", MANIFEST.replace("text_max_batch: 8", "text_max_batch: 32"))
    run = copy.doit("manifest=manifests/m.yaml")
    text_folder = {f"{step}:{S2}_text_encoder_onnx" for step in ("config", "probe", "publish")}
    assert run.executed == text_folder, run.text
    copy.write("manifests/m.yaml", MANIFEST.replace("weights: untrained,", "weights: untrained, precision: fp32,"))
    run = copy.doit("manifest=manifests/m.yaml")
    assert run.executed == text_folder | {f"encoder_trt_onnx:{S2}_image_encoder",
                                          f"encoder_trt_onnx:{S2}_text_encoder"}, run.text


def test_s2_and_b_coexist(copy):
    copy.write("manifests/m.yaml", MANIFEST + "  mobileclip2_b: {model: MobileCLIP2-B, weights: untrained, "
                                              "formats: [onnx]}\n")
    run = copy.doit("manifest=manifests/m.yaml", "onnx:mobileclip2_b_image_encoder")
    assert run.rc == 0, run.text
    assert io(copy.path("models/mobileclip2_b_image_encoder_onnx/1/model.onnx"))[0] == [
        ("images", "FLOAT", ["batch", 3, 224, 224])]  # B is a 224 px model
    assert copy.doit("manifest=manifests/m.yaml", f"onnx:{S2}_image_encoder").executed == set()


def test_tokenizer_and_embedding_example_work_offline(built, tmp_path):
    from PIL import Image

    img = tmp_path / "red.png"
    Image.new("RGB", (320, 200), (200, 30, 30)).save(img)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    p = subprocess.run([sys.executable, str(REPO / "examples/embed.py"), str(built.path(f"models/{S2}_image_encoder_onnx")),
                        str(built.path(f"models/{S2}_text_encoder_onnx")), str(img), "a photo of a dog",
                        "red car on highway"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 2 and all("p=" in ln for ln in lines)


@pytest.mark.parametrize("text,must", [
    ("encoders:\n  x: {model: MobileCLIP2-XL}\n", ["encoders.x.model", "'MobileCLIP2-XL'"]),
    ("encoders:\n  x: {weights: nowhere/ckpt.safetensors}\n", ["encoders.x.weights", "does not exist"]),
    ("encoders:\n  x: {formats: [onnx_end2end]}\n", ["encoders.x.formats"]),
    ("encoders:\n  x: {text_max_batch: 0}\n", ["encoders.x.text_max_batch"]),
], ids=["model", "weights-file", "format", "batch"])
def test_bad_encoder_entries(project, text, must):
    from test_bad_input import check_paragraph

    project.write("manifests/bad.yaml", text)
    run = project.doit("manifest=manifests/bad.yaml")
    assert run.rc != 0
    check_paragraph(run.text, must)
    assert project.generated() == []
