"""Track D preprocessing as one DALI definition: the GPU pipeline Triton serves and its CPU twin.

Encoded images (JPEG, PNG, ...; one UINT8 byte array per image) are decoded (nvJPEG, `device="mixed"`,
on the GPU; DALI's CPU decoder in the twin), EXIF orientation applied by the decoder, and letterboxed
exactly as Ultralytics' `LetterBox(auto=False)` does for prediction:
* r = min(S/h, S/w) (upscaling allowed); new size (round(w r), round(h r)), at least 1 px, with Python's
  round (half to even), computed in float64 as Python does;
* linear resize without antialiasing (`fn.resize`'s default antialiasing differs from OpenCV's linear);
* centred padding of value 114: top = round(dh/2 - 0.1), left = round(dw/2 - 0.1), i.e. floor(d/2);
* RGB, CHW, /255, in the dtype its consumer declares (FP16 for FP16 plans: Triton refuses an ensemble
  whose connected tensors differ in dtype).
The padding and the normalization are one GPU operator: `crop_mirror_normalize` cropping an S x S window
centred on the resized image (out-of-bounds pixels padded), its start truncated: trunc((new - S) / 2) =
-floor((S - new) / 2).
A second output, `image_size`, carries each original image's (height, width): the ensemble's last member
(builders/boxes_onnx.py) computes from it the letterbox that maps boxes back to the original image, with
the same arithmetic, so the pipeline spends no CPU operator on it.
With a MobileCLIP2 encoder beside the detector (Track E), the same decoded image also goes through the
encoder's own preprocessing (open_clip: resize of the shorter side with antialiasing, bilinear; centre
crop; mean/std from the encoder's record) into a third output, `clip_images`.

A pipeline is described by a small JSON-able definition (`definition(...)`: sizes, dtypes and the served
knobs num_threads and hw_decoder_load): the builder serializes it, and the Triton stand-in, the tests and
bench/bench_dali_gpu.py rebuild it from the record beside `model.dali`.

Imports only nvidia.dali (the Triton stand-in backend imports this module too).
"""
from __future__ import annotations

INPUT = "encoded_images"
OUTPUTS = ("images", "image_size")
CLIP_OUTPUT = "clip_images"
IMAGE_SIZE_FIELDS = ("height", "width")
PAD_VALUE = 114


SHAPE_TYPE = "FLOAT"  # image_shape()'s DALI dtype: every side below 2**24 is exact, and the arithmetic is float64


def image_shape(encoded):
    """[H, W, C] of each encoded image (EXIF orientation applied), read from the header: one CPU operator,
    shared by every branch. FP32, so that [H, W] is the `image_size` output as it is."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    return fn.peek_image_shape(encoded, dtype=getattr(types, SHAPE_TYPE))


def _f64(value: float):
    """A float64 constant: arithmetic with it is float64, as Python computes sizes."""
    import nvidia.dali.types as types

    return types.Constant(float(value), dtype=types.FLOAT64)


# Adding and subtracting 2**52 rounds a float64 in [0, 2**52) to the nearest integer, ties to even: Python's
# round() in two operators (dali.math has floor, not round; fn.cast rounds ties away from zero). Every value
# rounded here is a size below 2**31.
_TO_INTEGER = 2.0 ** 52


def _round_half_even(x):
    return (x + _TO_INTEGER) - _TO_INTEGER


# Every arithmetic operator below is one CPU operator run per batch, and each batch waits for them: on an H100
# the 17 of the previous version cost ~1.9 ms per batch of 64 at 480p (bench/bench_dali_parts.py), 40 % of
# decoding itself. So the resize size is computed in the fewest operators that give Python's float64 values
# exactly (9 with the shape; tests/test_dali.py checks them on 200,000 shapes), and what maps boxes back (gain,
# padding) is left to the postprocess graph, which reads the image size.
def letterbox_args(shape, imgsz: int):
    """From image_shape(): (resize size [H, W] FP32, image_size [H, W] FP32)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    hw = shape[0:2]
    r = _f64(imgsz) / fn.reductions.max(hw)  # = min(S/h, S/w) in float64: division is monotonic
    new = dmath.max(_round_half_even(hw * r), 1.0)  # (round(h r), round(w r)), at least 1 px
    return fn.cast(new, dtype=types.FLOAT), hw


def letterbox(shape, decoded, imgsz: int, dtype: str, **resize):
    """(images [3, S, S] in `dtype`, image_size [2] FP32) from image_shape() and the decoded images; `resize`:
    further fn.resize arguments that keep every pixel (bench/bench_dali_parts.py's variants)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    import numpy as np

    size, image_size = letterbox_args(shape, imgsz)
    resized = fn.resize(decoded, size=size, antialias=False, interp_type=types.INTERP_LINEAR, **resize)
    fill = float(np.float32(PAD_VALUE) * (np.float32(1) / np.float32(255)))  # 114 as normalized: bit for bit
    images = fn.crop_mirror_normalize(resized, dtype=types.FLOAT16 if dtype == "FP16" else types.FLOAT,
                                      output_layout="CHW", mean=0.0, std=255.0, crop=[imgsz, imgsz],
                                      crop_pos_x=0.5, crop_pos_y=0.5, rounding="truncate",
                                      out_of_bounds_policy="pad", fill_values=fill)
    return images, image_size


def clip_args(shape, size: int):
    """What open_clip's transform needs, from image_shape(): (resize size [H, W] FP32, crop start [W, H]
    INT32). The shorter side becomes `size`, the longer int(size * long / short); the crop starts at
    round((side - size) / 2) — torchvision's arithmetic, in float64."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    wh = shape[1::-1]
    new = dmath.floor(wh * _f64(size) / dmath.min(shape[0], shape[1]))  # the short side: exactly size
    start = _round_half_even((new - float(size)) * 0.5)
    return fn.cast(new, dtype=types.FLOAT)[::-1], fn.cast(start, dtype=types.INT32)


