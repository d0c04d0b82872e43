"""doit's state file (.doit.json), kept whole: written atomically, and a damaged one never stops a build.

doit's own JSON backend rewrites the file in place (a killed run can leave half of it) and stops every
later run with a traceback when it cannot parse it. Here a damaged file is moved aside and the run
starts from an empty state: every task then runs, and each finds its artifacts recorded with the same
recipe (engine/runner.py) and keeps them, so nothing valid is rebuilt.
"""
from __future__ import annotations

import os
import sys
import time

from doit.dependency import JsonDB


_MISSING = object()


def _plain(value):
    """What the value reads back as from JSON, for comparing (tuples become lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class AtomicJsonDB(JsonDB):
    desc = "JSON, written atomically; a damaged file is set aside (triton-export-pipeline)"
    _dirty = False  # dump() writes only after a change

    def _load(self):
        try:
            with open(self.name) as f:
                data = self.codec.decode(f.read())
            if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
                return data
            problem = "it does not hold doit's task table"
        except ValueError as e:
            problem = f"it is not valid JSON ({str(e).splitlines()[0]})"
        except OSError as e:
            problem = f"it cannot be read ({e.strerror})"
        aside = f"{self.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            os.replace(self.name, aside)
            where = f"moved to {aside}"
        except OSError:
            where = "left in place"
        self._dirty = True  # written anew at the end of this run, whether or not it could be moved aside
        sys.stderr.write(f"warning: doit's state file {self.name} was damaged: {problem}; {where}. Every task "
                         "checks its artifacts against their records: valid ones are kept, the rest rebuilt.\n")
        return {}

    def set(self, task_id, dependency, value):
        # doit re-saves what it already has (e.g. tasks without dependencies, which run every time): only
        # a real change makes the file dirty (JSON reads back lists where doit has tuples)
        if self._db.get(task_id, {}).get(dependency, _MISSING) != _plain(value):
            self._dirty = True
            super().set(task_id, dependency, value)

    def remove(self, task_id):
        self._dirty = True
        super().remove(task_id)

    def remove_all(self):
        self._dirty = True
        super().remove_all()

    def dump(self):
        """Written only when something changed: a no-op run leaves the file (and its mtime) alone."""
        if not self._dirty and os.path.exists(self.name):
            return
        tmp = f"{self.name}.tmp-{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                f.write(self.codec.encode(self._db))
            os.replace(tmp, self.name)
        except OSError as e:  # disk full: the previous state stays whole; records still tell what is built
            if os.path.exists(tmp):
                os.unlink(tmp)
            sys.stderr.write(f"warning: doit's state could not be saved to {self.name} ({e.strerror}); the next "
                             "run checks artifacts against their records\n")
