"""Raw YOLO ONNX (`output0 [B, 4+nc, anchors]`), exported directly with torch.onnx and checked against PyTorch.

Why not `yolo export`: it wraps the same `torch.onnx.export` in checks, installs and an onnxslim pass and
is several times slower (bench/bench_onnx_export.py). The Detect head is set up exactly as Ultralytics'
exporter does it (families/yolo.py); opset 17 by default, what TensorRT 10.x and 11.x parse
(LayerNormalization is native from 17).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..families import yolo
from ..tooling import onnx_tools

if TYPE_CHECKING:
    from ..engine.context import StepContext


def export(ctx: StepContext) -> dict:
    """Step builder: export, then check against the unfused checkpoint model on a batch of 2."""
    import torch

    imgsz, untrained = ctx.param("imgsz"), ctx.param("untrained")
    model = yolo.load_detection_model(ctx.input("checkpoint"), ctx.key, ctx.param("trust_checkpoint"), take=True)
    x = yolo.verification_images(yolo.VERIFY_BATCH, imgsz)
    with torch.inference_mode():
        reference = model(x)[0].numpy()   # unfused checkpoint model: the source of truth
    ready, dims, meta = yolo.export_ready(model, imgsz)
    exported = onnx_tools.export_torch(ready, (torch.zeros(1, 3, imgsz, imgsz),), yolo.RAW_GRAPH, ctx.output(),
                                       opset=ctx.param("opset"), fixed_dims={"output0": dims},
                                       metadata={**meta, "untrained": str(untrained).lower()})
    checks = onnx_tools.validate(ctx.output(), yolo.RAW_GRAPH, [({"images": x.numpy()}, [reference])],
                                 what="raw ONNX", key=ctx.key)
    return {"compared_with": "PyTorch (unfused checkpoint, FP32, CPU)", "runtime": "onnxruntime CPU",
            "input": f"uniform random [0,1], seed 0, {imgsz}x{imgsz}", "output_shape": list(reference.shape),
            **checks[0], "max_score": float(reference[:, 4:].max()), **exported,
            "torch_threads": torch.get_num_threads()}
