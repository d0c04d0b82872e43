"""User mistakes become one paragraph naming the file, the key and the fix — never a traceback."""
from __future__ import annotations

import sys
import textwrap


class UserError(Exception):
    """A mistake the user can fix. The message is the whole story: file, key, what is wrong, the fix."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None, fix: str | None = None):
        self.file, self.key, self.fix = file, key, fix
        parts = []
        if file:
            parts.append(f"{file}:")
        if key:
            parts.append(f"at '{key}':")
        parts.append(message.rstrip("."))
        text = " ".join(parts) + "."
        if fix:
            text += f" Fix: {fix.rstrip('.')}."
        super().__init__(text)

    @property
    def paragraph(self) -> str:
        return textwrap.fill(str(self), width=100, break_long_words=False, break_on_hyphens=False)


def exit_with(error: UserError, code: int = 2) -> None:
    """Print the paragraph on stderr and leave with a non-zero status (used while loading dodo.py)."""
    sys.stderr.write(f"error: {error.paragraph}\n")
    raise SystemExit(code)
