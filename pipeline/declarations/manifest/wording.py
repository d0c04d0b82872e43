"""pydantic's first complaint about a manifest, as the one paragraph users get: the key path, what is wrong,
the fix (from schema.ALLOWED), and how many more problems there are."""
from __future__ import annotations

from pydantic import ValidationError

from ...engine.errors import UserError
from .schema import (ALLOWED, PATTERN_WHAT, Dali, DynamicBatching, EncoderEntry, InstanceGroup, Manifest, ModelEntry,
                     OnnxTensorRT, SearchEntry, Settings, Versions)


def explain(error: ValidationError, file: str, prefix: str = "") -> UserError:
    """First pydantic error as a paragraph (key path, problem, fix); the count of any others."""
    errs = error.errors()
    first = errs[0]
    loc = [str(p) for p in first["loc"]
           if not str(p).startswith(("function-after", "literal", "int", "float", "[key]", "constrained-str", "list["))]
    key = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
    leaf = next((p for p in reversed(loc) if p in ALLOWED), None)
    msg = first["msg"].replace("Value error, ", "")
    if first["type"] == "extra_forbidden":
        parent = loc[-2] if len(loc) > 1 else ""
        allowed = allowed_keys(prefix.split(".") + loc if prefix else loc)
        fix = f"remove '{loc[-1]}' or correct its spelling; allowed keys here: {allowed}"
        msg = f"unknown key '{loc[-1]}'" + (f" under '{parent}'" if parent else "")
    elif first["type"] == "string_pattern_mismatch" and leaf in PATTERN_WHAT:
        msg = f"{first.get('input')!r} is not {PATTERN_WHAT[leaf]}"
        fix = f"use {ALLOWED[leaf]}"
    elif first["type"] == "string_pattern_mismatch":
        msg = f"{first.get('input')!r} is not a usable Triton model name"
        fix = f"use {ALLOWED['triton_name']}"
    elif first["type"] == "missing":
        fix = f"add '{loc[-1]}'"
    else:
        given = first.get("input")
        if not isinstance(given, (dict, list)):
            msg = f"{msg} (got {given!r})"
        fix = f"use {ALLOWED[leaf]}" if leaf else "see manifests/README.md for the allowed values"
    more = f" ({len(errs) - 1} more problem(s) after this one)" if len(errs) > 1 else ""
    return UserError(msg + more, file=file, key=key, fix=fix)


def allowed_keys(loc: list[str]) -> str:
    if len(loc) == 1:
        return ", ".join(Manifest.model_fields)
    blocks = {"dynamic_batching": DynamicBatching, "instance_group": InstanceGroup, "onnx_tensorrt": OnnxTensorRT,
              "dali": Dali, "versions": Versions}
    if len(loc) > (2 if loc[0] == "defaults" else 3) and loc[-2] in blocks:  # a settings block of any entry
        return ", ".join(blocks[loc[-2]].model_fields)
    if loc[0] == "models":
        return ", ".join(ModelEntry.model_fields)
    if loc[0] == "encoders":
        return ", ".join(EncoderEntry.model_fields)
    if loc[0] == "ensembles":
        return ", ".join(SearchEntry.model_fields)
    if loc[0] in ("defaults", "builtins"):
        return ", ".join(Settings.model_fields)
    return "see manifests/README.md"
