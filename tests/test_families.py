"""YOLOv8, YOLO26 and YOLOv10 as declared families, both heads where the family has two: every format serves
the same interface as YOLO11's, and its detections are Ultralytics' own predict with the same head selected.

One project, built once: detectors made to detect (tests/helpers/detecting.py), formats onnx, onnx_end2end
and trt_end2end (its FP16 graphs: no TensorRT here). `nms_free: true` serves the one-to-one head (top-k,
no NMS; Ultralytics' predict(nms=False)); false the one-to-many head + EfficientNMS_TRT (predict's default).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.detecting import make_detecting_checkpoint
from helpers.project import REPORTS, make_project

pytestmark = pytest.mark.slow

IMGSZ, MAX_BATCH, TOPK = 256, 4, 100
# name -> (architecture, nms_free in the manifest (None: the family's default), the head that serves)
MODELS = {"v8": ("yolov8n", None, "anchors"), "y26": ("yolo26n", None, "anchors"),
          "y26nf": ("yolo26n", True, "topk"), "v10": ("yolov10n", None, "topk"), "v10nms": ("yolov10n", False, "anchors")}
CONF, IOU = 0.25, 0.7


@pytest.fixture(scope="module")
def built(tmp_path_factory, yolo_env):
    d = tmp_path_factory.mktemp("families")
    proj = make_project(d / "proj")
    lines = []
    for i, (name, (arch, nms_free, _)) in enumerate(MODELS.items()):
        pt = make_detecting_checkpoint(d / f"{name}.pt", ["car", "person", "bike"], imgsz=IMGSZ, seed=i, arch=arch)
        extra = "" if nms_free is None else f", nms_free: {str(nms_free).lower()}"
        lines.append(f"  {name}: {{pt_file: {pt}{extra}}}\n")
    proj.write("manifests/m.yaml", f"defaults: {{imgsz: {IMGSZ}, max_batch: {MAX_BATCH}, topk: {TOPK}, conf: {CONF}, "
                                   f"iou: {IOU}, formats: [onnx, onnx_end2end, trt_end2end]}}\nmodels:\n" + "".join(lines))
    run = proj.doit("manifest=manifests/m.yaml")
    assert run.rc == 0, run.text
    proj.ckpt = {name: d / f"{name}.pt" for name in MODELS}
    return proj


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    """BGR images of several shapes (the letterbox pads and resizes) of uniform noise: what the detectors were
    normalised on (tests/helpers/detecting.py), so they detect tens of boxes in each."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, [(256, 256), (200, 320), (300, 180), (512, 384)][i % 4] + (3,), dtype=np.uint8)
            for i in range(n)]


def matched(got, want, tol: float = 1.0) -> int:
    """How many of `want`'s detections have their own in `got` (same class, every coordinate within tol px)."""
    (gb, gc), (wb, wc) = got, want
    used, found = set(), 0
    for box, cls in zip(wb, wc):
        d = np.abs(gb - box).max(axis=1) if len(gb) else np.array([])
        free = [j for j in np.argsort(d) if j not in used and gc[j] == cls and d[j] <= tol]
        if free:
            used.add(free[0])
            found += 1
    return found


def end2end_detections(graph, family, imgs, normalize: bool = True):
    """The End2End graph (plain onnxruntime; EfficientNMS_TRT through the NumPy reference) on letterboxed
    images, boxes mapped back to each original image (the box-mapping model's reference)."""
    from pipeline.builders.boxes_onnx import letterbox_params, reference
    from pipeline.tooling.efficient_nms import cpu_session

    session = cpu_session(graph)
    x = np.stack([family.letterbox(i, IMGSZ) for i in imgs])
    if session.get_inputs()[0].type == "tensor(float16)":
        x = x.astype(np.float16)
    n, b, _, c = session.run(None, {"images": x})
    infos = np.asarray([letterbox_params(*i.shape[:2], IMGSZ) for i in imgs], np.float32)
    boxes = reference(b, infos, float(IMGSZ) if normalize else 1.0)
    return [(boxes[k, :int(n[k, 0])], c[k, :int(n[k, 0])].astype(int)) for k in range(len(imgs))]


