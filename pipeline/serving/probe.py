"""A version's probe (written at build time: builders/probe.py) sent to the server, and the answer judged.

An ONNX folder must answer with the values its graph gives here in onnxruntime: every element within
RTOL x the largest reference magnitude + ATOL (a GPU's onnxruntime is not bitwise the CPU's: TF32, fused
kernels) — at least 99.9 % of the elements of each output, whole-number outputs (counts, classes) exactly at
99 %: a tie between two boxes may order them the other way. What cannot run here (a TensorRT plan, DALI, an
ensemble) must answer with the declared output names, data types and shapes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

RTOL, ATOL = 0.02, 1e-3
FLOAT_SHARE, EXACT_SHARE = 0.999, 0.99
NUMPY = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_FP64": "float64", "TYPE_INT32": "int32",
         "TYPE_INT64": "int64", "TYPE_INT8": "int8", "TYPE_UINT8": "uint8", "TYPE_BOOL": "bool", "TYPE_INT16": "int16"}


def load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, expected outputs: empty when only the contract is known)."""
    with np.load(path, allow_pickle=False) as z:
        inputs = {k[len("input/"):-4] if k.endswith(".npy") else k[len("input/"):]: z[k] for k in z.files
                  if k.startswith("input/")}
        outputs = {k[len("output/"):-4] if k.endswith(".npy") else k[len("output/"):]: z[k] for k in z.files
                   if k.startswith("output/")}
    return inputs, outputs


def judge(answer: dict[str, np.ndarray], expected: dict[str, np.ndarray], contract: dict[str, list]) -> list[str]:
    """What is wrong with the answer, one phrase each ([] when it is right). contract: {output: [type, dims]}."""
    problems = []
    for name, (dtype, dims) in contract.items():
        got = answer.get(name)
        if got is None:
            problems.append(f"no output '{name}'")
            continue
        if str(got.dtype) != NUMPY.get(dtype, dtype):
            problems.append(f"'{name}' is {got.dtype}, not {NUMPY.get(dtype, dtype)}")
        if len(got.shape) != len(dims) or any(d >= 0 and d != g for d, g in zip(dims, got.shape)):
            problems.append(f"'{name}' has shape {list(got.shape)}, not {dims}")
    for name, want in expected.items():
        got = answer.get(name)
        if got is None or got.shape != want.shape:
            continue  # said above
        if np.issubdtype(want.dtype, np.floating):
            scale = float(np.abs(want).max()) if want.size else 0.0
            close = np.abs(got.astype(np.float64) - want) <= RTOL * scale + ATOL
            if close.mean() < FLOAT_SHARE:
                worst = float(np.abs(got.astype(np.float64) - want).max())
                problems.append(f"'{name}' differs from the build's answer ({100 * (1 - close.mean()):.1f} % of its values, "
                                f"by up to {worst:.4g})")
        elif want.size and (got == want).mean() < EXACT_SHARE:
            problems.append(f"'{name}' differs from the build's answer in {100 * (1 - (got == want).mean()):.1f} % "
                            "of its values")
    return problems
