"""Track D on a real GPU: the served model.dali (nvJPEG + GPU resize) against its CPU twin, and throughput.

Needs a CUDA GPU and NVIDIA DALI (`pip install -e '.[dali]'`); never runs in CI. Run once on an H200 by
hand (README "Track D" has its numbers): `python bench/bench_dali_gpu.py DIR`, where DIR holds
`model.FP32.dali`, `model.FP16.dali` (the pipeline definition at 640 px, batch 64, serialized by
`pipeline.tooling.dali_preprocess`) and `images.npz` (encoded test images; `hd*` keys: 1080p JPEGs for
the throughput). Prints per-dtype GPU and CPU-twin images/s, and per-image mean/max differences.
Throughput is synchronous execution (no prefetching), batch 64, decode included.
"""
import json, os, sys, time
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIR = sys.argv[1] if len(sys.argv) > 1 else ".gpu"
import nvidia.dali as dali
from nvidia.dali import Pipeline
from pipeline.tooling import dali_preprocess as D

out = {"dali": dali.__version__}
images = dict(np.load(f"{DIR}/images.npz"))
cases = {k: v for k, v in images.items() if not k.startswith("hd")}
hd = [v for k, v in images.items() if k.startswith("hd")]

def run(pipe, encoded, batch):
    res_i, res_l = [], []
    for i in range(0, len(encoded), batch):
        chunk = encoded[i:i + batch]
        pipe.feed_input(D.INPUT, chunk)
        a, b = pipe.run()
        a = a.as_cpu() if hasattr(a, "as_cpu") else a
        b = b.as_cpu() if hasattr(b, "as_cpu") else b
        res_i += [np.array(a[j]) for j in range(len(chunk))]
        res_l += [np.array(b[j]) for j in range(len(chunk))]
    return res_i, res_l

for dtype in ("FP32", "FP16"):
    served = open(f"{DIR}/model.{dtype}.dali", "rb").read()
    assert served == D.detection_pipeline(640, dtype, 64, "gpu").serialize(), "not the definition"
    gpu = Pipeline.deserialize(serialized_pipeline=served, device_id=0, prefetch_queue_depth=1,
                               exec_async=False, exec_pipelined=False)
    cpu = D.detection_pipeline(640, dtype, 64, "cpu"); cpu.build()
    names = list(cases)
    enc = [cases[n] for n in names]
    gi, gl = run(gpu, enc, 64)
    ci, cl = run(cpu, enc, 64)
    per = {}
    for n, a, b, la, lb in zip(names, gi, ci, gl, cl):
        d = np.abs(a.astype(np.float32) - b.astype(np.float32)) * 255
        per[n] = {"dtype": str(a.dtype), "shape": list(a.shape), "mean_grey": round(float(d.mean()), 4),
                  "max_grey": round(float(d.max()), 2), "letterbox_equal": bool(np.array_equal(la, lb))}
    batch = (hd * 8)[:64]
    run(gpu, batch, 64)  # warm-up
    t = time.perf_counter(); k = 20
    for _ in range(k):
        run(gpu, batch, 64)
    gpu_ips = 64 * k / (time.perf_counter() - t)
    t = time.perf_counter(); run(cpu, batch, 64); cpu_ips = 64 / (time.perf_counter() - t)
    out[dtype] = {"per_image": per, "gpu_images_per_s_1080p_jpeg_batch64": round(gpu_ips, 1),
                  "cpu_twin_images_per_s_same": round(cpu_ips, 1)}
    print(dtype, json.dumps({k: v for k, v in out[dtype].items() if k != "per_image"}))
    print("  worst mean", max(v["mean_grey"] for v in per.values()), "worst max", max(v["max_grey"] for v in per.values()),
          "letterbox equal", all(v["letterbox_equal"] for v in per.values()))
json.dump(out, open(os.path.join(os.environ.get("OUT", DIR), "gpu_proof.json"), "w"), indent=1)
