"""Torch checkpoints read through torch's weights-only unpickler: loading a file never runs its code.

A pickle can call anything (`os.system`, `eval`, ...) while it loads, and torch's full unpickler lets it.
Here a model family names the globals a legitimate checkpoint of its kind may reference (`allow(name)`
returns the object to use, or None); torch lists the globals a file references without executing it, and
any outside the allowlist is refused by name before anything is unpickled. The load itself then runs in
torch's restricted unpickler with exactly those globals. `trust=True` (the manifest's
`trust_checkpoint: true`) is the explicit way out: torch's full unpickler, for files the user trusts.

Every way a file can be broken (empty, truncated anywhere, not a zip, a directory, unreadable, a symlink
loop) ends in one paragraph naming the file, never a traceback.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Any, Callable

from ..engine.errors import UserError

_UNSUPPORTED = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")  # torch: "Unsupported global: GLOBAL posix.system ..."


def trust_fix(key: str) -> str:
    entry = key.removesuffix(".pt_file").removesuffix(".weights")  # the model's entry in the manifest
    return (f"if you made this file yourself or trust where it came from, set 'trust_checkpoint: true' under "
            f"'{entry}' in the manifest (the file is then loaded with torch's full unpickler, which runs any code it "
            "contains); otherwise re-save the weights with Ultralytics' model.save() or obtain them from a trusted "
            "source")


def check_file(path: Path, key: str, what: str, fix: str) -> None:
    """The file exists, is a regular readable file and is not empty (stat and open: nothing is parsed)."""
    try:
        st = os.stat(path)  # follows links: a loop raises ELOOP
    except OSError as e:
        why = "is a symlink loop" if e.errno == errno.ELOOP else f"cannot be read ({e.strerror})"
        raise UserError(f"the {what} '{path}' {why}", key=key, fix=fix) from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"the {what} '{path}' is a directory, not a file", key=key, fix=fix)
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"the {what} '{path}' is not a regular file", key=key, fix=fix)
    if st.st_size == 0:
        raise UserError(f"the {what} '{path}' is empty (0 bytes)", key=key, fix=fix)
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise UserError(f"the {what} '{path}' cannot be read ({e.strerror})", key=key,
                        fix=f"make the file readable by this user (e.g. chmod a+r), or {fix}") from None


def _forbidden(path: Path, names: list[str], key: str, what: str) -> UserError:
    shown = ", ".join(f"'{n}'" for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return UserError(f"the {what} '{path}' references {shown}, which a legitimate {what} never contains; it was "
                     "refused before anything in it ran (loading it with torch's full unpickler could run "
                     "arbitrary code)", key=key, fix=trust_fix(key))


def load(path: Path, allow: Callable[[str], Any], *, key: str, what: str, fix: str, trust: bool = False) -> Any:
    """torch.load of `path` on the CPU: weights-only with `allow`'s globals, or the full unpickler when
    trusted. Any failure to read or parse the file -> UserError (fix: `fix`)."""
    import pickle

    import torch

    check_file(path, key, what, fix)
    entries: list = []
    if not trust:
        try:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except ValueError:  # not a zip checkpoint (legacy format or garbage): the restricted load decides
            needed = []
        except Exception as e:  # a zip torch cannot read: truncated, damaged central directory, ...
            raise _unreadable(path, e, key, what, fix) from None
        resolved = {name: allow(name) for name in needed}
        refused = sorted(name for name, obj in resolved.items() if obj is None)
        if refused:
            raise _forbidden(path, refused, key, what)
        entries = [(obj, name) for name, obj in resolved.items()]
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: the paragraph says what matters
            warnings.simplefilter("ignore")
            if trust:
                return torch.load(str(path), map_location="cpu", weights_only=False)
            with torch.serialization.safe_globals(entries):
                return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if trust:
            raise _unreadable(path, e, key, what, fix) from None
        raise refusal(path, e, key=key, what=what, fix=fix) from None
    except UserError:
        raise
    except Exception as e:  # torch's zip reader: OSError, RuntimeError, EOFError, ... for damaged files
        raise _unreadable(path, e, key, what, fix) from None


def refusal(path: Path, e: BaseException, *, key: str, what: str, fix: str) -> UserError:
    """The weights-only unpickler said no: a global outside the allowlist (named), or damage."""
    found = _UNSUPPORTED.search(str(e))
    return _forbidden(path, [found.group(1)], key, what) if found else _unreadable(path, e, key, what, fix)


def _unreadable(path: Path, e: BaseException, key: str, what: str, fix: str) -> UserError:
    first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]  # torch's first sentence says it
    detail = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return UserError(f"the {what} '{path}' is not a loadable checkpoint: it is damaged, truncated or not a torch "
                     f"file ({detail})", key=key, fix=fix)


def referenced(path: Path) -> tuple[set[str], set[str]] | None:
    """(the globals, the short strings) a torch zip checkpoint's pickle references, read without running it
    (nor importing torch): what a model family recognizes a checkpoint by. None when the file is not a
    readable torch zip (loading it says why, in one paragraph)."""
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
            data = z.read(name)
        globals_, strings, memo, recent = set(), set(), {}, []
        for op, arg, _ in pickletools.genops(data):
            kind = op.name
            if kind in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                strings.add(arg)
                recent.append(arg)
            elif kind in ("BINGET", "LONG_BINGET", "GET"):
                recent.append(memo.get(arg))
            elif kind in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[arg] = recent[-1] if recent else None
            elif kind == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif kind == "GLOBAL":
                globals_.add(arg.replace(" ", "."))
            elif kind == "STACK_GLOBAL":  # module and name: the two strings pushed last
                if len(recent) > 1 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                    globals_.add(f"{recent[-2]}.{recent[-1]}")
                recent.append(None)
            else:
                recent.append(None)
        return globals_, strings
    except Exception:  # not a zip, no pickle, a truncated stream: the loader's paragraph says what
        return None