@pytest.mark.parametrize("name", MODELS)
def test_every_format_detects_what_ultralytics_predict_detects_with_the_same_head(built, name):
    from pipeline.declarations.families import for_checkpoint

    family = for_checkpoint(built.ckpt[name])
    arch, _, head = MODELS[name]
    assert family.name == {"yolov8n": "yolov8", "yolo26n": "yolo26", "yolov10n": "yolov10"}[arch]
    raw_rec = json.loads(built.path(f"models/{name}/1/model.onnx.verification.json").read_text())
    assert raw_rec["params"]["head"]["kind"] == head and raw_rec["verification"]["passed"]
    head_param = raw_rec["params"]["head"]
    predict = family.predictor(str(built.ckpt[name]), head_param)
    raw = built.path(f"models/{name}/1/model.onnx")
    e2e = built.path(f"models/{name}_end2end/1/model.onnx")
    fp16 = built.path(f"pytorch_models/{name}_end2end.fp16.onnx")
    import onnxruntime as ort

    raw_session = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
    counts = {"predict": 0, "end2end": 0, "raw + client": 0, "fp16 end2end (2 px)": 0}
    for batch in (1, 3, MAX_BATCH):  # partial batches included
        imgs = images(batch, seed=batch)
        want = predict(imgs, imgsz=IMGSZ, conf=CONF, iou=IOU, max_det=TOPK)
        got = end2end_detections(e2e, family, imgs)
        out = raw_session.run(None, {"images": np.stack([family.letterbox(i, IMGSZ) for i in imgs])})[0]
        client = family.client_detections(out, [i.shape for i in imgs], imgsz=IMGSZ, conf=CONF, iou=IOU, max_det=TOPK,
                                          head=head_param)
        half = end2end_detections(fp16, family, imgs)
        for g, c, h, w in zip(got, client, half, want):
            counts["predict"] += len(w[0])
            counts["end2end"] += matched(g, w)
            counts["raw + client"] += matched(c, w)
            counts["fp16 end2end (2 px)"] += matched(h, w, tol=2.0)
            if head == "topk":  # no NMS: nothing for a tie to flip, every detection is predict's
                assert len(g[0]) == len(w[0]) and matched(g, w) == len(w[0])
    REPORTS.setdefault("families: detections matched to Ultralytics' predict (same head)", {})[name] = counts
    assert counts["predict"] >= 20, "the model must detect for this test to mean anything"
    assert counts["end2end"] >= 0.95 * counts["predict"] and counts["raw + client"] >= 0.95 * counts["predict"]
    assert counts["fp16 end2end (2 px)"] >= 0.8 * counts["predict"]


