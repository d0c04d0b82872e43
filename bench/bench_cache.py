"""Cold build vs a fresh clone with a warm artifact cache (smoke manifest); cache overhead on a no-op run.

Ratios measured in one run, same machine. The warm run is a new project folder (new paths, no models/,
no doit state) pointed at the cache the cold run filled.
"""
from __future__ import annotations

import os
import subprocess
import time

from _common import DOIT, median_time, scratch_project


def timed(cmd, cwd, env):
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stdout + p.stderr)
    return time.perf_counter() - t, p.stdout


def main() -> None:
    cold_proj, warm_proj = scratch_project(), scratch_project()
    cache = cold_proj.parent / "cache"
    env = {"PIPELINE_CACHE": str(cache)}
    cold, _ = timed(DOIT + ["manifest=manifests/smoke.yaml"], cold_proj, env)
    warm, out = timed(DOIT + ["manifest=manifests/smoke.yaml"], warm_proj, env)
    restored = out.count("restored from the artifact cache")
    print(f"cold build (smoke manifest)            {cold:7.2f} s")
    print(f"fresh clone, warm cache ({restored} restored)  {warm:7.2f} s   speed-up {cold / warm:.1f}x (goal >= 20x)")
    with_cache = median_time(DOIT + ["manifest=manifests/smoke.yaml"], warm_proj)
    os.environ["PIPELINE_CACHE"] = "off"
    without = median_time(DOIT + ["manifest=manifests/smoke.yaml"], warm_proj)
    print(f"no-op doit: cache on {with_cache * 1000:.0f} ms, off {without * 1000:.0f} ms "
          f"(overhead {100 * (with_cache / without - 1):+.1f} %, goal <= 10 %)")


if __name__ == "__main__":
    main()
