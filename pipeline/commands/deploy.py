"""`doit deploy url=URL [NAME ...]` and `doit rollback NAME url=URL`: the repository's published versions into a
live Triton (serving/deploy.py). They read models/ and the server, not the manifest: nothing is built."""
from __future__ import annotations

import sys
from pathlib import Path

from doit.cmd_base import DoitCmdBase

from ..declarations import layout

opt_dry = {"name": "dry_run", "long": "dry-run", "type": bool, "default": False,
           "help": "say which folders would be loaded and which versions they would serve; change nothing"}
opt_timeout = {"name": "timeout", "long": "timeout", "type": float, "default": 120.0,
               "help": "seconds to wait for a load, for a polling server to pick a version up, for a probe answer"}
USAGE_FIX = "e.g. doit deploy url=http://localhost:8000 (or url=grpc://localhost:8001)"


class _ServingCommand(DoitCmdBase):
    """Loads dodo.py like every command (the project folder, this checkout's code), then reads models/ and the
    server; `url=` is a doit variable, as `manifest=` is."""
    doc_description = None

    def _run(self, pos_args, dry_run: bool, timeout: float) -> int:
        from doit import get_var

        from ..engine.errors import UserError

        self.dep_manager.close()
        url = get_var("url")
        try:
            if not url:
                raise UserError(f"doit {self.name} needs the server's URL", key="url", fix=USAGE_FIX)
            return self.serve(url, list(pos_args or []), dry_run, timeout)
        except UserError as e:
            e.file = e.file or f"doit {self.name}"
            sys.stderr.write(e.paragraph + "\n")
            return 1

    def say(self, line: str) -> None:
        self.outstream.write(line + "\n")
        self.outstream.flush()


class Deploy(_ServingCommand):
    name = "deploy"
    doc_purpose = "load the published versions into a live Triton (explicit or poll mode), probe them, roll back on failure"
    doc_usage = "url=http://HOST:PORT|grpc://HOST:PORT [NAME ...]"
    cmd_options = (opt_dry, opt_timeout)

    def _execute(self, pos_args=None, dry_run=False, timeout=120.0):  # doit passes exactly the declared options
        return self._run(pos_args, dry_run, timeout)

    def serve(self, url, names, dry_run, timeout):
        from ..serving.deploy import deploy

        return deploy(url, Path(layout.MODELS), names or None, dry_run, timeout, self.say)


class Rollback(_ServingCommand):
    name = "rollback"
    doc_purpose = "serve the previous published version of one folder again (pinned until a new version is published)"
    doc_usage = "NAME url=http://HOST:PORT|grpc://HOST:PORT"
    cmd_options = (opt_timeout,)

    def _execute(self, pos_args=None, timeout=120.0):
        return self._run(pos_args, False, timeout)

    def serve(self, url, names, dry_run, timeout):
        from ..engine.errors import UserError
        from ..serving.deploy import rollback

        if len(names) != 1:
            raise UserError("doit rollback takes one folder name", key="NAME",
                            fix="e.g. doit rollback yolov11_small_end2end url=http://localhost:8000")
        return rollback(url, Path(layout.MODELS), names[0], timeout, self.say)
