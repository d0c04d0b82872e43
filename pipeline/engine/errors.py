"""User mistakes become one paragraph naming the file, the key and the fix — never a traceback."""
from __future__ import annotations

import sys
import textwrap


class UserError(Exception):
    """A mistake the user can fix. The message is the whole story: file, key, what is wrong, the fix."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None, fix: str | None = None):
        self.message, self.file, self.key, self.fix = message, file, key, fix
        super().__init__(message)

    def __str__(self) -> str:
        parts = [f"{self.file}:"] if self.file else []
        if self.key:
            parts.append(f"at '{self.key}':")
        parts.append(self.message.rstrip("."))
        text = " ".join(parts) + "."
        return text + (f" Fix: {self.fix.rstrip('.')}." if self.fix else "")

    @property
    def paragraph(self) -> str:
        return textwrap.fill(str(self), width=100, break_long_words=False, break_on_hyphens=False)


class UndeclaredRead(RuntimeError):
    """A builder read a parameter, input or output its step does not declare: a staleness hole (the
    value would not make the artifact stale, nor change its recipe). A bug of the pipeline, not the user's."""


def exit_with(error: UserError, code: int = 2) -> None:
    """Print the paragraph on stderr and leave with a non-zero status (used while loading dodo.py)."""
    sys.stderr.write(f"error: {error.paragraph}\n")
    raise SystemExit(code)
