"""Where Track D's DALI time goes: the served pipeline taken apart, each part measured as bench_dali_gpu.py
measures the whole (served file deserialized as Triton does, outputs on the GPU, 1 and N instances at once).

Needs a CUDA GPU and DALI; never runs in CI. `python bench/bench_dali_parts.py [--out DIR] [--sets ...]`.
Each row is the decoder plus one more part of the served pipeline, so the step from one row to the next is
what that part costs:
  decode         nvJPEG alone (the ceiling)
  + shape        + peek_image_shape (CPU, header only)
  + arithmetic   + the letterbox size arithmetic (CPU operators), its results as outputs
  + resize static decode + resize with a constant size (no crop_mirror_normalize)
  + gpu static   decode + resize / crop_mirror_normalize with constant arguments (no per-image CPU arithmetic)
  served         the served pipeline
plus any variants of the served pipeline named with `--variant` (see VARIANTS), and thread counts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dali_gpu as B  # noqa: E402

import numpy as np  # noqa: E402

from pipeline.tooling import dali_preprocess as D  # noqa: E402


def _pipe(d: dict, body) -> bytes:
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    pipe = D.new_pipeline(d, B.DEVICE)
    with D._no_origin_trace(), pipe:
        encoded = fn.external_source(name=D.INPUT, dtype=types.UINT8, ndim=1, device="cpu")
        pipe.set_outputs(*body(encoded))
    return pipe.serialize()


def part_shape(d):
    return lambda e: (D.decode(e, d, B.DEVICE), D.image_shape(e))


def part_arithmetic(d):
    def body(e):
        size, image_size = D.letterbox_args(D.image_shape(e), d["imgsz"])
        return D.decode(e, d, B.DEVICE), size, image_size
    return body


def part_resize_static(d, **resize):
    """decode + the served resize with a constant size."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    return lambda e: (fn.resize(D.decode(e, d, B.DEVICE), size=[480.0, 640.0], antialias=False,
                                interp_type=types.INTERP_LINEAR, **resize),)


def part_gpu_static(d, **resize):
    """decode + the served GPU operators (resize, crop_mirror_normalize padding) with constant arguments."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    def body(e):
        (resized,) = part_resize_static(d, **resize)(e)
        return (fn.crop_mirror_normalize(resized, dtype=types.FLOAT16, output_layout="CHW", mean=0.0, std=255.0,
                                         crop=[d["imgsz"], d["imgsz"]], rounding="truncate",
                                         out_of_bounds_policy="pad", fill_values=D.PAD_VALUE / 255.0),)
    return body


def _record_in_dali(d, e, with_slice: bool):
    """The served pipeline before the postprocess graph computed the letterbox record: the shape in float64,
    the size and the record (gain, padding, size) on [W, H] vectors (18 CPU operators); with_slice: also
    before crop_mirror_normalize padded (fn.slice pads: a GPU operator and 2 CPU operators more)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    S = d["imgsz"]
    shape = fn.peek_image_shape(e, dtype=types.FLOAT64)
    wh = shape[1::-1]
    new = dmath.max(D._round_half_even(wh * (S / dmath.max(shape[0], shape[1]))), 1.0)
    pad = dmath.floor((S - new) * 0.5)
    info = fn.cast(fn.cat(new / wh, pad, wh), dtype=types.FLOAT)
    resized = fn.resize(D.decode(e, d, B.DEVICE), size=fn.cast(new, dtype=types.FLOAT)[::-1], antialias=False,
                        interp_type=types.INTERP_LINEAR)
    fill = float(np.float32(D.PAD_VALUE) * (np.float32(1) / np.float32(255)))
    if with_slice:
        padded = fn.slice(resized, start=fn.cast(-pad, dtype=types.INT32), shape=[S, S], axis_names="WH",
                          out_of_bounds_policy="pad", fill_values=D.PAD_VALUE)
        return fn.crop_mirror_normalize(padded, dtype=types.FLOAT16, output_layout="CHW", mean=0.0, std=255.0), info
    return fn.crop_mirror_normalize(resized, dtype=types.FLOAT16, output_layout="CHW", mean=0.0, std=255.0,
                                    crop=[S, S], crop_pos_x=0.5, crop_pos_y=0.5, rounding="truncate",
                                    out_of_bounds_policy="pad", fill_values=fill), info


