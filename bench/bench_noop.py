"""No-op `doit` on the smoke manifest vs bare doit startup; `doit list` growth with 1/10/100 models.

Ratios measured in one run, same machine: no-op vs bare as medians of 21 alternating runs (same
background load for both); list timings as medians of 7 (after one warm-up).
"""
from __future__ import annotations

from _common import DOIT, interleaved, median_time, run, scratch_project


def main() -> None:
    proj = scratch_project()
    run(DOIT + ["manifest=manifests/smoke.yaml"], proj)  # the real build, once
    bare = proj.parent / "bare"
    bare.mkdir()
    (bare / "dodo.py").write_text("def task_hello():\n    return {'actions': None}\n")
    bare_t, noop = interleaved((DOIT, bare), (DOIT + ["manifest=manifests/smoke.yaml"], proj))
    print(f"bare doit startup            {bare_t * 1000:7.1f} ms")
    print(f"no-op doit (smoke manifest)  {noop * 1000:7.1f} ms   ratio {noop / bare_t:.2f}x  (goal <= 1.2x)")

    rows = []
    for n in (1, 10, 100):
        models = "".join(f"  m{i:03d}: {{arch: yolo11n, formats: [onnx]}}\n" for i in range(n))
        (proj / f"manifests/gen{n}.yaml").write_text("models:\n" + models)
        first = run(DOIT + ["list", "--all", f"manifest=manifests/gen{n}.yaml"], proj)  # validates (pydantic)
        cached = median_time(DOIT + ["list", "--all", f"manifest=manifests/gen{n}.yaml"], proj)
        rows.append((n, first, cached))
    print("doit list --all   models  first (validate)  cached   per model (cached)")
    for n, first, cached in rows:
        print(f"                  {n:6d}  {first * 1000:10.1f} ms  {cached * 1000:7.1f} ms  "
              f"{(cached - bare_t) / n * 1000:6.2f} ms")
    print(f"100 models: {rows[-1][2]:.3f} s cached, {rows[-1][1]:.3f} s first (goal < 1 s); "
          f"growth 1->100: {rows[-1][2] / rows[0][2]:.2f}x")


if __name__ == "__main__":
    main()
