"""Regenerate the vendored ONNX-TensorRT operator support matrices beside this file.

    python pipeline/tooling/data/onnx_tensorrt_operators.py release/10.1-GA [release/11.5-GA ...]
    python pipeline/tooling/data/onnx_tensorrt_operators.py --from-file operators.md release/10.1-GA

Each writes `onnx-tensorrt-<ref>.json`: the table of onnx/onnx-tensorrt's docs/operators.md at that git
ref (the parser TensorRT ships; one ref per TensorRT release): per ONNX operator whether TensorRT's
parser supports it, its supported types and restrictions, and the header's opset range.
pipeline/tooling/trt_support.py checks every graph handed to TensorRT against the newest table for the
targeted TensorRT major. Fetched from raw.githubusercontent.com (or read from a local copy of the file).
"""
from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
URL = "https://raw.githubusercontent.com/onnx/onnx-tensorrt/{ref}/docs/operators.md"
# The tables' own spellings, as ONNX names the types (and one typo of the 10.x table: INF64).
TYPES = {"FP32": "FLOAT", "FLOAT32": "FLOAT", "FP16": "FLOAT16", "FLOAT16": "FLOAT16", "BF16": "BFLOAT16",
         "BFLOAT16": "BFLOAT16", "INT32": "INT32", "INT64": "INT64", "INF64": "INT64", "INT8": "INT8", "UINT8": "UINT8",
         "BOOL": "BOOL", "FP8": "FLOAT8E4M3FN", "INT4": "INT4", "DOUBLE": "DOUBLE"}


def parse(text: str, ref: str) -> dict:
    opset = re.search(r"inclusive range of opset (\d+) to opset (\d+)", text)
    operators = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) < 2 or cells[1] not in ("Y", "N") or not re.fullmatch(r"[A-Za-z0-9_]+", cells[0]):
            continue
        types = sorted({TYPES[t.strip()] for t in (cells[2] if len(cells) > 2 else "").split(",") if t.strip()})
        operators[cells[0]] = {"supported": cells[1] == "Y", "types": types,
                               "restrictions": cells[3] if len(cells) > 3 else ""}
    return {"source": f"onnx/onnx-tensorrt {ref} docs/operators.md", "ref": ref,
            "opset": [int(opset.group(1)), int(opset.group(2))] if opset else None, "operators": operators}


def main(argv: list[str]) -> None:
    local = argv[argv.index("--from-file") + 1] if "--from-file" in argv else None
    refs = [a for i, a in enumerate(argv) if not a.startswith("--") and (i == 0 or argv[i - 1] != "--from-file")]
    for ref in refs:
        text = Path(local).read_text() if local else urllib.request.urlopen(URL.format(ref=ref), timeout=60).read().decode()
        table = parse(text, ref)
        out = HERE / f"onnx-tensorrt-{ref.replace('release/', '').replace('/', '-')}.json"
        out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        print(f"wrote {out}: {len(table['operators'])} operators, opset {table['opset']}")


if __name__ == "__main__":
    main(sys.argv[1:])
