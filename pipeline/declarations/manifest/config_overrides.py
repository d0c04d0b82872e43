"""`config_overrides:` checked when the manifest is read: each key a folder role the model has, each value
Triton ModelConfig fields an override may set (tooling/model_config.py)."""
from __future__ import annotations

from ...engine.errors import UserError
from ...tooling import model_config
from .. import families, formats
from ..steps.common import role_name


def roles(rec: dict) -> dict[str, str]:
    """{role: Triton folder} of a record: its formats (an encoder's prefixed by image_ / text_), and
    `<format>_preprocess` / `_postprocess` for an ensemble's own members."""
    out = {}
    for fmt, folder in rec["folders"].items():
        out[role_name(rec, fmt)] = folder["name"]
        for suffix in formats.FORMATS[fmt].folders[rec["kind"]].subfolders:
            out[role_name(rec, fmt + suffix)] = folder["name"] + suffix
    return out


def check(rec: dict, file: str) -> None:
    allowed = roles(rec)
    if rec["kind"] == "encoder":  # one entry, two records: each takes its own roles, either may have the others'
        allowed = {**allowed, **{r.replace(f"{rec['role']}_", f"{other}_", 1): f for r, f in allowed.items()
                                 for other in families.ENCODERS[rec["family"]].roles}}
    for role, fields in rec["settings"]["config_overrides"].items():
        key = f"{rec['key']}.config_overrides.{role}"
        if role not in allowed:
            raise UserError(f"config_overrides names '{role}', which is not a Triton folder of this model", file=file,
                            key=key, fix=f"use one of: {', '.join(allowed)}")
        bad = model_config.problem(fields)
        if bad:
            raise UserError(bad[1], file=file, key=f"{key}.{bad[0]}",
                            fix="write fields as config.pbtxt names them, in its JSON form (see Triton's "
                                "model_config.proto); set name, I/O, max_batch_size and version_policy through "
                                "their own manifest keys")
