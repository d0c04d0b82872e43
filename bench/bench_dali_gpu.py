"""Track D's DALI model on a GPU, measured as a Triton deployment runs it (README "Track D" quotes this).

Needs a CUDA GPU and NVIDIA DALI (`pip install -e '.[dali]'`), and cupy or torch for a CUDA stream; never
runs in CI. `python bench/bench_dali_gpu.py [--out DIR]` prints one table and writes `dali_bench.json`.

What is measured, and why so:
* the served file: `model.dali` serialized from the pipeline definition (640 px, FP16 out, max_batch 64,
  the manifest's `dali:` knobs: the bytes the dali_pipeline step writes), deserialized the way Triton's
  DALI backend builds each instance (daliCreatePipeline: max_batch_size and num_threads from
  config.pbtxt, pipelined, asynchronous, prefetch queue 1; the legacy executor);
* per batch of 64: feed, run, wait for the outputs on a CUDA stream, outputs left on the GPU (an ensemble
  hands them to the next model there). Copying them to host memory is a second, separate figure;
* 1 and N instances at once: N pipelines in one process, one thread each (Triton's instances);
* 480p / 720p / 1080p / 4K, JPEG (q90, 4:2:0) and PNG, 8 synthetic photos each, cycled into batches;
* the ceiling: nvJPEG decode alone (same decoder arguments, threads, instances), measured the same way;
* correctness: the served pipeline on the GPU against its CPU twin (PNG within 1 grey level, JPEG within
  nvJPEG's recorded tolerance, image sizes identical), and against any `--extra` file.
Each figure runs in its own process with a timeout (a DALI pipeline waiting for input never returns).
`--pick-hw 0.65,0.8,1.0` first sweeps hw_decoder_load at 480p/1080p JPEG and takes the fastest at 1080p
for the table; `--extra NAME=FILE` adds another serialized pipeline (e.g. an older model.dali) as rows.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SIZES = {"480p": (480, 640), "720p": (720, 1280), "1080p": (1080, 1920), "4k": (2160, 3840)}
SETS = [f"{s}-{f}" for f in ("jpg", "png") for s in SIZES]
IMGSZ, DTYPE, BATCH = 640, "FP16", 64
CPU = os.environ.get("BENCH_DALI_DEVICE") == "cpu"  # --cpu: the CPU twin instead (checks the bench itself)
DEVICE = "cpu" if CPU else "gpu"


# ---------------------------------------------------------------- images
def photo(h: int, w: int, seed: int):
    """Something like a photo for a codec: smooth colour regions, edges, a little sensor noise."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 24), max(2, w // 24), 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(h // 20 + 1, h // 4 + 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (cv2.circle if rng.random() < 0.5 else lambda im, c, rr, col, t: cv2.rectangle(
            im, (c[0] - rr, c[1] - rr), (c[0] + rr, c[1] + rr), col, t))(img, (x, y), r, color, -1)
    noise = rng.integers(-4, 5, img.shape, dtype=np.int16)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def make_images(path: Path, per_set: int = 8) -> None:
    import cv2
    import numpy as np

    arrays = {}
    for name, (h, w) in SIZES.items():
        for i in range(per_set):
            img = photo(h, w, 1000 * len(arrays) + i)
            arrays[f"{name}-jpg-{i}"] = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].ravel()
            arrays[f"{name}-png-{i}"] = cv2.imencode(".png", img)[1].ravel()
    np.savez(path, **arrays)


