"""The doit reporter of every building call: doit's console output, unchanged, and — when every task was up
to date — the snapshot that lets the same call be replayed (noop.py); a successful run skips the
interpreter's teardown (quick_exit.py)."""
from __future__ import annotations

from doit.reporter import ConsoleReporter

from . import noop, paths, quick_exit
from .noop import stat


def _watched(task) -> list[str] | None:
    """Every path the task's up-to-date answer reads, or None when a check of unknown reads is among them."""
    read = [*task.file_dep, *task.targets]
    for check, _args, _kwargs in task.uptodate:
        if check is True or check is None:
            continue
        watched = getattr(check, "watched", None)
        if watched is None:
            return None
        read += watched()
    return read


class SnapshotReporter(ConsoleReporter):
    """doit's console output, unchanged; a call in which every task was up to date leaves a snapshot, and
    a successful one skips the interpreter's teardown (quick_exit.py)."""

    desc = "console output; a no-op call leaves a snapshot for the next one (triton-export-pipeline)"

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self._text: list[str] = []
        self._seen: list = []
        self._clean = noop.current_key() is not None
        self._before: dict[str, list[int]] = {}

    def write(self, text):
        self._text.append(text)
        super().write(text)

    def initialize(self, tasks, selected_tasks):
        super().initialize(tasks, selected_tasks)
        self._before = _stamps(tasks.values(), strict=False) or {}

    def skip_uptodate(self, task):
        self._seen.append(task)
        super().skip_uptodate(task)

    def execute_task(self, task):
        if task.actions:  # a group task (no actions) "runs" without doing anything
            self._clean = False
        self._seen.append(task)
        super().execute_task(task)

    def add_failure(self, task, fail):
        self._clean = False
        super().add_failure(task, fail)

    def skip_ignore(self, task):
        self._clean = False
        super().skip_ignore(task)

    def runtime_error(self, msg):
        self._clean = False
        super().runtime_error(msg)

    def complete_run(self):
        super().complete_run()
        if not self.failures and not self.runtime_errors:
            quick_exit.succeeded()
        if not self._clean or self.failures or self.runtime_errors or not self._seen:
            return
        after = _stamps(self._seen, strict=True)  # the tasks this call decided on, and the state file
        if after is None or any(self._before.get(p) != s for p, s in after.items()):
            noop.explain("a file changed while doit was checking, or a check reads what it does not declare: "
                         "no snapshot")
            return
        noop.save(noop.current_key(), {"files": after, "out": "".join(self._text), "parts": noop.parts()})


def _stamps(tasks, strict: bool) -> dict[str, list[int]] | None:
    """Stats of the tasks' watched paths and doit's state file; None (strict) when a task's reads are unknown."""
    read = dict.fromkeys([paths.DOIT_STATE])
    for task in tasks:
        watched = _watched(task)
        if watched is None:
            if strict:
                return None
            continue
        read.update(dict.fromkeys(watched))
    return {p: stat(p) for p in read}
