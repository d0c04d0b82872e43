"""What commands that write a manifest check before replacing it: the edited text resolves like any manifest."""
from __future__ import annotations

import os
from pathlib import Path


def manifest_check(models: list[dict]):
    """check(text): resolve the edited manifest (written beside the real one: relative paths mean the same);
    a problem is reported at the real file."""
    from ..declarations.manifest.records import resolve
    from ..engine.errors import UserError

    manifest = Path(models[0]["manifest"])

    def check(text: str) -> None:
        tmp = manifest.with_name(f".{manifest.stem}.check-{os.getpid()}{manifest.suffix}")
        tmp.write_text(text)
        try:
            resolve(tmp, Path("."))
        except UserError as e:
            e.file = str(manifest)
            raise
        finally:
            tmp.unlink(missing_ok=True)
    return check
