"""Embed an image and text queries with the exported MobileCLIP2 ONNX encoders, and rank the queries.

    python examples/embed.py models/mobileclip2_s2_image_encoder_onnx models/mobileclip2_s2_text_encoder_onnx \
        photo.jpg "a photo of a dog" "red car on highway"

Reads each folder's encoder.json for the preprocessing and the tokenizer; needs numpy, pillow,
onnxruntime and open_clip_torch (for its tokenizer, which works offline).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def load_image(path: str, info: dict) -> np.ndarray:
    """RGB, resized so the shortest side is the model's size, centre-cropped, pixels / 255, NCHW."""
    from PIL import Image

    h, w = info["preprocessing"]["image_size"]
    img = Image.open(path).convert("RGB")
    scale = max(h / img.height, w / img.width)
    resample = Image.BILINEAR if info["preprocessing"]["interpolation"] == "bilinear" else Image.BICUBIC
    img = img.resize((round(img.width * scale), round(img.height * scale)), resample)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    img = img.crop((left, top, left + w, top + h))
    return (np.asarray(img, np.float32) / 255.0).transpose(2, 0, 1)[None]


def main(image_dir: str, text_dir: str, image: str, *queries: str) -> None:
    import onnxruntime as ort
    import open_clip

    image_info = json.loads((Path(image_dir) / "encoder.json").read_text())
    text_info = json.loads((Path(text_dir) / "encoder.json").read_text())
    img_sess = ort.InferenceSession(str(Path(image_dir) / "1/model.onnx"), providers=["CPUExecutionProvider"])
    txt_sess = ort.InferenceSession(str(Path(text_dir) / "1/model.onnx"), providers=["CPUExecutionProvider"])

    image_emb = img_sess.run(None, {"images": load_image(image, image_info)})[0]          # [1, 512], unit length
    tokens = open_clip.get_tokenizer(text_info["model"])(list(queries)).numpy()            # [Q, 77] int64
    text_emb = txt_sess.run(None, {"text_tokens": tokens})[0]                              # [Q, 512], unit length
    logits = text_info["logit_scale"] * image_emb @ text_emb.T                              # cosine * scale
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    for q, cos, p in sorted(zip(queries, (image_emb @ text_emb.T)[0], probs[0]), key=lambda t: -t[1]):
        print(f"{cos:+.4f}  p={p:.3f}  {q}")


if __name__ == "__main__":
    main(*sys.argv[1:])
