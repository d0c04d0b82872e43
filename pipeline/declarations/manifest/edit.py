"""Writing into a user's manifest (`doit adopt-config`): a round trip through ruamel.yaml, so comments, order
and quoting stay as the user wrote them; checked by resolving the edited text before anything is replaced; the
previous file kept in .pipeline/manifest-backups/; replaced by one rename."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

from ...engine import paths

BACKUPS = paths.MANIFEST_BACKUPS


def set_values(manifest: Path, entry_key: str, values: dict[tuple[str, ...], object], check) -> Path:
    """Set values (by key path under the entry, e.g. ("config_overrides", "onnx_end2end", "dynamic_batching"))
    in the manifest entry `entry_key` ("models.x", "builtins.small", "encoders.y"). `check(text)` must accept the
    edited manifest (it raises a UserError otherwise: nothing is written). Returns the backup's path."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()
    yaml.preserve_quotes = True
    original = manifest.read_text()
    doc = yaml.load(original)
    section, name = entry_key.split(".", 1)
    if doc.get(section) is None:
        doc[section] = CommentedMap()
    if isinstance(doc[section], list):  # `builtins: [small, nano]`: a mapping can hold settings
        doc[section] = CommentedMap((item, None) for item in doc[section])
    if doc[section].get(name) is None:
        doc[section][name] = CommentedMap()
    for path, value in values.items():
        node = doc[section][name]
        for part in path[:-1]:
            if node.get(part) is None:
                node[part] = CommentedMap()
            node = node[part]
        node[path[-1]] = value
    out = io.StringIO()
    yaml.dump(doc, out)
    text = out.getvalue()
    check(text)
    backup = Path(BACKUPS) / f"{manifest.name}.{time.strftime('%Y%m%dT%H%M%S')}"
    backup.parent.mkdir(parents=True, exist_ok=True)
    backup.write_text(original)
    tmp = manifest.with_name(f".{manifest.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, manifest)
    return backup
