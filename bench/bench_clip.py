"""MobileCLIP2-S2 encoders (untrained weights): export time and peak memory of each, and the no-op doit
with encoders in the manifest. One run, same machine; each export in its own process (peak RSS from
/usr/bin/time), the weights step done beforehand.
"""
from __future__ import annotations

import os
import subprocess
import time

from _common import DOIT, median_time, run, scratch_project


def main() -> None:
    proj = scratch_project()
    env = {**os.environ, "PIPELINE_CACHE": "off"}
    run(DOIT + ["manifest=manifests/smoke.yaml", "clip_weights:mobileclip2_s2"], proj)
    for role in ("image", "text"):
        task = f"encoder_onnx:mobileclip2_s2_{role}_encoder"
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "PEAK_KB %M"] + DOIT + ["manifest=manifests/smoke.yaml", task],
                           cwd=proj, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        assert p.returncode == 0, p.stdout + p.stderr
        peak = int(p.stderr.rsplit("PEAK_KB", 1)[1].split()[0])
        size = (proj / f"pytorch_models/mobileclip2_s2_{role}_encoder.onnx").stat().st_size
        print(f"{task}: {wall:6.1f} s (process incl. imports, export and the batch 1/8 check), "
              f"peak RSS {peak / 1024:.0f} MB, ONNX {size / 2**20:.0f} MB")
    run(DOIT + ["manifest=manifests/smoke.yaml"], proj)
    noop = median_time(DOIT + ["manifest=manifests/smoke.yaml"], proj)
    bare = proj.parent / "bare"
    bare.mkdir()
    (bare / "dodo.py").write_text("def task_hello():\n    return {'actions': None}\n")
    bare_t = median_time(DOIT, bare)
    print(f"no-op doit, smoke manifest with encoders: {noop * 1000:.0f} ms vs bare doit {bare_t * 1000:.0f} ms "
          f"({noop / bare_t:.2f}x)")


if __name__ == "__main__":
    main()
