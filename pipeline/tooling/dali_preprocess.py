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

Imports only nvidia.dali (the Triton stand-in backend imports this module too).
"""
from __future__ import annotations

INPUT = "encoded_images"
OUTPUTS = ("images", "letterbox")
LETTERBOX_FIELDS = ("gain_x", "gain_y", "pad_x", "pad_y", "width", "height")
PAD_VALUE = 114


def _round_half_even(x):
    """Python's round() on a DALI float64 node (dali.math has floor, not round)."""
    import nvidia.dali.math as dmath

    f = dmath.floor(x)
    d = x - f
    odd = (f - 2.0 * dmath.floor(f / 2.0)) == 1.0
    return f + (d > 0.5) + ((d == 0.5) & odd)


def letterbox(encoded, imgsz: int, device: str, dtype: str):
    """(images [3, S, S] in `dtype`, letterbox [6] FP32) from a node of encoded images."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    decoded = fn.decoders.image(encoded, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
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


def detection_pipeline(imgsz: int, dtype: str, max_batch: int, device: str, num_threads: int = 4):
    """The pipeline of one consumer; `device` "gpu" is what Triton serves, "cpu" its twin."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import Pipeline

    twin = device == "cpu"
    pipe = Pipeline(batch_size=max_batch, num_threads=num_threads, device_id=None,
                    prefetch_queue_depth=1 if twin else 2, exec_async=not twin, exec_pipelined=not twin)
    with _no_origin_trace(), pipe:
        encoded = fn.external_source(name=INPUT, dtype=types.UINT8, ndim=1, device="cpu")
        pipe.set_outputs(*letterbox(encoded, imgsz, device, dtype))
    return pipe


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
