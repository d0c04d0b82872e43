"""The MobileCLIP2 family (visual search): open_clip models, their two encoder graphs, how they are checked.

* Weights through open_clip's own code: a pretrained tag (downloaded by open_clip), a local checkpoint
  file, or untrained (seeded random weights, smoke tests).
* Exported after `timm.utils.model.reparameterize_model` (MobileOne/RepMixer train-time branches merged):
  the documented export reparameterizes first, and a train-time graph would be slower; the export refuses
  a model that reparameterization would still change.
* Image encoder: `images [B,3,S,S]` FP32 in [0,1] -> `image_embeddings [B,D]` L2-normalised. The pretrained
  config's mean/std (0 and 1 for MobileCLIP2-S2/B: plain pixels/255, like YOLO) is baked into the graph
  when it is not the identity, so clients always send [0,1].
* Text encoder: `text_tokens [B,77]` INT64 (open_clip's tokenizer output) -> `text_embeddings [B,D]`
  L2-normalised.
* Checked against the un-reparameterized PyTorch model at batch 1 and 8: cosine >= COS_MIN and
  max |Δ| <= ABS_MAX; the text check also embeds real queries and requires a sane similarity matrix.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..engine.errors import UserError
from ..tooling import safe_checkpoint
from ..tooling.onnx_tools import GraphSpec
from .base import EncoderFamily

COS_MIN, ABS_MAX = 0.9999, 1e-4
QUERIES = ("a photo of a dog", "red car on highway", "a photo of a cat", "a person riding a bicycle",
           "a city street at night", "a bowl of fruit on a table", "an airplane in the sky", "a boat on the water")
PRETRAINED_TAG = "dfndr2b"  # the tag whose preprocessing MobileCLIP2 was trained with


def compare_embeddings(got, want) -> dict:
    """Both L2-normalised: the row-wise dot product is the cosine."""
    import numpy as np

    cos = float((got * want).sum(-1).min())
    diff = float(np.abs(got - want).max())
    return {"min_cosine": cos, "max_abs": diff, "cosine_min": COS_MIN, "abs_max": ABS_MAX,
            "passed": cos >= COS_MIN and diff <= ABS_MAX}


GRAPHS = {"image": GraphSpec(inputs=("images",), outputs=("image_embeddings",), compare=compare_embeddings),
          "text": GraphSpec(inputs=("text_tokens",), outputs=("text_embeddings",), compare=compare_embeddings)}


FILE_FIX = ("on a connected machine open_clip downloads the tag; offline, set weights to a local open_clip checkpoint "
            "(.safetensors/.bin) of this model, or to 'untrained' for a smoke build")


def create(clip_model: str, source: str, weights: str | None, download_dir: str | None, key: str,
           trust: bool = False):
    """The open_clip model, in eval mode (not reparameterized). source: 'untrained', 'file' (weights is
    the checkpoint's path, read by torch's weights-only unpickler unless trusted) or 'pretrained' (weights
    is an open_clip tag, downloaded into download_dir)."""
    import pickle

    import open_clip
    import torch

    try:
        if source == "untrained":
            torch.manual_seed(0)
            logging.getLogger().disabled = True  # open_clip warns "No pretrained weights loaded": that's the point
            try:
                model = open_clip.create_model(clip_model, pretrained=None)
            finally:
                logging.getLogger().disabled = False
        elif source == "file":
            safe_checkpoint.check_file(Path(weights), f"{key}.weights", "open_clip checkpoint", FILE_FIX)
            model = open_clip.create_model(clip_model, pretrained=str(weights), weights_only=not trust)
        else:
            model = open_clip.create_model(clip_model, pretrained=weights, cache_dir=download_dir,
                                           require_pretrained=True)
    except UserError:
        raise
    except pickle.UnpicklingError as e:  # open_clip loads files weights-only: a global outside torch's list
        raise safe_checkpoint.refusal(Path(weights), e, key=f"{key}.weights", what="open_clip checkpoint",
                                      fix=FILE_FIX) from None
    except Exception as e:  # network errors, missing files, wrong checkpoints: all the user's to fix
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        what = f"'{weights}'" if source == "file" else f"pretrained tag '{weights}'"
        raise UserError(f"could not load {clip_model} weights from {what} ({type(e).__name__}: {first})",
                        key=f"{key}.weights",
                        fix=FILE_FIX) from None
    return model.eval()


def preprocessing(clip_model: str, model) -> dict:
    from open_clip import get_pretrained_cfg

    cfg = get_pretrained_cfg(clip_model, PRETRAINED_TAG)  # with pretrained=None open_clip falls back
    size = model.visual.image_size                               # to OpenAI's mean/std: not MobileCLIP2's
    size = list(size) if isinstance(size, (tuple, list)) else [size, size]
    return {"image_size": size, "mean": list(cfg.get("mean", (0.0, 0.0, 0.0))),
            "std": list(cfg.get("std", (1.0, 1.0, 1.0))), "interpolation": cfg.get("interpolation", "bilinear"),
            "resize_mode": cfg.get("resize_mode", "shortest"), "input_range": "[0, 1] (RGB pixels / 255)"}


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


def encoder_io(role: str, clip_model: str, info: dict):
    """(module wrapper factory, example inputs for batch 1 and 8) of one encoder; `info` is the weights
    record (clip_weights builder)."""
    import open_clip
    import torch

    ImageEncoder, TextEncoder = wrappers()
    if role == "image":
        s = info["preprocessing"]["image_size"]
        g = torch.Generator().manual_seed(0)
        batches = [torch.rand(b, 3, s[0], s[1], generator=g) for b in (1, 8)]
        return lambda m: ImageEncoder(m, info["preprocessing"]["mean"], info["preprocessing"]["std"]), batches
    tokens = open_clip.get_tokenizer(clip_model)(list(QUERIES))
    return TextEncoder, [tokens[:1], tokens]


def image_inputs(bgr_images, info: dict):
    """The image encoder's input for BGR pictures: open_clip's own eval transform of the pretrained tag (resize,
    centre crop) without its normalisation, which the served graph does itself: [N, 3, S, S] in [0, 1], FP32."""
    import numpy as np
    import open_clip
    from PIL import Image

    pre = info["preprocessing"]
    transform = open_clip.image_transform(tuple(pre["image_size"]), is_train=False, mean=(0.0, 0.0, 0.0),
                                          std=(1.0, 1.0, 1.0), resize_mode=pre["resize_mode"],
                                          interpolation=pre["interpolation"])
    return np.stack([transform(Image.fromarray(img[..., ::-1].copy())).numpy() for img in bgr_images]).astype(np.float32)


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


class MobileClip2(EncoderFamily):
    """The declaration; the module's functions do the work (a builder is handed this object: its methods are
    the module's functions)."""
    name = "mobileclip2"
    title = "MobileCLIP2"
    models = ("MobileCLIP2-S2", "MobileCLIP2-B")
    roles = ("image", "text")
    graphs = GRAPHS
    queries = QUERIES

    create = staticmethod(create)
    preprocessing = staticmethod(preprocessing)
    reparameterized = staticmethod(reparameterized)
    assert_reparameterized = staticmethod(assert_reparameterized)
    encoder_io = staticmethod(encoder_io)
    image_inputs = staticmethod(image_inputs)
    similarity_check = staticmethod(similarity_check)


FAMILY = MobileClip2()