def test_the_nms_free_end2end_graph_is_the_raw_graph_plus_a_tail_and_runs_in_plain_onnxruntime(built):
    import onnx
    import onnxruntime as ort

    from pipeline.builders.topk_end2end_onnx import reference
    from pipeline.tooling.onnx_tools import appended_head

    for name in ("y26nf", "v10"):
        raw_path, e2e_path = built.path(f"models/{name}/1/model.onnx"), built.path(f"models/{name}_end2end/1/model.onnx")
        e2e = onnx.load(str(e2e_path))
        assert not [n for n in e2e.graph.node if n.op_type == "EfficientNMS_TRT"]
        head = appended_head(e2e, onnx.load(str(raw_path)))
        assert {n.op_type for n in head.graph.node} <= {"Slice", "Greater", "Cast", "Mul", "Squeeze", "ReduceSum"}
        x = np.random.default_rng(1).random((2, 3, IMGSZ, IMGSZ), np.float32)
        whole = ort.InferenceSession(str(e2e_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})
        raw_out = ort.InferenceSession(str(raw_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
        for g, w in zip(whole, reference(raw_out, conf=CONF, normalize_boxes=True, imgsz=IMGSZ)):
            assert np.array_equal(g, w), name
        assert [o.name for o in e2e.graph.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
        record = json.loads(built.path(f"models/{name}_end2end/1/model.onnx.verification.json").read_text())
        assert record["verification"]["score_threshold_0"]["identical"] and record["verification"]["nms"].startswith("none")
        config = built.path(f"models/{name}_end2end/config.pbtxt").read_text()
        assert "execution_accelerators" not in config  # plain onnxruntime serves it, CPU and GPU alike
    assert "execution_accelerators" in built.path("models/y26_end2end/config.pbtxt").read_text()


def test_raw_graphs_have_the_served_shapes(built):
    from pipeline.tooling.onnx_tools import graph_io

    for name, (_, _, head) in MODELS.items():
        (_, _, dims), = graph_io(built.path(f"models/{name}/1/model.onnx"))[1]
        assert dims == ([TOPK, 6] if head == "topk" else [4 + 3, 21 * (IMGSZ // 32) ** 2]), name


@pytest.mark.triton
def test_triton_loads_the_new_folders_strictly_and_serves_them(built, tmp_path):
    import shutil

    import tritonclient.http as http

    from helpers.triton_harness import TritonServer
    from pipeline.tooling.efficient_nms import cpu_session

    served = tmp_path / "models"
    names = [f"{n}{s}" for n in MODELS for s in ("", "_end2end")]
    for name in names:
        shutil.copytree(built.path(f"models/{name}"), served / name)
        cfg = served / name / "config.pbtxt"
        cfg.write_text(cfg.read_text().replace("KIND_GPU", "KIND_CPU"))
    x = np.random.default_rng(2).random((3, 3, IMGSZ, IMGSZ), np.float32)
    with TritonServer(served, tmp_path) as server:
        client = http.InferenceServerClient(f"127.0.0.1:{server.http}")
        try:
            for name in names:
                ok, why = server.load(name)
                assert ok, f"Triton refused {name}: {why}"
                inp = http.InferInput("images", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                meta = client.get_model_metadata(name)
                result = client.infer(name, [inp])
                local = cpu_session(built.path(f"models/{name}/1/model.onnx")).run(None, {"images": x})
                for out, want in zip(meta["outputs"], local):
                    np.testing.assert_allclose(result.as_numpy(out["name"]), want, rtol=1e-5, atol=1e-5)
        finally:
            client.close()


def test_compare_tracks_works_for_every_family(built, tmp_path):
    import cv2

    for i, img in enumerate(images(6, seed=9)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
    for name in ("v8", "y26nf", "v10nms"):
        run = built.doit("compare-tracks", "--batch", "2", "--images", str(tmp_path), "manifest=manifests/m.yaml", name)
        assert run.rc == 0, run.text
        rows = {r["track"]: r for r in json.loads(built.path(".pipeline/tracks/tracks.json").read_text())["rows"]}
        assert rows["C: End2End ONNX"]["agreement"] >= 0.95 and rows["raw ONNX + client NMS"]["agreement"] >= 0.95, rows


def test_builtins_of_every_family(project):
    run = project.doit("builtins", "--json")
    rows = {r["key"]: r for r in json.loads(run.out)}
    assert {"nano", "small", "yolo26n", "yolo26x", "yolov8s", "yolov10b"} <= set(rows)
    assert (rows["yolo26s"]["triton_name"], rows["yolo26s"]["checkpoint"], rows["yolo26s"]["max_batch"]) == \
        ("yolo26_small", "yolo26s.pt", 64)
    assert rows["yolov10n"]["nms_free"] is True and rows["yolo26n"]["nms_free"] is False
    project.write("manifests/m.yaml", "builtins: [yolo26n]\ndefaults: {formats: [onnx]}\n")
    run = project.doit("manifest=manifests/m.yaml")
    assert run.rc != 0 and "could not download yolo26n.pt" in " ".join(run.text.split())
    assert "Traceback" not in run.text


@pytest.mark.parametrize("text,must", [
    ("models:\n  a: {arch: yolo11n, nms_free: true}\n", ["models.a.nms_free", "YOLO11 model has no such head"]),
    ("models:\n  a: {arch: yolo26n, nms_free: true, topk: 900, imgsz: 128}\n", ["models.a.topk", "336 candidates"]),
    ("models:\n  a: {arch: yolov8n, family: yolo26}\n", ["models.a.family", "YOLOv8 architecture"]),
    ("models:\n  a: {pt_file: x.pt, family: yolo12}\n", ["models.a.family", "yolo11, yolov8, yolo26, yolov10"]),
])
def test_family_and_head_mistakes_are_one_paragraph(project, text, must):
    project.write("x.pt", "not read")
    project.write("manifests/m.yaml", text.replace("x.pt", str(project.path("x.pt"))))
    run = project.doit("list", "manifest=manifests/m.yaml")
    flat = " ".join(run.text.split())
    assert run.rc != 0 and "Traceback" not in run.text
    for m in must:
        assert m in flat, (m, flat)
