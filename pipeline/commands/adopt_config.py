"""`doit adopt-config NAME ...`: hand edits of models/NAME/config.pbtxt moved into the manifest."""
from __future__ import annotations

import sys

from doit.cmd_base import DoitCmdBase

from ..declarations import layout

opt_dry = {"name": "dry_run", "long": "dry-run", "type": bool, "default": False,
           "help": "say what would be written into the manifest, write nothing"}


class AdoptConfig(DoitCmdBase):
    doc_purpose = ("move hand edits of the published config.pbtxt of Triton folder NAME into the manifest "
                   "(config_overrides), kept by every rebuild")
    doc_usage = "NAME ..."
    doc_description = None
    cmd_options = (opt_dry,)

    def _execute(self, pos_args=None, dry_run=False):
        from ..engine.errors import UserError
        from ..serving.adopt import adopt
        from .checks import manifest_check

        dag = self.loader.namespace["DAG"]
        self.dep_manager.close()
        if not pos_args:
            sys.stderr.write("doit adopt-config: name the Triton folder(s) whose config.pbtxt you edited, e.g. "
                             "doit adopt-config yolov11_small_end2end\n")
            return 2
        try:
            for name in pos_args:
                lines = adopt(dag.models, name, manifest_check(dag.models), dry_run)
                verb = "would move" if dry_run else "moved"
                if not lines:
                    self.outstream.write(f"{layout.MODELS}/{name}/config.pbtxt: no hand edit to adopt\n")
                for line in lines:
                    self.outstream.write(f"{name}: {verb} into the manifest: {line}\n")
                if lines and not dry_run:
                    self.outstream.write(f"{name}: run doit: the next version of {layout.MODELS}/{name}/ is built with it\n")
        except UserError as e:
            e.file = e.file or "doit adopt-config"
            sys.stderr.write(e.paragraph + "\n")
            return 1
        return 0