def load_set(images: Path, name: str) -> list:
    import numpy as np

    with np.load(images) as z:
        encoded = [z[k] for k in sorted(z.files) if k.rsplit("-", 1)[0] == name]
    return (encoded * (BATCH // len(encoded) + 1))[:BATCH]


# ---------------------------------------------------------------- CUDA streams and the GPU's name
class Stream:
    """A CUDA stream to receive DALI's outputs on and wait for, as the backend does (cudaStreamSynchronize)."""

    def __init__(self):
        if CPU:
            self._s, self.ptr, self.via = None, None, "none (CPU)"
            return
        try:
            import cupy
            self._s = cupy.cuda.Stream(non_blocking=True)
            self.ptr, self.via = self._s.ptr, "cupy"
        except ImportError:
            import torch
            self._s = torch.cuda.Stream()
            self.ptr, self.via = self._s.cuda_stream, "torch"

    def sync(self) -> None:
        if self._s is not None:
            self._s.synchronize()


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


# ---------------------------------------------------------------- what runs in a worker process
def decode_only(d: dict) -> bytes:
    """The ceiling: nvJPEG decode alone, with the served pipeline's decoder arguments."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    from pipeline.tooling import dali_preprocess as D

    pipe = D.new_pipeline(d, DEVICE)
    with pipe:
        pipe.set_outputs(D.decode(fn.external_source(name=D.INPUT, dtype=types.UINT8, ndim=1), d, DEVICE))
    return pipe.serialize()


def deserialize(served: bytes, threads: int | None):
    """As Triton's DALI backend builds an instance (dali_backend src/dali_executor/dali_pipeline.h:
    daliCreatePipeline(max_batch_size, num_threads, device_id, separated 0, prefetch 1))."""
    from nvidia.dali import Pipeline

    kw = {"num_threads": threads} if threads else {}  # None: the serialized value (no config parameter)
    return Pipeline.deserialize(serialized_pipeline=served, batch_size=BATCH, device_id=None if CPU else 0,
                                exec_pipelined=True,
                                exec_async=True, exec_dynamic=False, prefetch_queue_depth=1, **kw)


def measure(pipes: list, batch: list, seconds: float, copy: bool) -> dict:
    """Images/s of len(pipes) instances fed the same batch at once, each in its own thread."""
    from pipeline.tooling import dali_preprocess as D

    streams = [Stream() for _ in pipes]

    def one(p, s):
        p.feed_input(D.INPUT, batch)
        # DALI 2.4 refuses run(stream) here ("asynchronous outputs require legacy execution model"); the legacy
        # executor's run() returns once the outputs are ready
        out = p.run()
        if copy:
            [o.as_cpu() for o in out if hasattr(o, "as_cpu")]  # to host memory (image_size is there already)
        s.sync()

    for p, s in zip(pipes, streams):
        for _ in range(2):
            one(p, s)
    gate, done = threading.Barrier(len(pipes) + 1), {}

    def loop(i, p, s):
        gate.wait()
        t0, n = time.perf_counter(), 0
        while n < 3 or time.perf_counter() - t0 < seconds:
            one(p, s)
            n += 1
        done[i] = (n, time.perf_counter())

    threads = [threading.Thread(target=loop, args=(i, p, s)) for i, (p, s) in enumerate(zip(pipes, streams))]
    [t.start() for t in threads]
    gate.wait()
    start = time.perf_counter()
    [t.join() for t in threads]
    wall = max(end for _, end in done.values()) - start
    batches = sum(n for n, _ in done.values())
    return {"images_per_s": round(batches * len(batch) / wall, 1), "batches": batches, "wall_s": round(wall, 3),
            "per_instance": [round(done[i][0] * len(batch) / (done[i][1] - start), 1) for i in sorted(done)],
            "stream": streams[0].via}


def worker(spec: dict) -> None:
    """One row: build max(instances) pipelines from the file, then each image set at each instance count;
    one JSON line per figure, printed as soon as it is measured."""
    served = Path(spec["file"]).read_bytes()
    pipes = [deserialize(served, spec["threads"]) for _ in range(max(spec["instances"]))]
    for name in spec["sets"]:
        batch = load_set(Path(spec["images"]), name)
        for n in spec["instances"]:
            r = measure(pipes[:n], batch, spec["seconds"], spec["copy"])
            print(json.dumps({"row": spec["row"], "set": name, "instances": n, **r}), flush=True)


def correctness(spec: dict) -> None:
    """The served pipeline (and each extra file) on the GPU against the CPU twin, image by image."""
    import numpy as np

    from pipeline.tooling import dali_preprocess as D

    sys.path.insert(0, str(REPO / "tests"))
    try:
        from test_dali import encoded_cases
        cases = {k: np.frombuffer(v, np.uint8) for k, v in encoded_cases().items()}
    except ImportError as e:  # pytest absent: the bench's own images only
        print(json.dumps({"note": f"tests' image cases not importable ({e})"}), flush=True)
        cases = {}
    for name in SETS:
        cases[f"bench-{name}"] = load_set(Path(spec["images"]), name)[0]
    names = list(cases)

    def run(p):
        out = [[] for _ in range(2)]
        for i in range(0, len(names), BATCH):
            chunk = [cases[n] for n in names[i:i + BATCH]]
            p.feed_input(D.INPUT, chunk)
            res = p.run()
            for k in range(2):
                r = res[k].as_cpu() if hasattr(res[k], "as_cpu") else res[k]
                out[k] += [np.array(r[j]).astype(np.float32) for j in range(len(chunk))]
        return out

    for dtype in ("FP16", "FP32"):
        d = {**spec["definition"], "dtype": dtype}
        gpu = run(deserialize(D.pipeline(d, DEVICE).serialize(), d["num_threads"]))
        twin = D.pipeline(d, "cpu", max_batch=BATCH)
        twin.build()
        cpu = run(twin)
        rows = {}
        for k, n in enumerate(names):
            diff = np.abs(gpu[0][k] - cpu[0][k]) * 255
            rows[n] = {"mean_grey": round(float(diff.mean()), 4), "max_grey": round(float(diff.max()), 2),
                       "image_size_equal": bool(np.array_equal(gpu[1][k], cpu[1][k]))}
        png = [v for n, v in rows.items() if n.endswith("png")]
        jpg = [v for n, v in rows.items() if n.endswith("jpg")]
        summary = {"png_max_grey": max(v["max_grey"] for v in png), "jpg_mean_grey_worst": max(v["mean_grey"] for v in jpg),
                   "jpg_max_grey": max(v["max_grey"] for v in jpg), "image_size_equal": all(v["image_size_equal"] for v in rows.values())}
        extras, outs = {}, {"served": gpu}
        for label, path in (spec["extras"].items() if dtype == DTYPE else ()):  # the extra files are FP16 ones
            outs[label] = run(deserialize(Path(path).read_bytes(), None))
        labels = list(outs)
        for i, x in enumerate(labels):
            for y in labels[i + 1:]:
                worst = max(float(np.abs(a - b).max()) * 255 for a, b in zip(outs[x][0], outs[y][0]))
                extras[f"{y} vs {x}"] = {"max_grey": round(worst, 3), "identical": all(
                    np.array_equal(a, b) for k in range(2) for a, b in zip(outs[x][k], outs[y][k]))}
        print(json.dumps({"correctness": dtype, "summary": summary, "extras": extras, "images": rows}), flush=True)


# ---------------------------------------------------------------- the parent: rows, processes, the table
def run_row(spec: dict, timeout: float, log) -> list[dict]:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        out, err, status = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, err, status = (e.stdout or b"").decode(), (e.stderr or b"").decode(), "timeout"
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    if status != 0:
        log(f"  {spec['row']}: {status}; {err.strip().splitlines()[-1] if err.strip() else ''}")
        lines.append({"row": spec["row"], "error": str(status), "stderr_tail": err[-2000:]})
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--threads", type=int, default=None, help="num_threads (default: the manifest's default)")
    ap.add_argument("--hw-load", type=float, default=None, help="hw_decoder_load (default: the manifest's default)")
    ap.add_argument("--instances", type=int, default=None, help="N (default: the manifest's dali.instances default)")
    ap.add_argument("--pick-hw", default="", help="comma-separated hw_decoder_load values to sweep first")
    ap.add_argument("--extra", action="append", default=[], help="NAME=FILE: another serialized pipeline")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per figure (at least 3 batches)")
    ap.add_argument("--timeout", type=float, default=180.0, help="per process")
    ap.add_argument("--deadline", type=float, default=3600.0, help="seconds for the whole bench: later rows skipped")
    ap.add_argument("--cpu", action="store_true", help="the CPU twin instead of the GPU (checks the bench itself)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--correctness", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(json.loads(a.worker))
    if a.correctness:
        return correctness(json.loads(a.correctness))

    if a.cpu and not CPU:  # the workers read it from the environment
        os.environ["BENCH_DALI_DEVICE"] = "cpu"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    import nvidia.dali

    from pipeline.tooling import dali_preprocess as D

    t_start = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "dali_bench.log", "a")

    def log(msg: str) -> None:
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    work = Path(tempfile.mkdtemp(prefix="dali-bench-"))
    images = work / "images.npz"
    make_images(images)
    threads = a.threads or D.NUM_THREADS
    n = a.instances or D.INSTANCES
    sets = a.sets.split(",")
    extras = dict(e.split("=", 1) for e in a.extra)
    result = {"gpu": gpu_name(), "dali": nvidia.dali.__version__, "cpus": os.cpu_count(), "batch": BATCH,
              "imgsz": IMGSZ, "dtype": DTYPE, "threads": threads, "instances": n, "rows": [], "sweep": []}
    log(f"GPU {result['gpu']}, DALI {result['dali']}, {result['cpus']} CPUs; batch {BATCH}, {IMGSZ} px {DTYPE}")

    def files(hw: float) -> tuple[dict, Path, Path]:
        d = D.definition(IMGSZ, DTYPE, BATCH, num_threads=threads, hw_decoder_load=hw)
        served, ceiling = work / f"served-{hw}.dali", work / f"decode-{hw}.dali"
        served.write_bytes(D.pipeline(d, DEVICE).serialize())
        ceiling.write_bytes(decode_only(d))
        return d, served, ceiling

    def row(label, file, sets_, instances, copy=False, thr=threads) -> list[dict]:
        if time.perf_counter() - t_start > a.deadline:
            log(f"  {label}: skipped (deadline)")
            return [{"row": label, "error": "skipped (deadline)"}]
        spec = {"row": label, "file": str(file), "threads": thr, "instances": instances, "sets": sets_,
                "images": str(images), "seconds": a.seconds, "copy": copy}
        lines = run_row(spec, a.timeout, log)
        for x in lines:
            if "images_per_s" in x:
                log(f"  {label:28s} {x['set']:10s} x{x['instances']}: {x['images_per_s']:8.0f} img/s")
        return lines

    hw = a.hw_load if a.hw_load is not None else D.HW_DECODER_LOAD
    if a.pick_hw:
        sweep_sets = ["480p-jpg", "1080p-jpg"]
        for value in [float(v) for v in a.pick_hw.split(",")]:
            _, served, ceiling = files(value)
            result["sweep"] += [{**x, "hw_decoder_load": value} for x in
                                row(f"served hw {value}", served, sweep_sets, sorted({1, n}))
                                + row(f"decode hw {value}", ceiling, sweep_sets, sorted({1, n}))]
        best = [x for x in result["sweep"] if x.get("set") == "1080p-jpg" and x.get("instances") == n
                and x["row"].startswith("served")]
        if best:
            hw = max(best, key=lambda x: x["images_per_s"])["hw_decoder_load"]
            log(f"picked hw_decoder_load {hw} (fastest served 1080p JPEG x{n})")
    result["hw_decoder_load"] = hw
    d, served, ceiling = files(hw)
    result["definition"] = d
    spec = {"definition": d, "images": str(images), "extras": extras}
    p = subprocess.run([sys.executable, __file__, "--correctness", json.dumps(spec)], capture_output=True, text=True,
                       timeout=a.timeout)
    result["correctness"] = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    for c in result["correctness"]:
        if "summary" in c:
            log(f"correctness {c['correctness']}: {json.dumps(c['summary'])} extras {json.dumps(c['extras'])}")
    if p.returncode:
        log("correctness failed: " + p.stderr[-1500:])
    label = f"served ({threads} thr, hw {hw})"
    result["rows"] += row(label, served, sets, sorted({1, n}))
    result["rows"] += row(f"decode only ({threads} thr, hw {hw})", ceiling, sets, sorted({1, n}))
    result["rows"] += row(label + " + copy to host", served, sets, [1], copy=True)
    for name, path in extras.items():
        result["rows"] += row(f"{name} (its own threads)", path, [s for s in sets if s.endswith("jpg")], sorted({1, n}),
                              thr=None)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "dali_bench.json").write_text(json.dumps(result, indent=1))
    log(table(result, sets))


def table(result: dict, sets: list[str]) -> str:
    """One line per (row, instances): images/s per set; the served rows also as a share of the ceiling."""
    cells = {(x["row"], x["instances"], x["set"]): x for x in result["rows"] if "images_per_s" in x}
    keys = sorted({(r, i) for r, i, _ in cells}, key=lambda k: ([x["row"] for x in result["rows"]].index(k[0]), k[1]))
    lines = [f"{result['gpu']} | DALI {result['dali']} | batch {result['batch']} | images/s, outputs on the GPU",
             f"{'':44s}" + "".join(f"{s:>11s}" for s in sets)]
    for r, i in keys:
        lines.append(f"{(r + f' x{i}'):44s}" + "".join(
            f"{cells[(r, i, s)]['images_per_s']:11.0f}" if (r, i, s) in cells else f"{'-':>11s}" for s in sets))
    served = [k for k in keys if k[0].startswith("served") and "copy" not in k[0]]
    ceiling = [k for k in keys if k[0].startswith("decode only")]
    for (r, i) in served:
        c = next((k for k in ceiling if k[1] == i), None)
        if c:
            lines.append(f"{('served / ceiling' + f' x{i}'):44s}" + "".join(
                f"{cells[(r, i, s)]['images_per_s'] / cells[(c[0], i, s)]['images_per_s']:11.0%}"
                if (r, i, s) in cells and (c[0], i, s) in cells else f"{'-':>11s}" for s in sets))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
