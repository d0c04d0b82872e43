"""Explicit quantization: a Q/DQ graph (QuantizeLinear/DequantizeLinear) calibrated on the user's images, through
onnxruntime's `quantize_static(QuantFormat.QDQ)` — the only INT8 path TensorRT 10.x and 11.x share (TensorRT 11
removed implicit INT8: BuilderFlag.INT8 and the calibrators); a strongly typed network takes the graph's own
precisions.

Chosen over NVIDIA ModelOpt's `modelopt.onnx.quantization.quantize`: beside this project's onnx 1.23.2 and
onnxruntime 1.32.0, `pip install --dry-run "nvidia-modelopt[onnx]"` backtracks to ModelOpt 0.33.1 and would add
onnxruntime-gpu 1.22.0 — a second distribution of the same `onnxruntime` package, overwriting its files.
onnxruntime is already a dependency and runs the result on the CPU, so its accuracy is measured here.

As TensorRT expects: symmetric (zero point 0) INT8 activations and weights, per-channel weights; only the
inputs of Conv, MatMul and Gemm are quantized (what TensorRT fuses Q/DQ into); nodes named by the caller stay
FP32 (a detector's box decoding). FP8 (E4M3) uses onnxruntime's `Distribution` calibration, its only float8
method, and moves the graph to opset 19 (float8 types).

Listing a folder is all that runs when dodo.py loads (image_files); everything else imports on use.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..engine.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CALIBRATION_MIN = 32  # fewer images calibrate a detector's activation ranges too poorly to be worth a graph
METHODS = {"entropy": "Entropy", "max": "MinMax", "percentile": "Percentile"}
QUANTIZED = ("int8", "fp8")  # the precisions made by calibration
OP_TYPES = ["Conv", "MatMul", "Gemm"]


def image_files(folder: str | None, count: int | None = None) -> list[str]:
    """The images of a folder, by name; the first `count` of them. Cheap: one directory listing."""
    if not folder:
        return []
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    except OSError:
        return []
    return [f"{folder}/{n}" for n in names[:count]]


def label_files(folder: str | None, images: list[str]) -> list[str]:
    """The YOLO label file of each image (missing ones are images without objects)."""
    if not folder:
        return []
    return [p for p in (f"{folder}/{Path(i).stem}.txt" for i in images) if os.path.isfile(p)]


def read_images(paths: list[Path], *, what: str, key: str, minimum: int = 1) -> list:
    """BGR arrays; a paragraph for a set that is too small or a file no decoder reads."""
    import cv2

    if len(paths) < minimum:
        raise UserError(f"the {what} has {len(paths)} image(s); at least {minimum} are needed", key=key,
                        fix=f"put at least {minimum} images ({', '.join(IMAGE_SUFFIXES)}) like the ones served into "
                            "the folder")
    out = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            raise UserError(f"{p} of the {what} is not a readable image", key=key,
                            fix="replace or remove the file (every image must decode)")
        out.append(img)
    return out


def _quiet():
    """onnxruntime's calibrators print progress and log a pre-processing hint: kept out of doit's output."""
    import contextlib
    import io
    import logging

    @contextlib.contextmanager
    def quiet():
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            root.setLevel(level)
    return quiet()


def quantize(source: Path, out: Path, batches: list[dict], *, precision: str, method: str, exclude: list[str]) -> dict:
    """Write the Q/DQ graph of `source` to `out`, calibrated on `batches` (feeds)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static, save_tensors_data)
    from onnxruntime.quantization.calibrate import create_calibrator

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            return next(self._it, None)

    kind = QuantType.QFLOAT8E4M3FN if precision == "fp8" else QuantType.QInt8
    calibrate = CalibrationMethod.Distribution if precision == "fp8" else getattr(CalibrationMethod, METHODS[method])
    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp, _quiet():
        cache = None
        if precision == "int8":
            # The ranges are measured here, then handed to quantize_static: through quantize_static, onnxruntime
            # 1.32's entropy calibrator keeps its default 128 histogram bins for 128 quantized bins, where the
            # KL search has nothing to choose (the same ranges as `max`, byte for byte). TensorRT's entropy
            # calibrator uses 2048 bins for INT8's 128 levels; so does this one.
            calibrator = create_calibrator(Path(source), OP_TYPES, augmented_model_path=f"{tmp}/augmented.onnx",
                                           calibrate_method=calibrate, providers=["CPUExecutionProvider"],
                                           extra_options={"symmetric": True, "num_bins": 2048, "num_quantized_bins": 128})
            calibrator.collect_data(Feeds())
            cache = f"{tmp}/ranges.json"
            save_tensors_data(calibrator.compute_data(), cache)
            del calibrator
        # Biases stay FP32 (QuantizeBias False): onnxruntime would store them as INT32 behind a DequantizeLinear,
        # which TensorRT's parser refuses (its DequantizeLinear takes INT8, INT4, FP8); TensorRT quantizes biases
        # itself. Outputs stay FP32 too: a quantized op's consumer decides (the decoding: never).
        quantize_static(str(source), str(out), None if cache else Feeds(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=OP_TYPES, per_channel=True, activation_type=kind, weight_type=kind,
                        nodes_to_exclude=exclude, calibrate_method=calibrate, calibration_providers=["CPUExecutionProvider"],
                        calibration_cache_path=cache,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                                       "OpTypesToExcludeOutputQuantization": OP_TYPES})
    graph = onnx.load(str(out), load_external_data=False)
    quantized = sum(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    if not quantized:
        raise RuntimeError(f"{source}: onnxruntime's quantizer inserted no QuantizeLinear node")
    return {"quantize_linear_nodes": quantized, "kept_fp32_nodes": len(exclude),
            "calibration_method": calibrate.name, "type": kind.name, "opset": graph.opset_import[0].version}


def judge(accuracy: dict, *, drop: float, limit: float, accept: bool, failure: str, key: str, fix: str,
          unmeasured: str | None = None) -> tuple[bool, dict]:
    """The one rule for every quantized graph: a drop beyond `limit` (in `accuracy["unit"]`) fails the step with a
    paragraph (`failure` says what was lost, on what) unless `accept`; so does an unmeasurable accuracy. Returns
    (passed, the accuracy record with drop, max_drop and whether a failure was accepted)."""
    accuracy = {**accuracy, "drop": round(drop, 3), "max_drop": limit,
                "accepted": accept and (drop > limit or unmeasured is not None),
                **({"unmeasured": unmeasured} if unmeasured else {})}
    if drop > limit and not accept:
        raise UserError(f"{failure}; at most {limit} {accuracy['unit']} is allowed", key=key, fix=fix)
    return drop <= limit and unmeasured is None, accuracy