def clip_branch(shape, decoded, clip: dict):
    """open_clip's image preprocessing for MobileCLIP2 (torchvision on PIL): resize (bilinear, antialiased
    like PIL), centre crop, (x/255 - mean) / std, CHW."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    size, start = clip_args(shape, clip["size"])
    resized = fn.resize(decoded, size=size, interp_type=types.INTERP_LINEAR, antialias=True)
    cropped = fn.slice(resized, start=start, shape=[clip["size"], clip["size"]], axis_names="WH")
    return fn.crop_mirror_normalize(cropped, dtype=types.FLOAT16 if clip["dtype"] == "FP16" else types.FLOAT,
                                    output_layout="CHW", mean=[255.0 * m for m in clip["mean"]],
                                    std=[255.0 * s for s in clip["std"]])


# Served defaults (manifest `dali:`; README "Track D" has the measurements behind them). One instance waits for
# its own CPU operators and its GPU operators in turn (DALI's executor in Triton runs a batch's stages one after
# the other): at 480p it stays near 85-88 % of decoding alone even with no CPU operator at all. Three instances
# overlap one's CPU work with another's decoding: on an H100 (16 CPUs) 3 x 6 threads gave 480p JPEG ~24,900
# images/s, 88 % of decoding alone, against ~19,200 (75 %) for 2 x 8, with 1080p within 4 % (6,816 vs 7,048),
# 4K and 480p PNG the same (18 threads on 16 CPUs; 2 x 8 is 16). 0.65 is DALI's own hardware decoder
# share, the fastest at 1080p (`bench_dali_gpu.py --pick-hw`).
NUM_THREADS = 6         # DALI's CPU worker threads per pipeline: the hybrid decoder's host Huffman work, PNG
HW_DECODER_LOAD = 0.65  # the share of each JPEG batch nvJPEG's hardware decoder (A100, H100, ...) takes
INSTANCES = 3           # Triton instances of the DALI model per GPU: one's CPU work overlaps another's decoding


def definition(imgsz: int, dtype: str, max_batch: int, clip: dict | None = None, num_threads: int = NUM_THREADS,
               hw_decoder_load: float = HW_DECODER_LOAD) -> dict:
    """clip: None (Track D) or {"size", "dtype", "mean", "std"} of a MobileCLIP2 image encoder (Track E)."""
    return {"imgsz": imgsz, "dtype": dtype, "max_batch": max_batch, "clip": clip, "num_threads": num_threads,
            "hw_decoder_load": hw_decoder_load}


def outputs(d: dict) -> list[tuple[str, str, list[int]]]:
    """(name, Triton dtype, dims) of each output, in the pipeline's order (Triton matches by position)."""
    out = [(OUTPUTS[0], d["dtype"], [3, d["imgsz"], d["imgsz"]]), (OUTPUTS[1], "FP32", [len(IMAGE_SIZE_FIELDS)])]
    if d["clip"]:
        out.append((CLIP_OUTPUT, d["clip"]["dtype"], [3, d["clip"]["size"], d["clip"]["size"]]))
    return out


def decode(encoded, d: dict, device: str):
    """The images decoded, RGB: nvJPEG (`mixed`: the hardware decoder takes the definition's share of each
    JPEG batch) for the served pipeline, DALI's CPU decoder for the twin."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    if device == "gpu":
        return fn.decoders.image(encoded, device="mixed", output_type=types.RGB,
                                 hw_decoder_load=float(d.get("hw_decoder_load", HW_DECODER_LOAD)))
    return fn.decoders.image(encoded, device="cpu", output_type=types.RGB)


def new_pipeline(d: dict, device: str, num_threads: int | None = None, max_batch: int | None = None):
    """An empty pipeline for a definition. The served one is built the way Triton's DALI backend builds it
    (daliCreatePipeline: pipelined, asynchronous, prefetch queue 1); the twin runs synchronously."""
    from nvidia.dali import Pipeline

    twin = device == "cpu"
    return Pipeline(batch_size=max_batch or d["max_batch"], num_threads=num_threads or d.get("num_threads", NUM_THREADS),
                    device_id=None, prefetch_queue_depth=1, exec_async=not twin, exec_pipelined=not twin)


def pipeline(d: dict, device: str, num_threads: int | None = None, max_batch: int | None = None):
    """The pipeline of a definition; `device` "gpu" is what Triton serves, "cpu" its twin."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    pipe = new_pipeline(d, device, num_threads, max_batch)
    with _no_origin_trace(), pipe:
        encoded = fn.external_source(name=INPUT, dtype=types.UINT8, ndim=1, device="cpu")
        decoded = decode(encoded, d, device)
        shape = image_shape(encoded)
        images, image_size = letterbox(shape, decoded, d["imgsz"], d["dtype"])
        pipe.set_outputs(images, image_size, *([clip_branch(shape, decoded, d["clip"])] if d["clip"] else []))
    return pipe


def detection_pipeline(imgsz: int, dtype: str, max_batch: int, device: str, num_threads: int | None = None):
    """Track D's pipeline (no encoder branch), at the served defaults."""
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
