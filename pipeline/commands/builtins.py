"""`doit builtins`: the built-in models of every detection family, with their default settings."""
from __future__ import annotations

import json

from doit.cmd_base import DoitCmdBase

from .specs import opt_json


class Builtins(DoitCmdBase):
    doc_purpose = "list the built-in models (manifest `builtins:`) of every detection family and their settings"
    doc_usage = ""
    doc_description = None
    cmd_options = (opt_json,)

    def _execute(self, pos_args=None, as_json=False):
        # a DoitCmdBase: loading dodo.py first makes sure this checkout's registry is the one listed
        from ..declarations.families import builtins
        from ..declarations.manifest.schema import Settings

        self.dep_manager.close()
        d = Settings()
        rows = [{"key": key, "family": family.name, "triton_name": b.name, "checkpoint": b.file,
                 "max_batch": b.max_batch, "topk": 300, "imgsz": d.imgsz, "precision": d.precision, "iou": d.iou,
                 "conf": d.conf, "nms_free": family.default_nms_free, "url": family.download_url(b.file)}
                for key, (family, b) in builtins().items()]
        if as_json:
            self.outstream.write(json.dumps(rows, indent=1) + "\n")
            return 0
        for r in rows:
            self.outstream.write(f"{r['key']:8s} {r['family']:8s} {r['triton_name']:16s} {r['checkpoint']:12s} "
                                 f"max_batch {r['max_batch']:3d}  topk {r['topk']}  {r['imgsz']} px  {r['precision']}  "
                                 f"iou {r['iou']}  conf {r['conf']}  nms_free {str(r['nms_free']).lower()}\n")
        return 0
