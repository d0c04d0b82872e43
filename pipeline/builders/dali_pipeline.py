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


def ultralytics_letterbox(bgr, imgsz: int):
    """The reference: what Ultralytics' predictor feeds the model (RGB, CHW, [0, 1])."""
    import numpy as np
    from ultralytics.data.augment import LetterBox

    img = LetterBox((imgsz, imgsz), auto=False)(image=bgr)
    return np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)).astype(np.float32) / 255.0


def run_twin(pipe, encoded: list):
    """Run a built CPU twin on a list of encoded images (padded to its batch size by repetition)."""
    import numpy as np

    n, batch = len(encoded), pipe.max_batch_size
    out_images, out_info = [], []
    for i in range(0, n, batch):
        chunk = list(encoded[i:i + batch])
        chunk += [chunk[-1]] * (batch - len(chunk))
        pipe.feed_input(D.INPUT, chunk)
        images, info = pipe.run()
        k = min(batch, n - i)
        out_images += [np.array(images[j]) for j in range(k)]
        out_info += [np.array(info[j]) for j in range(k)]
    return out_images, out_info


def _import_dali():
    try:
        import nvidia.dali
    except ImportError as e:
        raise UserError(f"NVIDIA DALI cannot be imported here ({e})",
                        fix="pip install -e '.[dali]' (NVIDIA DALI for CUDA 13; CPU-only machines can build the "
                            "pipeline), or drop dali_end2end/dali_trt_end2end from formats") from None
    return nvidia.dali


def serialize(ctx: StepContext) -> dict:
    """Step builder: serialize the GPU pipeline; check the definition's CPU twin against Ultralytics."""
    import numpy as np

    dali = _import_dali()
    Pipeline = dali.Pipeline

    imgsz, dtype, max_batch = ctx.param("imgsz"), ctx.param("dtype"), ctx.param("max_batch")
    served = D.detection_pipeline(imgsz, dtype, max_batch, "gpu").serialize()
    ctx.output().write_bytes(served)
    if D.detection_pipeline(imgsz, dtype, max_batch, "gpu").serialize() != served:
        raise RuntimeError("serializing the DALI pipeline twice gave different bytes")
    twin_bytes = D.detection_pipeline(imgsz, dtype, min(max_batch, 2), "cpu").serialize()
    twin = Pipeline.deserialize(serialized_pipeline=twin_bytes, device_id=None, prefetch_queue_depth=1,
                                exec_async=False, exec_pipelined=False)
    samples = sample_images()
    images, info = run_twin(twin, [enc for enc, _ in samples])
    diffs = []
    for (enc, bgr), got, lb in zip(samples, images, info):
        want = ultralytics_letterbox(bgr, imgsz)
        if got.shape != want.shape or str(got.dtype) != {"FP16": "float16", "FP32": "float32"}[dtype]:
            raise RuntimeError(f"the DALI twin gives {got.dtype} {got.shape}, expected {dtype} {want.shape}")
        d = np.abs(got.astype(np.float32) - want) * 255.0
        diffs.append({"shape": list(bgr.shape[:2]), "mean_grey_levels": float(d.mean()),
                      "max_grey_levels": float(d.max()), "letterbox": [float(v) for v in lb]})
        if d.mean() > 1.0:
            raise RuntimeError(f"the DALI letterbox differs from Ultralytics' by {d.mean():.2f} grey levels "
                               f"(mean) on a {bgr.shape[1]}x{bgr.shape[0]} image")
    return {"dali": dali.__version__, "input": D.INPUT, "outputs": list(D.OUTPUTS),
            "images": {"dtype": dtype, "dims": [3, imgsz, imgsz]}, "letterbox_fields": list(D.LETTERBOX_FIELDS),
            "compared_with": "Ultralytics LetterBox(auto=False) + /255, CPU twin (DALI CPU decoder)",
            "cases": diffs, "served_device": "gpu (nvJPEG mixed decoder, GPU resize)",
            "served_deserialized": False,
            "note": "the served GPU pipeline deserializes only where a GPU is (DALI builds on deserialize)"}
