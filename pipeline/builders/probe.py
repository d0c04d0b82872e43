"""Step builder: the probe `doit deploy` sends a freshly loaded version — one request made from the folder's
config.pbtxt (deterministic: the same config gives the same bytes), and the answer the build expects.

* An ONNX folder's answer is its graph's, run here in onnxruntime on the CPU (an End2End graph's
  EfficientNMS_TRT node through the NumPy reference of the plugin): the server must give the same values
  (within tolerance: serving/probe.py).
* A TensorRT plan, a DALI model or an ensemble cannot run here: only the answer's output names, data types
  and shapes are known, and checked.

Written as a .npz whose bytes depend only on the arrays (fixed zip timestamps), so an unchanged folder keeps
its version.
"""
from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..engine.context import StepContext

NUMPY = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_FP64": np.float64, "TYPE_INT32": np.int32,
         "TYPE_INT64": np.int64, "TYPE_INT8": np.int8, "TYPE_UINT8": np.uint8, "TYPE_BOOL": np.bool_,
         "TYPE_INT16": np.int16}
IMAGE_SIDE = 96  # the probe image of a folder fed encoded images: small, still a real JPEG


def build(ctx: StepContext) -> dict:
    from ..tooling import model_config

    cfg = model_config.parse(ctx.input("config").read_text())
    batch = [1] if cfg.max_batch_size > 0 else []
    rng = np.random.default_rng(0)
    arrays, contract = {}, {}
    for inp in cfg.input:
        dtype = model_config.type_name(inp.data_type)
        if dtype == "TYPE_UINT8" and list(inp.dims) == [-1]:  # encoded image bytes (DALI, ensembles)
            arrays[f"input/{inp.name}"] = np.stack([_jpeg(rng)]) if batch else _jpeg(rng)
            continue
        dims = batch + [d if d > 0 else 1 for d in inp.dims]
        if np.issubdtype(NUMPY[dtype], np.floating):
            value = rng.random(dims, dtype=np.float32).astype(NUMPY[dtype])
        else:
            value = rng.integers(0, 100, dims).astype(NUMPY[dtype])
        arrays[f"input/{inp.name}"] = value
    for out in cfg.output:
        contract[out.name] = [model_config.type_name(out.data_type), batch + list(out.dims)]
    compared = "contract"
    if ctx.has_input("graph"):
        feeds = {k.split("/", 1)[1]: v for k, v in arrays.items()}
        names = [o.name for o in cfg.output]
        for name, value in zip(names, _run(ctx.input("graph"), feeds, names)):
            arrays[f"output/{name}"] = np.ascontiguousarray(value)
        compared = "values"
    with open(ctx.output(), "wb") as f:
        f.write(_npz(arrays))
    return {"compared": compared, "inputs": {k.split("/", 1)[1]: [str(v.dtype), list(v.shape)]
                                             for k, v in arrays.items() if k.startswith("input/")},
            "outputs": contract}


def _run(graph, feeds: dict, names: list[str]):
    import onnx

    from ..tooling import onnx_tools
    from ..tooling.efficient_nms import cpu_session

    model = onnx.load(str(graph), load_external_data=False)
    if any(n.op_type == "EfficientNMS_TRT" for n in model.graph.node):
        return cpu_session(onnx.load(str(graph))).run(names, feeds)
    out = dict(zip([o.name for o in model.graph.output], onnx_tools.run(graph, feeds)))
    return [out[n] for n in names]


def _jpeg(rng) -> np.ndarray:
    """A small picture with a bright rectangle on grey noise, JPEG-encoded: what every image decoder reads."""
    from PIL import Image

    pixels = (114 + rng.integers(-20, 20, (IMAGE_SIDE, IMAGE_SIDE, 3))).astype(np.uint8)
    pixels[20:60, 30:80] = (230, 60, 40)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return np.frombuffer(buf.getvalue(), np.uint8)


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    """np.savez's format with fixed timestamps (np.savez stamps the current time into the zip)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue(),
                       compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()
