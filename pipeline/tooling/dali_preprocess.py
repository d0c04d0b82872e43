"""Track D preprocessing as one DALI definition: the GPU pipeline Triton serves and its CPU twin.

Encoded images (JPEG, PNG, ...; one UINT8 byte array per image) are decoded (nvJPEG, `device="mixed"`,
on the GPU; DALI's CPU decoder in the twin), EXIF orientation applied by the decoder, and letterboxed
exactly as Ultralytics' `LetterBox(auto=False)` does for prediction:
* r = min(S/h, S/w) (upscaling allowed); new size (round(w r), round(h r)), at least 1 px, with Python's
  round (half to even), computed in float64 as Python does;
* linear resize without antialiasing (`fn.resize`'s default antialiasing differs from OpenCV's linear);
* centred padding of value 114: top = round(dh/2 - 0.1), left = round(dw/2 - 0.1) — `fn.slice` with a
  negative start and out-of-bounds padding (`fn.pad` pads only at the end);
* RGB, CHW, /255, in the dtype its consumer declares (FP16 for FP16 plans: Triton refuses an ensemble
  whose connected tensors differ in dtype).
A second output, `letterbox`, carries what maps boxes back to the original image, per image:
(gain_x, gain_y, pad_x, pad_y, width, height) — the values Ultralytics' `scale_boxes` computes.
With a MobileCLIP2 encoder beside the detector (Track E), the same decoded image also goes through the
encoder's own preprocessing (open_clip: resize of the shorter side with antialiasing, bilinear; centre
crop; mean/std from the encoder's record) into a third output, `clip_images`.

A pipeline is described by a small JSON-able definition (`definition(...)`): the builder serializes it,
and the Triton stand-in and the tests rebuild it from the record beside `model.dali`.

Imports only nvidia.dali (the Triton stand-in backend imports this module too).
"""
from __future__ import annotations

INPUT = "encoded_images"
OUTPUTS = ("images", "letterbox")
CLIP_OUTPUT = "clip_images"
LETTERBOX_FIELDS = ("gain_x", "gain_y", "pad_x", "pad_y", "width", "height")
PAD_VALUE = 114


def _round_half_even(x):
    """Python's round() on a DALI float64 node (dali.math has floor, not round)."""
    import nvidia.dali.math as dmath

    f = dmath.floor(x)
    d = x - f
    odd = (f - 2.0 * dmath.floor(f / 2.0)) == 1.0
    return f + (d > 0.5) + ((d == 0.5) & odd)


def letterbox(encoded, decoded, imgsz: int, dtype: str):
    """(images [3, S, S] in `dtype`, letterbox [6] FP32) from the encoded and the decoded images."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    shape = fn.cast(fn.peek_image_shape(encoded), dtype=types.FLOAT64)  # [H, W, C] of the oriented image
    h, w = shape[0], shape[1]
    r = dmath.min(imgsz / h, imgsz / w)
    nw = dmath.max(_round_half_even(w * r), 1.0)
    nh = dmath.max(_round_half_even(h * r), 1.0)
    # round(dw / 2 - 0.1): never a tie (dw / 2 is a whole or half number), so floor(x + 0.5) is exact
    left = dmath.floor((imgsz - nw) / 2.0 - 0.1 + 0.5)
    top = dmath.floor((imgsz - nh) / 2.0 - 0.1 + 0.5)
    resized = fn.resize(decoded, resize_x=fn.cast(nw, dtype=types.FLOAT), resize_y=fn.cast(nh, dtype=types.FLOAT),
                        antialias=False, interp_type=types.INTERP_LINEAR)
    start = fn.cast(fn.stack(-top, -left), dtype=types.INT32)
    size = fn.cast(fn.stack(top * 0.0 + imgsz, left * 0.0 + imgsz), dtype=types.INT32)
    padded = fn.slice(resized, start, size, axis_names="HW", out_of_bounds_policy="pad", fill_values=PAD_VALUE)
    images = fn.crop_mirror_normalize(padded, dtype=types.FLOAT16 if dtype == "FP16" else types.FLOAT,
                                      output_layout="CHW", mean=0.0, std=255.0)
    info = fn.cast(fn.stack(nw / w, nh / h, left, top, w, h), dtype=types.FLOAT)
    return images, info


def clip_branch(encoded, decoded, clip: dict):
    """open_clip's image preprocessing for MobileCLIP2 (torchvision on PIL): the shorter side resized to
    `size` and the longer to int(size * long / short) (bilinear, antialiased like PIL), a centre crop at
    round((side - size) / 2), (x/255 - mean) / std, CHW. Sizes and offsets in float64, as torchvision's."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    size = float(clip["size"])
    shape = fn.cast(fn.peek_image_shape(encoded), dtype=types.FLOAT64)
    h, w = shape[0], shape[1]
    short = dmath.min(h, w)
    nh = dmath.floor(size * h / short)  # the short side gives exactly size; the long one truncates
    nw = dmath.floor(size * w / short)
    resized = fn.resize(decoded, resize_x=fn.cast(nw, dtype=types.FLOAT), resize_y=fn.cast(nh, dtype=types.FLOAT),
                        interp_type=types.INTERP_LINEAR, antialias=True)
    top, left = _round_half_even((nh - size) / 2.0), _round_half_even((nw - size) / 2.0)
    start = fn.cast(fn.stack(top, left), dtype=types.INT32)
    extent = fn.cast(fn.stack(top * 0.0 + size, left * 0.0 + size), dtype=types.INT32)
    cropped = fn.slice(resized, start, extent, axis_names="HW")
    return fn.crop_mirror_normalize(cropped, dtype=types.FLOAT16 if clip["dtype"] == "FP16" else types.FLOAT,
                                    output_layout="CHW", mean=[255.0 * m for m in clip["mean"]],
                                    std=[255.0 * s for s in clip["std"]])


