"""Which TensorRT each Triton release ships: a plan loads only in a Triton built with the same TensorRT.

TensorRT engines are tied to the TensorRT version that built them (major.minor.patch; the build number
does not matter). The manifest's `triton: "YY.MM"` names the release that will serve the plans; its
TensorRT comes from this table. Only what NVIDIA states is here, for the `nvcr.io/nvidia/tritonserver:
YY.MM-py3` container (not the `-trtllm-python-py3` one, which ships a different TensorRT):

Source: NVIDIA's Triton release notes, "NVIDIA TensorRT™ x.y.z.b" in the container's contents, as kept
in github.com/triton-inference-server/server, docs/introduction/release_notes.md at the commit given per
row. Later releases' notes no longer list the TensorRT version; for those (and any release not here)
the manifest names it: `tensorrt: "10.13.3.9"` beside `triton:`.
"""
from __future__ import annotations

RELEASE_NOTES = "https://github.com/triton-inference-server/server/blob/{commit}/docs/introduction/release_notes.md"

# release -> (Triton server version, TensorRT version, commit of the release notes stating it)
TABLE: dict[str, tuple[str, str, str]] = {
    "24.08": ("2.49.0", "10.3.0.26", "7669321582e8bd5dcaf68b76e65389615e0a662f"),
    "24.10": ("2.51.0", "10.5.0.18", "9fac69d6b7be565411a280ed3dff96335765d96e"),
    "24.12": ("2.53.0", "10.7.0.23", "ff695aeb49819e223c88272da45f251b60f38442"),
    "25.01": ("2.54.0", "10.8.0.43", "d3ee577e403a445fb69db3e8e5a641f9a6765650"),
}


def engine_version(version: str) -> tuple[int, ...]:
    """What must match for a plan to load: major.minor.patch ("10.7.0.23", "10.7.0.post1" -> (10, 7, 0))."""
    parts = []
    for p in version.split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit()) if p[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def target(release: str | None, tensorrt: str | None) -> dict | None:
    """The plans' target from the manifest's `triton` and `tensorrt` (validated there), or None."""
    if release is None and tensorrt is None:
        return None
    row = TABLE.get(release) if release else None
    return {"triton": release, "triton_server": row[0] if row else None, "tensorrt": row[1] if row else tensorrt,
            "source": RELEASE_NOTES.format(commit=row[2]) if row else "the manifest's tensorrt key"}


def pip_spec(tensorrt: str) -> str:
    """A pip requirement that installs exactly that engine version (PyPI has 10.7.0 and 10.8.0.43 forms)."""
    return "tensorrt==" + ".".join(map(str, engine_version(tensorrt))) + ".*"
