"""No-op `doit` vs bare doit startup (smoke manifest, 100 models); `doit list --all` with 1/10/100/1000 models.

Ratios measured in one run, same machine: no-op vs bare as medians of alternating runs (same background
load for both); list timings as medians of 7 (after one warm-up). A no-op is measured both ways: repeated
(answered from the last no-op's snapshot, pipeline/engine/noop.py) and with every task checked by doit
(`--reporter=console` bypasses the snapshot: what the first no-op after a change costs).
"""
from __future__ import annotations

from _common import DOIT, interleaved, median_time, run, run_out, scratch_project

CHECKED = ["--reporter=console"]  # doit's own reporter: no snapshot is read or written, doit checks every task


def main() -> None:
    proj = scratch_project()
    run(DOIT + ["manifest=manifests/smoke.yaml"], proj)  # the real build, once
    bare = proj.parent / "bare"
    bare.mkdir()
    (bare / "dodo.py").write_text("def task_hello():\n    return {'actions': None}\n")
    bare_t, noop = interleaved((DOIT, bare), (DOIT + ["manifest=manifests/smoke.yaml"], proj))
    _, checked = interleaved((DOIT, bare), (DOIT + CHECKED + ["manifest=manifests/smoke.yaml"], proj))
    print(f"bare doit startup            {bare_t * 1000:7.1f} ms")
    print(f"no-op doit (smoke manifest)  {noop * 1000:7.1f} ms   ratio {noop / bare_t:.2f}x  (goal <= 1.2x)")
    print(f"  every task checked by doit {checked * 1000:7.1f} ms   ratio {checked / bare_t:.2f}x")

    rows = []
    for n in (1, 10, 100, 1000):
        models = "".join(f"  m{i:04d}: {{arch: yolo11n, formats: [onnx]}}\n" for i in range(n))
        (proj / f"manifests/gen{n}.yaml").write_text("defaults: {imgsz: 64}\nmodels:\n" + models)
        first = run(DOIT + ["list", "--all", f"manifest=manifests/gen{n}.yaml"], proj)  # validates (pydantic)
        cached = median_time(DOIT + ["list", "--all", f"manifest=manifests/gen{n}.yaml"], proj)
        rows.append((n, first, cached))
    print("doit list --all   models  first (validate)  cached   per model (cached)")
    for n, first, cached in rows:
        print(f"                  {n:6d}  {first * 1000:10.1f} ms  {cached * 1000:7.1f} ms  "
              f"{(cached - bare_t) / n * 1000:6.2f} ms")
    print(f"1000 models: {rows[-1][2]:.3f} s cached (goal < 1 s); growth 1->1000: {rows[-1][2] / rows[0][2]:.2f}x")

    # A no-op run over 100 built models (identical untrained models: built once, the other 99 restored
    # from the artifact cache, which is what makes building them here quick).
    run(DOIT + ["manifest=manifests/gen100.yaml"], proj)
    tasks = len([line for line in run_out(DOIT + ["list", "--all", "manifest=manifests/gen100.yaml"], proj)
                 .splitlines() if line.strip()])
    # doit's own floor: the same number of plain tasks (a file_dep, a target, up to date), nothing of ours
    floor = proj.parent / "floor"
    floor.mkdir()
    for i in range(tasks):
        (floor / f"in{i}").write_text("x")
        (floor / f"out{i}").write_text("x")
    (floor / "dodo.py").write_text(
        "DOIT_CONFIG = {'backend': 'json', 'dep_file': '.doit.json', 'verbosity': 2}\n"
        "def task_t():\n"
        f"    for i in range({tasks}):\n"
        "        yield {'name': f't{i}', 'file_dep': [f'in{i}'], 'targets': [f'out{i}'], 'actions': [lambda: True],"
        " 'uptodate': [True]}\n")
    run(DOIT, floor)
    bare_t, noop100 = interleaved((DOIT, bare), (DOIT + ["manifest=manifests/gen100.yaml"], proj), repeat=11)
    _, checked100 = interleaved((DOIT, bare), (DOIT + CHECKED + ["manifest=manifests/gen100.yaml"], proj), repeat=11)
    _, floor_t = interleaved((DOIT, bare), (DOIT, floor), repeat=11)
    print(f"no-op doit, 100 models       {noop100 * 1000:7.1f} ms   ratio {noop100 / bare_t:.2f}x to bare doit "
          f"{bare_t * 1000:.1f} ms (goal <= 1.2x)")
    print(f"  every task checked by doit {checked100 * 1000:7.1f} ms   ratio {checked100 / bare_t:.2f}x")
    print(f"doit's own floor: {tasks} plain up-to-date tasks {floor_t * 1000:7.1f} ms   ratio {floor_t / bare_t:.2f}x; "
          f"ours per task above that floor, every task checked: {(checked100 - floor_t) / tasks * 1e6:.0f} us")


if __name__ == "__main__":
    main()
