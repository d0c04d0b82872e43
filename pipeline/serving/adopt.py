"""`doit adopt-config NAME`: the hand edits of models/NAME/config.pbtxt become the manifest's
`config_overrides` of that folder (and `versions.serve` for a changed version_policy), so that every
rebuild makes the edited config — byte for byte when the edit kept config.pbtxt's own formatting."""
from __future__ import annotations

from pathlib import Path

from ..declarations import layout as L
from ..declarations.manifest import config_overrides, edit
from ..engine import publish
from ..engine.errors import UserError
from ..tooling import model_config


def owner(models: list[dict], name: str) -> tuple[dict, str]:
    """(record, role) of the Triton folder `name`."""
    for rec in models:
        for role, folder in config_overrides.roles(rec).items():
            if folder == name:
                return rec, role
    names = sorted(f for rec in models for f in config_overrides.roles(rec).values())
    raise UserError(f"no Triton folder of this manifest is called '{name}'", file=models[0]["manifest"] if models else None,
                    fix=f"name one of: {', '.join(names)}")


def edits(edited, built) -> tuple[list[str], list[str]]:
    """(top-level fields that differ, of which those that may not be overridden), version_policy apart."""
    fields = {f.name for f, _ in edited.ListFields()} | {f.name for f, _ in built.ListFields()}
    changed = sorted(f for f in fields - {"version_policy"} if _value(edited, f) != _value(built, f))
    return changed, [f for f in changed if f in model_config.DERIVED]


def _value(cfg, field: str):
    desc = cfg.DESCRIPTOR.fields_by_name[field]
    if desc.label == desc.LABEL_REPEATED:
        return list(getattr(cfg, field)) if not model_config._is_map(desc) else dict(getattr(cfg, field))
    if desc.message_type is not None:
        return getattr(cfg, field) if cfg.HasField(field) else None
    return getattr(cfg, field)


def serve_of(cfg) -> str | list[int]:
    which = cfg.version_policy.WhichOneof("policy_choice")
    if which == "all":
        return "all"
    if which == "specific":
        return list(cfg.version_policy.specific.versions)
    return f"latest {cfg.version_policy.latest.num_versions if which == 'latest' else 1}"


def adopt(models: list[dict], name: str, check, dry_run: bool = False) -> list[str]:
    """Move the edit into the manifest; returns what was moved, one line each."""
    rec, role = owner(models, name)
    manifest = Path(rec["manifest"])
    published, staged = Path(L.MODELS, name, publish.CONFIG), Path(L.STAGED, name, publish.CONFIG)
    if not published.is_file() or not staged.is_file():
        raise UserError(f"{published} is not built and published yet", file=str(manifest), key=rec["key"],
                        fix=f"run doit first (doit publish:{name})")
    try:
        edited = model_config.parse(published.read_text())
    except Exception as e:  # protobuf's text-format parse error: the edit is not a valid config.pbtxt
        raise UserError(f"{published} is not a valid Triton config.pbtxt: {e}", file=str(published),
                        fix="correct the edit (Triton itself would refuse it), then run doit adopt-config again") from None
    built = model_config.parse(staged.read_text())
    changed, derived = edits(edited, built)
    if derived:
        raise UserError(f"{published} changes {', '.join(derived)}, which come from "
                        f"{'; '.join(model_config.DERIVED[f] for f in derived)}", file=str(published), key=rec["key"],
                        fix="change the model or its manifest keys instead (max_batch, formats, gpu_targets, versions) "
                            "and undo that part of the edit")
    state = publish.read_state(published.parent) or {}
    values: dict[tuple[str, ...], object] = {}
    lines = []
    for field in changed:
        value = model_config.as_dict(edited, [field]).get(field)  # None: the edit removed the field
        values[("config_overrides", role, field)] = value
        lines.append(f"{rec['key']}.config_overrides.{role}.{field}")
    serve = serve_of(edited)
    if serve != (state.get("pinned") or state.get("serve", "latest 1")):
        values[("versions", "serve")] = serve
        lines.append(f"{rec['key']}.versions.serve: {serve}")
    if not values:
        return []
    if not dry_run:
        edit.set_values(manifest, rec["key"], values, check)
    return lines