def variant_record_in_dali(d):
    return lambda e: _record_in_dali(d, e, with_slice=False)


def variant_slice_before(d):
    return lambda e: _record_in_dali(d, e, with_slice=True)


def variant_minibatch(d):
    """The served pipeline with fn.resize's minibatch_size 64 (default 32: two kernel calls per batch of 64)."""
    return lambda e: D.letterbox(D.image_shape(e), D.decode(e, d, B.DEVICE), d["imgsz"], d["dtype"],
                                 minibatch_size=B.BATCH)


def served(d):
    return None


PARTS = {"decode": None, "+ shape": part_shape, "+ arithmetic": part_arithmetic, "+ resize static": part_resize_static,
         "+ gpu static": part_gpu_static, "served": served}
VARIANTS = {"record in DALI (before)": variant_record_in_dali, "slice (before)": variant_slice_before,
            "gpu static, minibatch 64": lambda d: part_gpu_static(d, minibatch_size=B.BATCH),
            "served, minibatch 64": variant_minibatch}
# earlier versions of the served pipeline, and candidate changes that keep every pixel, measured beside it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--sets", default="480p-jpg,1080p-jpg")
    ap.add_argument("--threads", default=str(D.NUM_THREADS), help="comma-separated num_threads values")
    ap.add_argument("--instances", type=int, default=D.INSTANCES)
    ap.add_argument("--hw-load", type=float, default=D.HW_DECODER_LOAD)
    ap.add_argument("--variant", action="append", default=[], help="a name in VARIANTS")
    ap.add_argument("--only", default="", help="comma-separated row names: only these")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()
    import nvidia.dali

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dali-parts-"))
    images = work / "images.npz"
    B.make_images(images)
    result = {"gpu": B.gpu_name(), "dali": nvidia.dali.__version__, "cpus": os.cpu_count(), "batch": B.BATCH,
              "hw_decoder_load": a.hw_load, "rows": []}
    print(f"GPU {result['gpu']}, DALI {result['dali']}, {result['cpus']} CPUs; batch {B.BATCH}", flush=True)
    sets = a.sets.split(",")
    t0 = time.perf_counter()
    for threads in [int(t) for t in a.threads.split(",")]:
        d = D.definition(B.IMGSZ, B.DTYPE, B.BATCH, num_threads=threads, hw_decoder_load=a.hw_load)
        bodies = {**PARTS, **{v: VARIANTS[v] for v in a.variant}}
        if a.only:
            bodies = {k: v for k, v in bodies.items() if k in a.only.split(",")}
        for name, make in bodies.items():
            file = work / f"{len(result['rows'])}.dali"
            if name == "decode":
                file.write_bytes(B.decode_only(d))
            elif name == "served":
                file.write_bytes(D.pipeline(d, B.DEVICE).serialize())
            else:
                file.write_bytes(_pipe(d, make(d)))
            label = f"{name} ({threads} thr)"
            spec = {"row": label, "file": str(file), "threads": threads, "instances": sorted({1, a.instances}),
                    "sets": sets, "images": str(images), "seconds": a.seconds, "copy": False}
            for x in B.run_row(spec, a.timeout, print):
                result["rows"].append(x)
                if "images_per_s" in x:
                    ms = 1000 * B.BATCH / x["images_per_s"]
                    print(f"  {label:28s} {x['set']:10s} x{x['instances']}: {x['images_per_s']:8.0f} img/s"
                          f" {ms:6.2f} ms/batch", flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "dali_parts.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
