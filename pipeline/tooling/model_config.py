"""Triton's ModelConfig protobuf (tritonclient's copy): the manifest's `config_overrides` merged into a
generated config, and the fields an override may not touch.

An override's top-level field replaces the generated one whole (`dynamic_batching: {...}` is the whole
dynamic_batching block, as in config.pbtxt): a repeated field such as instance_group is never appended to.
"""
from __future__ import annotations

# Derived from the model file (its real I/O), the folder name, its platform or its plans, or set through
# their own manifest keys: an override of them would make a config that lies about the model.
DERIVED = {"name": "the folder name", "platform": "the format", "backend": "the format",
           "input": "the model file's real inputs", "output": "the model file's real outputs",
           "ensemble_scheduling": "the ensemble's members", "version_policy": "the manifest key versions.serve",
           "cc_model_filenames": "the manifest key gpu_targets", "default_model_filename": "the format",
           "max_batch_size": "the manifest key max_batch (the graph's batch axis is built for it)"}


def parse(text: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(text, mc.ModelConfig())


def to_text(cfg) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(cfg)


def as_dict(cfg, fields: list[str] | None = None) -> dict:
    """A config (or some of its top-level fields) as overrides are written: config.pbtxt's field names, and
    64-bit integers as numbers (protobuf's JSON form writes them as strings)."""
    from google.protobuf import json_format

    out = json_format.MessageToDict(cfg, preserving_proto_field_name=True)
    out = _numbers(out, cfg.DESCRIPTOR)
    return {k: v for k, v in out.items() if fields is None or k in fields}


_INT64 = {3, 4, 6, 16, 18}  # FieldDescriptor types INT64, UINT64, FIXED64, SFIXED64, SINT64


def _numbers(value, descriptor):
    if isinstance(value, dict) and descriptor is not None:
        out = {}
        for k, v in value.items():
            field = descriptor.fields_by_name.get(k)
            if field is None:
                out[k] = v
            elif _is_map(field):
                inner = field.message_type.fields_by_name["value"]
                out[k] = {mk: _field(mv, inner) for mk, mv in v.items()}
            else:
                out[k] = _field(v, field)
        return out
    return value


def _field(value, field):
    if isinstance(value, list):
        return [_field(v, field) for v in value]
    if field.message_type is not None:
        return _numbers(value, field.message_type)
    if field.type in _INT64 and isinstance(value, str):
        return int(value)
    return value


def problem(overrides: dict) -> tuple[str, str] | None:
    """(field, what is wrong) for the first bad field of an override, or None."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2 as mc

    for field, value in overrides.items():
        if field in DERIVED:
            return field, f"'{field}' comes from {DERIVED[field]}, it cannot be overridden"
        try:
            json_format.ParseDict({field: value}, mc.ModelConfig())
        except json_format.ParseError as e:
            return field, f"not a Triton ModelConfig field value: {e}"
    return None


def merge(cfg, overrides: dict | None):
    """The config with each overridden top-level field replaced (validated: see problem())."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2 as mc

    if not overrides:
        return cfg
    bad = problem(overrides)
    if bad:
        raise ValueError(f"config_overrides.{bad[0]}: {bad[1]}")
    given = json_format.ParseDict(overrides, mc.ModelConfig())
    fields = {**{f.json_name: f for f in mc.ModelConfig.DESCRIPTOR.fields},
              **{f.name: f for f in mc.ModelConfig.DESCRIPTOR.fields}}
    for field in overrides:
        if not _is_map(fields[field]):  # a map (parameters) gains or changes the keys given
            cfg.ClearField(fields[field].name)
    cfg.MergeFrom(given)  # only the overridden fields are set in `given`: each replaces the cleared one
    return cfg


def _is_map(field) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def type_name(data_type: int) -> str:
    """"TYPE_FP32" for a DataType value."""
    from tritonclient.grpc import model_config_pb2 as mc

    return mc.DataType.Name(data_type)