def definition(imgsz: int, dtype: str, max_batch: int, clip: dict | None = None) -> dict:
    """clip: None (Track D) or {"size", "dtype", "mean", "std"} of a MobileCLIP2 image encoder (Track E)."""
    return {"imgsz": imgsz, "dtype": dtype, "max_batch": max_batch, "clip": clip}


def outputs(d: dict) -> list[tuple[str, str, list[int]]]:
    """(name, Triton dtype, dims) of each output, in the pipeline's order (Triton matches by position)."""
    out = [(OUTPUTS[0], d["dtype"], [3, d["imgsz"], d["imgsz"]]), (OUTPUTS[1], "FP32", [len(LETTERBOX_FIELDS)])]
    if d["clip"]:
        out.append((CLIP_OUTPUT, d["clip"]["dtype"], [3, d["clip"]["size"], d["clip"]["size"]]))
    return out


def pipeline(d: dict, device: str, num_threads: int = 4, max_batch: int | None = None):
    """The pipeline of a definition; `device` "gpu" is what Triton serves, "cpu" its twin."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import Pipeline

    twin = device == "cpu"
    pipe = Pipeline(batch_size=max_batch or d["max_batch"], num_threads=num_threads, device_id=None,
                    prefetch_queue_depth=1 if twin else 2, exec_async=not twin, exec_pipelined=not twin)
    with _no_origin_trace(), pipe:
        encoded = fn.external_source(name=INPUT, dtype=types.UINT8, ndim=1, device="cpu")
        decoded = fn.decoders.image(encoded, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
        images, info = letterbox(encoded, decoded, d["imgsz"], d["dtype"])
        pipe.set_outputs(images, info, *([clip_branch(encoded, decoded, d["clip"])] if d["clip"] else []))
    return pipe


def detection_pipeline(imgsz: int, dtype: str, max_batch: int, device: str, num_threads: int = 4):
    """Track D's pipeline (no encoder branch)."""
    return pipeline(definition(imgsz, dtype, max_batch), device, num_threads)


class _no_origin_trace:
    """DALI records each operator's Python call stack — absolute file paths and source lines — into the
    serialized pipeline (for its error messages). That would make `model.dali` differ per checkout and
    carry the build machine's paths; off while the pipeline is defined (DALI's own switch, private in
    2.4: without it the file is still correct, only not reproducible)."""

    def __enter__(self):
        try:
            from nvidia.dali._utils import dali_trace
        except ImportError:
            self.trace = None
            return self
        self.trace, self.was = dali_trace, dali_trace.is_tracing_enabled()
        dali_trace.set_tracing(enabled=False)
        return self

    def __exit__(self, *exc):
        if self.trace is not None:
            self.trace.set_tracing(enabled=self.was)


def run_twin(pipe, encoded: list) -> list[list]:
    """Run a built CPU twin on a list of encoded images: one list of arrays per output."""
    import numpy as np

    n, batch = len(encoded), pipe.max_batch_size
    out: list[list] = []
    for i in range(0, n, batch):
        chunk = list(encoded[i:i + batch])
        pipe.feed_input(INPUT, chunk)
        results = pipe.run()
        out = out or [[] for _ in results]
        for k, r in enumerate(results):
            out[k] += [np.array(r[j]) for j in range(len(chunk))]
    return out
