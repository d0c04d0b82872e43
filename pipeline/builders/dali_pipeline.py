"""Track D preprocessing model: `1/model.dali`, the serialized DALI pipeline Triton's DALI backend runs.

Serialized (not an autoserialized `dali.py`): the file is the exact graph this step checked, and Triton
loads it without running Python. A serialized pipeline loads in the DALI that wrote it and newer ones
(DALI keeps old serialized pipelines loadable; an older DALI may lack an operator's schema), so the
DALI version is part of the recipe and README says which versions were tried.

The GPU pipeline (nvJPEG decoding, GPU resize) serializes without a GPU; building it needs one. What
is checked here: the serialized bytes are exactly the definition's (tooling/dali_preprocess.py), and its
CPU twin — the same definition on DALI's CPU operators — letterboxes a PNG and a JPEG like Ultralytics'
`LetterBox` + /255 (within 1 grey level mean) and deserializes and runs from its own serialization.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.errors import UserError
from ..tooling import dali_preprocess as D

if TYPE_CHECKING:
    from ..engine.context import StepContext


def sample_images():
    """A smooth landscape PNG and an odd-sized portrait JPEG (encoded bytes, and the BGR pixels OpenCV
    decodes)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    out = []
    for (h, w), ext in (((375, 500), ".png"), ((333, 251), ".jpg")):
        bgr = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 4)
        ok, enc = cv2.imencode(ext, bgr)
        out.append((enc.ravel(), cv2.imdecode(enc, cv2.IMREAD_COLOR)))
    return out


def _import_dali():
    try:
        import nvidia.dali
    except ImportError as e:
        raise UserError(f"NVIDIA DALI cannot be imported here ({e})",
                        fix="pip install -e '.[dali]' (NVIDIA DALI for CUDA 13; CPU-only machines can build the "
                            "pipeline), or drop dali_end2end/dali_trt_end2end from formats") from None
    return nvidia.dali


def _knobs(ctx: StepContext) -> dict:
    """The manifest's `dali:` settings baked into the pipeline (the instance count is the config's)."""
    return {"num_threads": ctx.param("num_threads"), "hw_decoder_load": ctx.param("hw_decoder_load")}


def serialize(ctx: StepContext) -> dict:
    """Step builder (Track D): the detector's preprocessing."""
    return _serialize(ctx, D.definition(ctx.param("imgsz"), ctx.param("dtype"), ctx.param("max_batch"), **_knobs(ctx)))


def serialize_search(ctx: StepContext) -> dict:
    """Step builder (Track E): the detector's preprocessing and, from the same decoded image, the
    MobileCLIP2 image encoder's (size, mean and std from the encoder's weights record)."""
    import json

    pre = json.loads(ctx.input("clip_record").read_text())["verification"]["preprocessing"]
    if pre["resize_mode"] != "shortest" or pre["interpolation"] != "bilinear" or pre["image_size"][0] != pre["image_size"][1]:
        raise RuntimeError(f"no DALI twin for open_clip preprocessing {pre}")
    clip = {"size": pre["image_size"][0], "dtype": ctx.param("clip_dtype"), "mean": pre["mean"], "std": pre["std"]}
    return _serialize(ctx, D.definition(ctx.param("imgsz"), ctx.param("dtype"), ctx.param("max_batch"), clip,
                                        **_knobs(ctx)))


def _serialize(ctx: StepContext, d: dict) -> dict:
    """Serialize the GPU pipeline; check the definition's CPU twin against Ultralytics."""
    import numpy as np

    dali = _import_dali()
    served = D.pipeline(d, "gpu").serialize()
    ctx.output().write_bytes(served)
    if D.pipeline(d, "gpu").serialize() != served:
        raise RuntimeError("serializing the DALI pipeline twice gave different bytes")
    twin_bytes = D.pipeline(d, "cpu", max_batch=min(d["max_batch"], 2)).serialize()
    twin = dali.Pipeline.deserialize(serialized_pipeline=twin_bytes, device_id=None, prefetch_queue_depth=1,
                                     exec_async=False, exec_pipelined=False)
    samples = sample_images()
    results = D.run_twin(twin, [enc for enc, _ in samples])
    io = D.outputs(d)
    diffs = []
    for k, (enc, bgr) in enumerate(samples):
        got, size = results[0][k], results[1][k]
        want = ctx.use("family").letterbox(bgr, d["imgsz"])
        for (name, dtype, dims), value in zip(io, (r[k] for r in results)):
            if list(value.shape) != dims or str(value.dtype) != {"FP16": "float16", "FP32": "float32"}[dtype]:
                raise RuntimeError(f"the DALI twin's {name} is {value.dtype} {list(value.shape)}, expected {dtype} {dims}")
        diff = np.abs(got.astype(np.float32) - want) * 255.0
        diffs.append({"shape": list(bgr.shape[:2]), "mean_grey_levels": float(diff.mean()),
                      "max_grey_levels": float(diff.max())})
        if list(size) != list(bgr.shape[:2]):
            raise RuntimeError(f"the DALI twin's image_size is {list(size)} for a {bgr.shape[1]}x{bgr.shape[0]} image")
        if diff.mean() > 1.0:
            raise RuntimeError(f"the DALI letterbox differs from Ultralytics' by {diff.mean():.2f} grey levels "
                               f"(mean) on a {bgr.shape[1]}x{bgr.shape[0]} image")
    return {"dali": dali.__version__, "definition": d, "input": D.INPUT, "outputs": [list(o) for o in io],
            "image_size_fields": list(D.IMAGE_SIZE_FIELDS),
            "compared_with": "Ultralytics LetterBox(auto=False) + /255, CPU twin (DALI CPU decoder)",
            "cases": diffs, "served_device": "gpu (nvJPEG mixed decoder, GPU resize)", "served_deserialized": False,
            "note": "the served GPU pipeline deserializes only where a GPU is (DALI builds on deserialize)"}
