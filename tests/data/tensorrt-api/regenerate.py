"""Regenerate the TensorRT Python API name lists beside this file from NVIDIA's public bindings wheels.

    python tests/data/tensorrt-api/regenerate.py 10.13.3.9 10.16.1.11 11.4.0.106

Each `tensorrt-VERSION.names` lists, one per line, every identifier-shaped string in the read-only data
(`.rodata`) of that release's `tensorrt` Python extension, where pybind11 keeps the class, method,
attribute and enum member names it registers (C++ type signatures left out): the stand-in
TensorRT of the tests (tests/helpers/trt_standin.py) refuses any name the release lacks. The bindings
wheels download from PyPI (`tensorrt-cu12-bindings` for 10.x, `tensorrt-cu13-bindings` for 11.x) even
where the TensorRT libraries do not. What the lists do not tell: signatures, semantics, or whether a
build succeeds.
"""
from __future__ import annotations

import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
MANGLED = re.compile(rb"(?:P?F|N[0-9])[A-Za-z0-9_]{18,}E")  # Itanium-mangled C++ types, not Python names


def strings(data: bytes, minimum: int = 4):
    """What `strings` prints: runs of at least `minimum` printable ASCII bytes."""
    return re.findall(rb"[\x20-\x7e]{%d,}" % minimum, data)


def section(elf: bytes, wanted: str) -> bytes:
    """The bytes of one section of a 64-bit little-endian ELF file."""
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx]
    for name, _, _, _, offset, size, *_ in headers:
        start = names[4] + name
        if elf[start:elf.index(b"\0", start)].decode() == wanted:
            return elf[offset:offset + size]
    raise ValueError(f"no {wanted} section")


def names(version: str) -> list[str]:
    package = "tensorrt-cu13-bindings" if version.startswith("11.") else "tensorrt-cu12-bindings"
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "-d", d,
                        f"{package}=={version}"], check=True)
        wheel = next(Path(d).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            so = next(n for n in z.namelist() if re.search(r"tensorrt_bindings/tensorrt[^/]*\.so$", n))
            data = z.read(so)
    rodata = section(data, ".rodata")
    return sorted({s.decode() for s in strings(rodata) if IDENTIFIER.fullmatch(s) and not MANGLED.fullmatch(s)})


if __name__ == "__main__":
    for version in sys.argv[1:] or ["10.13.3.9", "10.16.1.11", "11.4.0.106"]:
        (HERE / f"tensorrt-{version}.names").write_text("\n".join(names(version)) + "\n")
        print(f"wrote {HERE / f'tensorrt-{version}.names'}")
