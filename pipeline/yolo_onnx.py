"""Raw YOLO ONNX (`output0 [B, 4+nc, anchors]`), exported directly with torch.onnx and checked against PyTorch.

Why not `yolo export`: it wraps the same `torch.onnx.export` in checks, installs and an onnxslim pass and
is several times slower (bench/bench_onnx_export.py). We set the Detect head up exactly as Ultralytics'
exporter does (export mode, dynamic batch, fused Conv+BN) and export with the TorchScript exporter
(`dynamo=False`) because the dynamo exporter silently writes opset 18 when 17 is asked for. Opset 17 is
what the seed targets and what TensorRT 10.x and 11.x parse (LayerNormalization is native from 17).
"""
from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .runner import StepContext
from .yolo_env import configure

configure()  # before anything imports ultralytics

BOX_TOL_PX = 1e-2   # max |Δ| of box coordinates (pixels) ONNX Runtime vs PyTorch
SCORE_TOL = 1e-4    # max |Δ| of class scores
VERIFY_BATCH = 2    # != the export batch (1): proves the batch axis is really dynamic


def verification_images(batch: int, imgsz: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, imgsz, imgsz, generator=g)


def export(ctx: StepContext) -> dict:
    """Step builder: export, then check against the unfused checkpoint model on a batch of 2."""
    import numpy as np
    import torch

    from .weights import load_detection_model

    s, model_rec = ctx.settings, ctx.model
    model = load_detection_model(Path(model_rec["pt"]), model_rec["key"])
    imgsz = s["imgsz"]
    x = verification_images(VERIFY_BATCH, imgsz)
    with torch.inference_mode():
        reference = model(x)[0].numpy()   # unfused checkpoint model: the source of truth
    opset = export_graph(model, imgsz, s["opset"], ctx.out(), untrained=bool(model_rec.get("untrained")))

    got = run_onnx(ctx.out(), {"images": x.numpy()})[0]
    if got.shape != reference.shape:
        raise RuntimeError(f"ONNX output shape {got.shape} != PyTorch {reference.shape}")
    box_err = float(np.abs(got[:, :4] - reference[:, :4]).max())
    score_err = float(np.abs(got[:, 4:] - reference[:, 4:]).max())
    result = {"compared_with": "PyTorch (unfused checkpoint, FP32, CPU)", "runtime": "onnxruntime CPU",
              "batch": VERIFY_BATCH, "input": f"uniform random [0,1], seed 0, {imgsz}x{imgsz}",
              "output_shape": list(got.shape), "max_abs_box_px": box_err, "max_abs_score": score_err,
              "box_tolerance_px": BOX_TOL_PX, "score_tolerance": SCORE_TOL, "opset": opset,
              "max_score": float(reference[:, 4:].max())}
    if not (box_err <= BOX_TOL_PX and score_err <= SCORE_TOL):
        raise UserError(f"the exported ONNX disagrees with PyTorch (boxes {box_err:.3g} px, scores {score_err:.3g}; "
                        f"allowed {BOX_TOL_PX} px / {SCORE_TOL})", key=model_rec["key"],
                        fix="report this with the checkpoint; try another opset in the manifest meanwhile")
    result["passed"] = True
    return result


def export_graph(model, imgsz: int, opset: int, path: Path, untrained: bool = False) -> int:
    """Fuse, put the Detect head in export mode as Ultralytics' exporter does, write a checked ONNX."""
    import onnx
    import torch
    from ultralytics.nn.modules.head import Detect

    for p in model.parameters():
        p.requires_grad = False
    model = model.eval().fuse(verbose=False)
    for m in model.modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic, m.shape = True, "onnx", True, None
    nc, anchors = int(model.model[-1].nc), sum((imgsz // int(s)) ** 2 for s in model.stride)
    with torch.no_grad():
        torch.onnx.export(
            model, torch.zeros(1, 3, imgsz, imgsz), str(path), opset_version=opset, dynamo=False,
            do_constant_folding=True, input_names=["images"], output_names=["output0"],
            dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
        )
    graph = onnx.load(str(path))
    written = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    if written != opset:
        raise RuntimeError(f"asked for opset {opset}, torch wrote {written}")
    # torch leaves the non-batch output dims symbolic; Triton's config and TensorRT want them fixed.
    for dim, value in zip(graph.graph.output[0].type.tensor_type.shape.dim[1:], (4 + nc, anchors)):
        dim.Clear()
        dim.dim_value = value
    meta = {"producer": "triton-export-pipeline", "task": "detect", "imgsz": str([imgsz, imgsz]),
            "names": str({int(k): v for k, v in dict(model.names).items()}), "stride": str(int(max(model.stride))),
            "untrained": str(untrained).lower()}
    del graph.metadata_props[:]
    for k, v in meta.items():
        graph.metadata_props.add(key=k, value=v)
    onnx.save(graph, str(path))
    onnx.checker.check_model(str(path), full_check=True)  # includes strict shape inference
    return written


def run_onnx(path: Path, feeds: dict, basic_optimizations: bool = False):
    """One onnxruntime CPU run. `basic_optimizations`: onnxruntime 1.32's extended graph optimizations
    crash (SIGSEGV) on the FP16 MobileCLIP2 text graph; the basic level runs it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if basic_optimizations:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)
# edit
