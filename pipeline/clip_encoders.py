"""MobileCLIP2 image and text encoders (Track E): weights, ONNX export, TensorRT-ready graphs, client info.

* Weights through open_clip's own code: a pretrained tag (downloaded by open_clip into
  pytorch_models/<name>/), a local checkpoint file, or untrained (seeded random weights, smoke tests).
* Exported after `timm.utils.model.reparameterize_model` (MobileOne/RepMixer train-time branches merged):
  exporting the train-time graph would be slower and, the seed warns, wrong for deployment; the export
  refuses a model that reparameterization would still change.
* Image encoder: `images [B,3,S,S]` FP32 in [0,1] -> `image_embeddings [B,D]` L2-normalised. The pretrained
  config's mean/std (0 and 1 for MobileCLIP2-S2/B: plain pixels/255, like YOLO) is baked into the graph
  when it is not the identity, so clients always send [0,1].
* Text encoder: `text_tokens [B,77]` INT64 (open_clip's tokenizer output) -> `text_embeddings [B,D]`
  L2-normalised. For TensorRT the token input is INT32 (a Cast to INT64 inside the graph): every
  TensorRT 10/11 takes INT32 network inputs, token ids (< 49408) fit, and no INT64 I/O is needed.
* Checked against the un-reparameterized PyTorch model at batch 1 and 8: cosine >= 0.9999 and
  max |Δ| <= 1e-4; the text check embeds real queries and requires a sane similarity matrix.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from .errors import UserError
from .runner import StepContext, sha256

COS_MIN, ABS_MAX = 0.9999, 1e-4
QUERIES = ("a photo of a dog", "red car on highway", "a photo of a cat", "a person riding a bicycle",
           "a city street at night", "a bowl of fruit on a table", "an airplane in the sky", "a boat on the water")
PRETRAINED_TAG = "dfndr2b"  # the tag whose preprocessing MobileCLIP2 was trained with


def weights_dir(rec: dict) -> Path:
    return Path("pytorch_models") / rec["encoder"]


def create(rec: dict):
    """The open_clip model of an encoder record, in eval mode (not reparameterized)."""
    import open_clip
    import torch

    name, source = rec["clip_model"], rec["weights_source"]
    try:
        if source == "untrained":
            torch.manual_seed(0)
            logging.getLogger().disabled = True  # open_clip warns "No pretrained weights loaded": that's the point
            try:
                model = open_clip.create_model(name, pretrained=None)
            finally:
                logging.getLogger().disabled = False
        elif source == "file":
            model = open_clip.create_model(name, pretrained=rec["weights"])
        else:
            model = open_clip.create_model(name, pretrained=rec["weights"], cache_dir=str(weights_dir(rec)),
                                           require_pretrained=True)
    except Exception as e:  # network errors, missing files, wrong checkpoints: all the user's to fix
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        what = f"'{rec['weights']}'" if source == "file" else f"pretrained tag '{rec['weights']}'"
        raise UserError(f"could not load {name} weights from {what} ({type(e).__name__}: {first})",
                        key=f"{rec['key']}.weights",
                        fix="on a connected machine open_clip downloads the tag; offline, set weights to a local "
                            "open_clip checkpoint (.safetensors/.bin) of this model, or to 'untrained' for a smoke "
                            "build") from None
    return model.eval()


def preprocessing(rec: dict, model) -> dict:
    from open_clip import get_pretrained_cfg

    cfg = get_pretrained_cfg(rec["clip_model"], PRETRAINED_TAG)  # with pretrained=None open_clip falls back
    size = model.visual.image_size                               # to OpenAI's mean/std: not MobileCLIP2's
    size = list(size) if isinstance(size, (tuple, list)) else [size, size]
    return {"image_size": size, "mean": list(cfg.get("mean", (0.0, 0.0, 0.0))),
            "std": list(cfg.get("std", (1.0, 1.0, 1.0))), "interpolation": cfg.get("interpolation", "bilinear"),
            "resize_mode": cfg.get("resize_mode", "shortest"), "input_range": "[0, 1] (RGB pixels / 255)"}


def weights(ctx: StepContext) -> dict:
    """Step builder: fetch/check the weights once; record what clients and later steps need."""
    import torch

    rec = ctx.model
    model = create(rec)
    files = []
    if rec["weights_source"] == "file":
        files = [Path(rec["weights"])]
    elif rec["weights_source"] == "pretrained":
        files = sorted(p for p in weights_dir(rec).rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin"))
    with torch.no_grad():
        dim = int(model.encode_text(torch.zeros(1, model.context_length, dtype=torch.long)).shape[-1])
    bias = getattr(model, "logit_bias", None)
    return {"model": rec["clip_model"], "weights_source": rec["weights_source"], "weights": rec["weights"],
            "files": {str(p): sha256(p) for p in files}, "untrained": rec["untrained"],
            "logit_scale": float(model.logit_scale.detach().exp()),
            "logit_bias": None if bias is None else float(bias.detach()),
            "embed_dim": dim, "context_length": int(model.context_length), "vocab_size": int(model.vocab_size),
            "tokenizer": f"open_clip.get_tokenizer('{rec['clip_model']}') (SimpleTokenizer, ships with open_clip)",
            "preprocessing": preprocessing(rec, model)}


def reparameterized(model):
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model)


def assert_reparameterized(model) -> int:
    """Refuse a model with train-time branches left (a reparameterizable block without its fused conv).

    timm's reparameterizable blocks (MobileOneBlock, RepMixer, ReparamLargeKernelConv, RepCPE) keep
    `reparam_conv = None` until `reparameterize()` fuses their branches into it. (Reparameterizing twice
    is not an option for the check: timm's RepMixer fails on a second pass.)
    """
    pending = sorted({type(m).__name__ for m in model.modules()
                      if hasattr(m, "reparameterize") and getattr(m, "reparam_conv", object()) is None})
    if pending:
        raise RuntimeError(f"model is not reparameterized ({', '.join(pending)} still have train-time branches); "
                           "exporting it would serve the train-time graph")
    return sum(1 for _ in model.modules())


def wrappers():
    import torch

    class ImageEncoder(torch.nn.Module):
        def __init__(self, model, mean, std):
            super().__init__()
            self.model = model
            self.normalize = any(m != 0 for m in mean) or any(s != 1 for s in std)
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

        def forward(self, images):
            x = (images - self.mean) / self.std if self.normalize else images
            return self.model.encode_image(x, normalize=True)

    class TextEncoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, text_tokens):
            return self.model.encode_text(text_tokens, normalize=True)

    return ImageEncoder, TextEncoder


def encoder_io(rec: dict, info: dict):
    """(module wrapper factory, input name, output name, example inputs for batch 1 and 8)."""
    import open_clip
    import torch

    ImageEncoder, TextEncoder = wrappers()
    if rec["role"] == "image":
        s = info["preprocessing"]["image_size"]
        g = torch.Generator().manual_seed(0)
        batches = [torch.rand(b, 3, s[0], s[1], generator=g) for b in (1, 8)]
        return (lambda m: ImageEncoder(m, info["preprocessing"]["mean"], info["preprocessing"]["std"]),
                "images", "image_embeddings", batches)
    tok = open_clip.get_tokenizer(rec["clip_model"])
    tokens = tok(list(QUERIES))
    return TextEncoder, "text_tokens", "text_embeddings", [tokens[:1], tokens]


def export(ctx: StepContext) -> dict:
    """Step builder: reparameterize, export (opset 17, dynamic batch), check against PyTorch."""
    import numpy as np
    import torch

    from .yolo_onnx import run_onnx

    rec = ctx.model
    info = json.loads(ctx.inputs[0].read_text())["verification"]
    original = create(rec)
    deploy = reparameterized(original)
    modules = assert_reparameterized(deploy)
    wrap, in_name, out_name, batches = encoder_io(rec, info)
    reference_model, export_model = wrap(original).eval(), wrap(deploy).eval()
    opset = ctx.settings["opset"]
    # nn.MultiheadAttention's inference fast path (aten::_native_multi_head_attention) has no ONNX form.
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad():
        torch.onnx.export(export_model, (batches[0],), str(ctx.out()), opset_version=opset, dynamo=False,
                          input_names=[in_name], output_names=[out_name],
                          dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}})
    import onnx
    graph = onnx.load(str(ctx.out()))
    written = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    if written != opset:
        raise RuntimeError(f"asked for opset {opset}, torch wrote {written}")
    dim = graph.graph.output[0].type.tensor_type.shape.dim[1]  # torch leaves it symbolic: fix it
    dim.Clear()
    dim.dim_value = int(info["embed_dim"])
    graph.metadata_props.add(key="untrained", value=str(rec["untrained"]).lower())
    graph.metadata_props.add(key="model", value=rec["clip_model"])
    onnx.save(graph, str(ctx.out()))
    onnx.checker.check_model(str(ctx.out()), full_check=True)

    checks = []
    for x in batches:
        with torch.no_grad():
            want = reference_model(x).numpy()
        got = run_onnx(ctx.out(), {in_name: x.numpy()})[0]
        cos = float((got * want).sum(-1).min() / 1.0)  # both L2-normalised
        checks.append({"batch": len(x), "min_cosine": cos, "max_abs": float(np.abs(got - want).max())})
        if cos < COS_MIN or checks[-1]["max_abs"] > ABS_MAX:
            raise UserError(f"the exported {rec['role']} encoder disagrees with PyTorch at batch {len(x)} "
                            f"(cosine {cos:.6f}, max |diff| {checks[-1]['max_abs']:.2e})", key=rec["key"],
                            fix="report this with the model and weights")
    result = {"compared_with": "PyTorch, un-reparameterized model, FP32 CPU", "runtime": "onnxruntime CPU",
              "modules_after_reparameterization": modules, "checks": checks, "cosine_min": COS_MIN,
              "abs_max": ABS_MAX, "opset": written}
    if rec["role"] == "text":
        result["queries"] = list(QUERIES)
        result["similarity"] = similarity_check(got, want)
    result["passed"] = True
    return result


def similarity_check(got, want) -> dict:
    """Query x query cosine similarities from the ONNX embeddings: equal to PyTorch's, and sane."""
    import numpy as np

    sim, ref = got @ got.T, want @ want.T
    problems = []
    if np.abs(np.diag(sim) - 1).max() > 1e-4:
        problems.append("embeddings are not unit length")
    if np.abs(sim - sim.T).max() > 1e-5:
        problems.append("similarity matrix is not symmetric")
    if np.abs(sim).max() > 1 + 1e-4:
        problems.append("similarities outside [-1, 1]")
    off = sim[~np.eye(len(sim), dtype=bool)]
    if (off > 1 - 1e-6).any():
        problems.append("two different queries have identical embeddings")
    if np.abs(sim - ref).max() > ABS_MAX:
        problems.append("similarities differ from PyTorch's")
    if problems:
        raise RuntimeError("text encoder similarity check failed: " + "; ".join(problems))
    return {"matrix": np.round(sim, 5).tolist(), "max_abs_vs_pytorch": float(np.abs(sim - ref).max())}


def trt_graph(ctx: StepContext) -> dict:
    """Step builder: the graph TensorRT compiles: FP16 weights/compute when precision is fp16 (FP32 I/O),
    INT32 token input for the text encoder."""
    import numpy as np
    import onnx
    import onnx_graphsurgeon as gs

    from .fp16_onnx import convert_fp16, export_like
    from .yolo_onnx import run_onnx

    rec = ctx.model
    model = onnx.load(str(ctx.inputs[0]))
    if rec["role"] == "text":
        graph = gs.import_onnx(model)
        tokens = graph.inputs[0]
        tokens32 = gs.Variable("text_tokens", np.int32, tokens.shape)
        tokens.name = "text_tokens_int64"
        graph.layer(op="Cast", name="tokens_to_int64", inputs=[tokens32], outputs=[tokens],
                    attrs={"to": onnx.TensorProto.INT64})
        graph.inputs = [tokens32]
        model = export_like(graph.toposort(), model)
    if ctx.settings["precision"] == "fp16":
        model = convert_fp16(model, keep_io_types=True)
    onnx.save(model, str(ctx.out()))
    onnx.checker.check_model(str(ctx.out()), full_check=True)
    info = json.loads(Path(ctx.inputs[1]).read_text())["verification"]
    _, in_name, _, batches = encoder_io(rec, info)
    x = batches[-1].numpy()
    want = run_onnx(ctx.inputs[0], {in_name: x})[0]
    got = run_onnx(ctx.out(), {in_name: x.astype(np.int32) if rec["role"] == "text" else x},
                   basic_optimizations=True)[0]
    cos = float((got * want).sum(-1).min())
    if cos < 0.999:
        raise UserError(f"the {ctx.settings['precision']} {rec['role']} graph for TensorRT drifts from FP32 "
                        f"(min cosine {cos:.5f} < 0.999)", key=rec["key"], fix="set precision: fp32 for this encoder")
    return {"precision": ctx.settings["precision"], "token_input": "INT32" if rec["role"] == "text" else None,
            "compared_with": "the FP32 ONNX (onnxruntime CPU; FP16 ops it lacks kernels for are upcast)",
            "batch": len(x), "min_cosine": cos, "max_abs": float(np.abs(got - want).max())}


def publish(ctx: StepContext) -> dict:
    """Step builder: the ONNX in the Triton repository, a hard link to pytorch_models/ (a copy across devices)."""
    try:
        os.link(ctx.inputs[0], ctx.out())
        how = "hard link"
    except OSError:
        shutil.copyfile(ctx.inputs[0], ctx.out())
        how = "copy"
    return {"source": str(ctx.inputs[0]), "how": how}


def write_info(ctx: StepContext) -> dict:
    """Step builder: encoder.json beside config.pbtxt — what a client needs to use the encoder."""
    rec = ctx.model
    info = json.loads(ctx.inputs[0].read_text())["verification"]
    out = {"model": info["model"], "role": rec["role"], "untrained": info["untrained"],
           "embedding": {"dim": info["embed_dim"], "l2_normalized": True},
           "logit_scale": info["logit_scale"], "logit_bias": info["logit_bias"]}
    if rec["role"] == "image":
        out["preprocessing"] = info["preprocessing"]
    else:
        out["tokenizer"] = {"how": info["tokenizer"], "context_length": info["context_length"],
                            "vocab_size": info["vocab_size"]}
    ctx.out().write_text(json.dumps(out, indent=2) + "\n")
    return {}
