"""Track D: DALI preprocessing + End2End in a Triton ensemble — encoded images in, original-pixel boxes out.

* The preprocessing definition's CPU twin against Ultralytics' LetterBox + /255 on many image kinds.
* Builds with and without DALI (installed beside the test venv, `dali_site`) and without TensorRT.
* The real Triton (strict config validation) loads the ensembles; stand-in backends run the DALI CPU twin
  (after checking the served `model.dali` is the definition byte for byte) and the ONNX through
  onnxruntime; the boxes must match `YOLO(pt).predict(image)` within 1 px, one request at a time and
  concurrently.
The served GPU pipeline itself runs only on a GPU: see README "Track D" for its runs on a GPU (by hand).
"""
from __future__ import annotations

import concurrent.futures
import io
import shutil
import sys

import numpy as np
import pytest

from helpers.project import Project, make_project
from pipeline.tooling.dali_preprocess import SHAPE_TYPE

pytestmark = pytest.mark.slow

IMGSZ = 256
CONF, IOU = 0.25, 0.7  # Ultralytics' defaults


def _smooth(h, w, seed, channels=3):
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), max(1.0, min(h, w) / 60))


def scene(h, w, seed, shapes=6, background=None):
    """Shapes on a smooth background: something a detecting model fires on."""
    import cv2

    img = _smooth(h, w, seed) if background is None else np.full((h, w, 3), background, np.uint8)
    rng = np.random.default_rng(seed + 100)
    for _ in range(shapes):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(max(2, min(h, w) // 12), max(3, min(h, w) // 4)))
        cv2.rectangle(img, (x - r, y - r), (x + r, y + r), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    return img


def encoded_cases() -> dict[str, bytes]:
    """PNG and JPEG of many shapes, grayscale, alpha, and an EXIF-rotated JPEG."""
    import cv2
    from PIL import Image

    out = {}
    shapes = {"landscape": (480, 640), "portrait": (640, 360), "tiny": (7, 300), "huge": (3000, 4000),
              "odd-padding": (333, 251), "upscaled": (100, 120), "square": (256, 256)}
    for name, (h, w) in shapes.items():
        img = scene(h, w, len(out))
        out[f"{name}.png"] = cv2.imencode(".png", img)[1].tobytes()
        out[f"{name}.jpg"] = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    out["grayscale.png"] = cv2.imencode(".png", scene(300, 420, 7)[..., 0])[1].tobytes()
    out["grayscale.jpg"] = cv2.imencode(".jpg", scene(300, 420, 8)[..., 0])[1].tobytes()
    rgba = np.dstack([scene(240, 320, 9), np.linspace(0, 255, 240 * 320).reshape(240, 320).astype(np.uint8)])
    out["alpha.png"] = cv2.imencode(".png", rgba)[1].tobytes()
    pil = Image.fromarray(scene(200, 360, 10)[..., ::-1])
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: the decoded image is 360 x 200
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    out["exif-rotated.jpg"] = buf.getvalue()
    return out


def ultralytics_input(data: bytes):
    """What Ultralytics' predictor feeds the model for an image file with these bytes (cv2.imread's
    decoding, EXIF applied, alpha dropped; LetterBox; RGB, CHW, /255)."""
    import cv2

    from pipeline.families.yolo11 import FAMILY

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return FAMILY.letterbox(bgr, IMGSZ), bgr.shape[:2]


@pytest.fixture(scope="module")
def twin(dali_site):
    sys.path.append(str(dali_site))  # after the venv: only what the venv lacks comes from there
    from pipeline.tooling import dali_preprocess as D

    pipe = D.detection_pipeline(IMGSZ, "FP32", 4, "cpu")
    pipe.build()
    return pipe


def test_the_cpu_twin_letterboxes_like_ultralytics(twin):
    from pipeline.tooling.dali_preprocess import run_twin

    cases = encoded_cases()
    images, sizes = run_twin(twin, [np.frombuffer(b, np.uint8) for b in cases.values()])
    report = {}
    for (name, data), got, size in zip(cases.items(), images, sizes):
        want, (h, w) = ultralytics_input(data)
        assert got.shape == want.shape == (3, IMGSZ, IMGSZ), name
        diff = np.abs(got - want) * 255
        report[name] = round(float(diff.mean()), 3)
        assert diff.mean() <= 1.0, (name, diff.mean(), diff.max())
        assert list(size) == [h, w], (name, size)  # the original size, EXIF orientation applied
    assert report["exif-rotated.jpg"] <= 1.0
    from helpers.project import REPORTS
    REPORTS["DALI CPU twin vs Ultralytics LetterBox: mean |diff| in grey levels"] = report


def test_the_encoder_branch_preprocesses_like_open_clip(dali_site):
    """Track E's second branch against open_clip's own transform for MobileCLIP2 (torchvision on PIL)."""
    import open_clip
    from PIL import Image, ImageOps

    sys.path.append(str(dali_site))
    from pipeline.tooling.dali_preprocess import run_twin
    from pipeline.tooling import dali_preprocess as D

    clip = {"size": 256, "dtype": "FP32", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}  # MobileCLIP2-S2's
    pipe = D.pipeline(D.definition(IMGSZ, "FP32", 4, clip), "cpu")
    pipe.build()
    cases = encoded_cases()
    got = run_twin(pipe, [np.frombuffer(b, np.uint8) for b in cases.values()])[2]
    tf = open_clip.image_transform(256, is_train=False, mean=clip["mean"], std=clip["std"], interpolation="bilinear",
                                   resize_mode="shortest")
    report = {}
    for (name, data), x in zip(cases.items(), got):
        want = tf(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")).numpy()
        diff = np.abs(x - want) * 255
        report[name] = round(float(diff.mean()), 3)
        assert diff.mean() <= 0.5 and diff.max() <= 1.01, (name, diff.mean(), diff.max())
    from helpers.project import REPORTS
    REPORTS["Track E encoder branch vs open_clip's transform: mean |diff| in grey levels"] = report


def shapes_pipeline(dali_site, make, batch):
    """A CPU pipeline fed [H, W, C] shapes in image_shape()'s dtype straight into `make`."""
    sys.path.append(str(dali_site))
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import Pipeline

    pipe = Pipeline(batch_size=batch, num_threads=2, device_id=None, prefetch_queue_depth=1, exec_async=False,
                    exec_pipelined=False)
    with pipe:
        pipe.set_outputs(*make(fn.external_source(name="shape", dtype=getattr(types, SHAPE_TYPE), ndim=1)))
    pipe.build()
    return pipe


def shape_grid():
    """Every (h, w) up to 400 x 400, and 40,000 random ones up to 12,000 px (4K and beyond, slivers)."""
    rng = np.random.default_rng(0)
    small = np.stack(np.meshgrid(np.arange(1, 401), np.arange(1, 401)), -1).reshape(-1, 2)
    return np.concatenate([small, rng.integers(1, 12001, (40000, 2))]).astype(np.float64)


SHAPE_NUMPY = {"FLOAT": np.float32, "FLOAT64": np.float64}[SHAPE_TYPE]  # image_shape()'s dtype


def run_shapes(pipe, hw, batch):
    out = None
    for i in range(0, len(hw), batch):
        chunk = hw[i:i + batch]
        pipe.feed_input("shape", [np.array([h, w, 3.0], SHAPE_NUMPY) for h, w in chunk])
        res = [np.array(r.as_tensor()) for r in pipe.run()]
        out = res if out is None else [np.concatenate([a, b]) for a, b in zip(out, res)]
    return out


def python_letterbox(hw, imgsz):
    """Ultralytics' LetterBox arithmetic, vectorized: new (w, h) and the padding (left, top)."""
    h, w = hw[:, 0], hw[:, 1]
    r = np.minimum(imgsz / h, imgsz / w)
    nw, nh = np.maximum(np.round(w * r), 1), np.maximum(np.round(h * r), 1)  # numpy rounds half to even, as Python
    return nw, nh, np.round((imgsz - nw) / 2 - 0.1), np.round((imgsz - nh) / 2 - 0.1)


@pytest.mark.parametrize("imgsz", [640, 256, 1280])
def test_the_letterbox_sizes_are_pythons_for_every_shape(dali_site, imgsz):
    """The in-graph size arithmetic (few operators: they run per batch) against Ultralytics' LetterBox
    arithmetic in Python, exactly, on 200,000 shapes: the new size (the resize argument) and the image size
    the postprocess graph reads."""
    from pipeline.tooling import dali_preprocess as D

    batch = 10000
    hw = shape_grid()
    size, image_size = run_shapes(shapes_pipeline(dali_site, lambda s: D.letterbox_args(s, imgsz), batch), hw, batch)
    nw, nh, _, _ = python_letterbox(hw, imgsz)
    assert np.array_equal(size, np.stack([nh, nw], 1).astype(np.float32))
    assert np.array_equal(image_size, hw.astype(np.float32))
    for k in np.random.default_rng(1).integers(0, len(hw), 300):  # and Python's own round, int() on a sample
        hh, ww = int(hw[k, 0]), int(hw[k, 1])
        rr = min(imgsz / hh, imgsz / ww)
        assert list(size[k]) == [max(round(hh * rr), 1), max(round(ww * rr), 1)]


@pytest.mark.parametrize("imgsz,normalize,opset", [(640, True, 17), (256, False, 14), (1280, True, 20)])
def test_the_box_mapping_is_scale_boxes_exactly_for_every_shape(imgsz, normalize, opset):
    """The postprocess graph computes the letterbox from the image size (float64, ONNX Round half to even)
    and maps boxes back: bit for bit what Ultralytics' arithmetic (letterbox_params, scale_boxes, clip)
    gives, on the 200,000 shapes, boxes inside, on and beyond the letterbox's edges; at the manifest's
    lowest, default and highest opset (ReduceMax takes its axes as an input from opset 18)."""
    import onnxruntime as ort

    from pipeline.builders import boxes_onnx

    hw = shape_grid()
    scale = float(imgsz) if normalize else 1.0
    model = boxes_onnx.graph(4, imgsz, scale, opset)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    nw, nh, left, top = python_letterbox(hw, imgsz)
    info = np.stack([nw / hw[:, 1], nh / hw[:, 0], left, top, hw[:, 1], hw[:, 0]], 1).astype(np.float32)
    rng = np.random.default_rng(2)
    boxes = (rng.uniform(-0.1, 1.1, (len(hw), 4, 4)) * (imgsz / scale)).astype(np.float32)
    got = session.run(None, {"boxes": boxes, "image_size": hw.astype(np.float32)})[0]
    assert np.array_equal(got, boxes_onnx.reference(boxes, info, scale))
    for k in rng.integers(0, len(hw), 300):  # letterbox_params (Python's own round) on a sample
        assert np.array_equal(info[k], np.float32(boxes_onnx.letterbox_params(int(hw[k, 0]), int(hw[k, 1]), imgsz)))


@pytest.mark.parametrize("dtype", ["FP16", "FP32"])
def test_the_padding_is_ultralytics_bit_for_bit_for_every_offset(dali_site, dtype):
    """Padding and normalizing are one operator (a centred out-of-bounds crop): its output against the resized
    image padded in numpy — 114 at Ultralytics' round(d/2 - 0.1) offsets — then x * (1/255) in FP32, exactly,
    for every padding parity and width from 0 to S - 1 on both axes."""
    sys.path.append(str(dali_site))
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import Pipeline

    from pipeline.tooling import dali_preprocess as D

    S, batch = 48, 256
    pipe = Pipeline(batch_size=batch, num_threads=2, device_id=None, prefetch_queue_depth=1, exec_async=False,
                    exec_pipelined=False)
    with pipe:
        x = fn.external_source(name="x", dtype=types.UINT8, ndim=3, layout="HWC")
        shape = fn.cast(x.shape(), dtype=getattr(types, D.SHAPE_TYPE))
        size, _ = D.letterbox_args(shape, S)
        resized = fn.resize(x, size=size, antialias=False, interp_type=types.INTERP_LINEAR)
        pipe.set_outputs(D.letterbox(shape, x, S, dtype)[0], resized)
    pipe.build()
    rng = np.random.default_rng(3)
    shapes = [(S, w) for w in range(1, S + 1)] + [(h, S) for h in range(1, S)] + [
        (int(a), int(b)) for a, b in rng.integers(1, 400, (300, 2))]
    one = np.float32(1) / np.float32(255)
    for i in range(0, len(shapes), batch):
        chunk = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes[i:i + batch]]
        n = len(chunk)
        pipe.feed_input("x", chunk + chunk[:1] * (batch - n))
        got, res = pipe.run()
        for j in range(n):
            r = np.array(res[j])
            top, left = round((S - r.shape[0]) / 2 - 0.1), round((S - r.shape[1]) / 2 - 0.1)
            want = np.full((S, S, 3), D.PAD_VALUE, np.uint8)
            want[top:top + r.shape[0], left:left + r.shape[1]] = r
            want = (want.astype(np.float32) * one).astype(np.float16 if dtype == "FP16" else np.float32)
            assert np.array_equal(np.array(got[j]), want.transpose(2, 0, 1)), (shapes[i + j], r.shape)


def test_the_encoder_crop_sizes_are_torchvisions_for_every_shape(dali_site):
    """Track E's size arithmetic against torchvision's (resize of the shorter side to `size`, the longer to
    int(size * long / short); crop at int(round((side - size) / 2.0))), exactly."""
    from pipeline.tooling import dali_preprocess as D

    batch, crop = 10000, 256
    hw = shape_grid()
    size, start = run_shapes(shapes_pipeline(dali_site, lambda s: D.clip_args(s, crop), batch), hw, batch)
    for k in np.random.default_rng(2).integers(0, len(hw), 3000):
        h, w = int(hw[k, 0]), int(hw[k, 1])
        short, long = min(h, w), max(h, w)
        nh, nw = (crop, int(crop * long / short)) if h <= w else (int(crop * long / short), crop)
        assert list(size[k]) == [nh, nw], (h, w)
        assert list(start[k]) == [int(round((nw - crop) / 2.0)), int(round((nh - crop) / 2.0))], (h, w)


MANIFEST = """\
defaults: {{imgsz: {imgsz}, max_batch: 4, conf: {conf}, iou: {iou}, topk: 100, normalize_boxes: {norm}}}
models:
  det: {{pt_file: ../det.pt, formats: [{formats}]}}
"""
SEARCH = """\
encoders:
  clip: {weights: untrained, formats: [onnx], image_max_batch: 2, text_max_batch: 2}
ensembles:
  search: {detector: det, encoder: clip}
"""


NMS_FREE = "  nf: {pt_file: ../nf.pt, nms_free: true, formats: [dali_end2end]}\n"  # YOLO26, one-to-one head


def project(tmp, formats, ckpt, norm="true", search=False, nms_free=None) -> Project:
    proj = make_project(tmp / "proj")
    shutil.copy(ckpt, tmp / "proj" / "det.pt")
    if nms_free:
        shutil.copy(nms_free, tmp / "proj" / "nf.pt")
    proj.write("manifests/m.yaml", MANIFEST.format(imgsz=IMGSZ, formats=formats, norm=norm, conf=CONF, iou=IOU)
               + (NMS_FREE if nms_free else "") + (SEARCH if search else ""))
    return proj


@pytest.fixture(scope="module")
def detector(tmp_path_factory, yolo_env):
    from helpers.detecting import make_detecting_checkpoint

    d = tmp_path_factory.mktemp("det")
    # a moderate bias: a few to a few dozen boxes per image, not a carpet of overlapping ones
    return make_detecting_checkpoint(d / "single.pt", ["defect"], imgsz=IMGSZ, seed=3, logit_bias=3.0)


@pytest.fixture(scope="module")
def nms_free_detector(tmp_path_factory, yolo_env):
    from helpers.detecting import make_detecting_checkpoint

    d = tmp_path_factory.mktemp("nf")
    return make_detecting_checkpoint(d / "nf.pt", ["defect"], imgsz=IMGSZ, seed=5, logit_bias=3.0, arch="yolo26n")


@pytest.fixture(scope="module")
def built(tmp_path_factory, detector, nms_free_detector, dali_site):
    """DALI beside the venv, no TensorRT: dali_end2end (of a YOLO11 and of a YOLO26 served NMS-free) and the
    Track E ensemble build; dali_trt_end2end is skipped with its plan."""
    proj = project(tmp_path_factory.mktemp("dali"), "dali_end2end, dali_trt_end2end", detector, search=True,
                   nms_free=nms_free_detector)
    env = {"PYTHONPATH": str(dali_site), "PIPELINE_CACHE": "off"}
    run = proj.doit("manifest=manifests/m.yaml", env=env)
    assert run.rc == 0, run.text
    return proj, run, env


def test_without_tensorrt_the_onnx_ensemble_builds_and_the_plan_ensemble_is_skipped(built):
    proj, run, env = built
    assert "skipping 1 TensorRT plan(s) and 1 folder(s) made of them (dali_trt_end2end)" in run.err, run.err
    for folder in ("det_dali_end2end", "det_dali_end2end_preprocess", "det_dali_end2end_postprocess", "det_end2end",
                   "search", "search_preprocess", "search_postprocess", "clip_image_encoder_onnx"):
        assert proj.path(f"models/{folder}/config.pbtxt").is_file(), folder
    assert proj.path("models/det_dali_end2end/1/ENSEMBLE.txt").is_file()
    assert not list(proj.path("models").glob("det_dali_trt_end2end*")) and not proj.path("models/det_trt_end2end").exists()
    # the FP16 chain needs no TensorRT to be written and checked: DALI gives the plan's FP16 input
    more = proj.doit("manifest=manifests/m.yaml", "config:det_dali_trt_end2end", "config:det_dali_trt_end2end_preprocess",
                     env=env)
    assert more.rc == 0, more.text
    pre = proj.path("pytorch_models/staged/det_dali_trt_end2end_preprocess/config.pbtxt").read_text()  # not published
    assert "TYPE_FP16" in pre and 'backend: "dali"' in pre and "allow_ragged_batch: true" in pre


def dali_knobs(proj, folder, dali_site):
    """(num_threads, hw_decoder_load) of the served model.dali, which must be its recorded definition byte for
    byte; config.pbtxt's num_threads parameter and (instance count, kind)."""
    import json

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    sys.path.append(str(dali_site))
    from pipeline.tooling import dali_preprocess as D

    from pipeline.engine.publish import versions_of

    served = f"models/{folder}/{versions_of(proj.path(f'models/{folder}'))[-1]}"  # the newest published version
    d = json.loads(proj.path(f"{served}/model.dali.verification.json").read_text())["verification"]["definition"]
    assert proj.path(f"{served}/model.dali").read_bytes() == D.pipeline(d, "gpu").serialize()
    cfg = text_format.Parse(proj.path(f"models/{folder}/config.pbtxt").read_text(), mc.ModelConfig())
    return (d["num_threads"], d["hw_decoder_load"], cfg.parameters["num_threads"].string_value,
            [(g.count, mc.ModelInstanceGroup.Kind.Name(g.kind)) for g in cfg.instance_group])


def test_the_dali_knobs_are_the_dali_models_recipe(built, tmp_path, dali_site):
    """The manifest's `dali:` block reaches model.dali (threads, hardware decoder share) and config.pbtxt (the
    backend's num_threads parameter, the DALI model's own instance count); changing it rebuilds the DALI
    models and what reads their record, and the instance count only their configs."""
    proj0, _, env = built
    proj = Project(tmp_path / "proj")
    shutil.copytree(proj0.root, proj.root, symlinks=True)
    from pipeline.tooling import dali_preprocess as D

    pres = ("det_dali_end2end_preprocess", "nf_dali_end2end_preprocess", "search_preprocess")
    threads, hw, count = D.NUM_THREADS, D.HW_DECODER_LOAD, D.INSTANCES
    for folder in pres:  # the defaults on GPU instances, whatever the models' own count (1)
        assert dali_knobs(proj, folder, dali_site) == (threads, hw, str(threads), [(count, "KIND_GPU")]), folder
    manifest = proj.path("manifests/m.yaml")
    text = manifest.read_text()
    old = {f: proj.path(f"models/{f}/1/model.dali").read_bytes() for f in pres}
    manifest.write_text(text.replace("defaults: {", "defaults: {dali: {num_threads: 3, hw_decoder_load: 1.0}, "))
    run = proj.doit("manifest=manifests/m.yaml", env=env)
    ensembles = ("det_dali_end2end", "nf_dali_end2end", "search")  # their config reads the DALI record's I/O
    # (each DALI folder's probe is made from its config, and a new version published; the ensembles' configs are
    # the same bytes again: nothing of theirs is published)
    assert run.rc == 0 and run.executed == {f"{step}:{f}" for step in ("dali_pipeline", "config", "probe", "publish")
                                            for f in pres} | {f"config:{e}" for e in ensembles}, run.text
    for folder in pres:
        assert dali_knobs(proj, folder, dali_site) == (3, 1.0, "3", [(count, "KIND_GPU")]), folder
        assert proj.path(f"models/{folder}/2/model.dali").read_bytes() != old[folder]  # a new version
    manifest.write_text(text.replace("defaults: {", "defaults: {dali: {num_threads: 3, hw_decoder_load: 1.0, "
                                                   f"instances: {count + 1}}}, "))
    run = proj.doit("manifest=manifests/m.yaml", env=env)
    assert run.rc == 0 and run.executed == {f"{step}:{f}" for step in ("config", "probe", "publish") for f in pres}, run.text
    assert dali_knobs(proj, "det_dali_end2end_preprocess", dali_site) == (3, 1.0, "3", [(count + 1, "KIND_GPU")])
    manifest.write_text(text.replace("defaults: {", "defaults: {instance_group: {kind: cpu, count: 4}, "))
    run = proj.doit("manifest=manifests/m.yaml", "publish:det_dali_end2end_preprocess", env=env)
    assert run.rc == 0, run.text  # on CPU instances, the DALI model has the models' count
    assert dali_knobs(proj, "det_dali_end2end_preprocess", dali_site) == (threads, hw, str(threads), [(4, "KIND_CPU")])


def test_without_dali_everything_else_builds_and_says_so(tmp_path, detector):
    proj = project(tmp_path, "onnx, dali_end2end", detector)
    run = proj.doit("manifest=manifests/m.yaml", env={"PIPELINE_CACHE": "off"})
    assert run.rc == 0, run.text
    assert "NVIDIA DALI is not installed here: skipping 1 DALI ensemble(s)" in run.err, run.err
    assert proj.path("models/det/config.pbtxt").is_file() and proj.path("models/det_end2end/config.pbtxt").is_file()
    assert not list(proj.path("models").glob("det_dali*"))
    named = proj.doit("manifest=manifests/m.yaml", "dali_end2end:det", env={"PIPELINE_CACHE": "off"})
    assert named.rc != 0 and "Traceback" not in named.text, named.text


# ---------------------------------------------------------------- the real Triton
def unresized_cases() -> dict[str, bytes]:
    """Images whose long side is already the input size: the letterbox only pads, so DALI's input to the
    model is Ultralytics' exactly (a resize can't be: DALI's float linear resize and OpenCV's fixed-point
    one round differently, by at most 1 grey level). Odd padding, grayscale, alpha, EXIF rotation."""
    import cv2
    from PIL import Image

    out = {}
    for name, (h, w) in {"wide": (144, IMGSZ), "odd-padding": (IMGSZ, 151), "thin": (9, IMGSZ)}.items():
        img = scene(h, w, 20 + len(out), shapes=3, background=90)
        out[f"{name}.png"] = cv2.imencode(".png", img)[1].tobytes()
        out[f"{name}.jpg"] = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    out["grayscale.png"] = cv2.imencode(".png", scene(200, IMGSZ, 30, shapes=3, background=90)[..., 0])[1].tobytes()
    rgba = np.dstack([scene(IMGSZ, 180, 31, shapes=3, background=90), np.full((IMGSZ, 180), 128, np.uint8)])
    out["alpha.png"] = cv2.imencode(".png", rgba)[1].tobytes()
    pil = Image.fromarray(scene(160, IMGSZ, 32, shapes=3, background=90)[..., ::-1])
    exif = pil.getexif()
    exif[0x0112] = 6  # displayed rotated: 160 wide, IMGSZ high
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    out["exif-rotated.jpg"] = buf.getvalue()
    return out


def predictions(pt, files, nms_free: bool = False):
    """Ultralytics' own predict on the original image files, with the square letterbox the ensemble
    serves (rect=False; predict's default pads to a stride multiple instead); nms_free: its one-to-one head
    (nms=False)."""
    from ultralytics import YOLO

    model = YOLO(str(pt))
    out = {}
    for f in files:
        r = model.predict(str(f), imgsz=IMGSZ, conf=CONF, iou=IOU, max_det=100, rect=False, verbose=False,
                          **({"nms": False} if nms_free else {}))[0]
        out[f.name] = (r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int))
    return out


def in_process(proj, files):
    """The ensemble's computation outside Triton: DALI CPU twin -> End2End ONNX (EfficientNMS reference)
    -> the box-mapping graph, all run here."""
    import onnx

    from pipeline.tooling.dali_preprocess import run_twin
    from pipeline.tooling import dali_preprocess as D
    from pipeline.tooling.efficient_nms import cpu_session
    from pipeline.tooling.onnx_tools import run

    twin = D.detection_pipeline(IMGSZ, "FP32", 4, "cpu")
    twin.build()
    images, sizes = run_twin(twin, [np.frombuffer(f.read_bytes(), np.uint8) for f in files])
    e2e = cpu_session(onnx.load(str(proj.path("models/det_end2end/1/model.onnx"))))
    out = {}
    for f, x, size in zip(files, images, sizes):
        n, b, s, c = e2e.run(None, {"images": x[None]})
        boxes = run(proj.path("models/det_dali_end2end_postprocess/1/model.onnx"),
                    {"boxes": b, "image_size": size[None].astype(np.float32)})[0]
        k = int(n[0, 0])
        out[f.name] = (boxes[0, :k], s[0, :k], c[0, :k])
    return out


def infer(url, model, data: bytes):
    import tritonclient.http as http

    client = http.InferenceServerClient(url)
    arr = np.frombuffer(data, np.uint8)[None]
    inp = http.InferInput("encoded_images", list(arr.shape), "UINT8")
    inp.set_data_from_numpy(arr)
    r = client.infer(model, [inp])
    n = int(r.as_numpy("num_dets")[0, 0])
    return r.as_numpy("det_boxes")[0, :n], r.as_numpy("det_scores")[0, :n], r.as_numpy("det_classes")[0, :n]


def match(got, want, tol_px):
    """Every detection of `want` has its own in `got` (same class, every coordinate within tol_px), and
    none is left over; the worst coordinate difference."""
    (gb, _, gc), (wb, _, wc) = got, want
    assert len(gb) == len(wb), f"{len(gb)} detections, expected {len(wb)}"
    used, worst = set(), 0.0
    for box, cls in sorted(zip(wb, wc), key=lambda t: -float(np.abs(t[0]).sum())):
        d = np.abs(gb - box).max(axis=1)
        free = [i for i in np.argsort(d) if i not in used and gc[i] == cls]
        assert free and d[free[0]] <= tol_px, f"no detection within {tol_px} px of {box} (closest {d.min():.3f} px)"
        used.add(free[0])
        worst = max(worst, float(d[free[0]]))
    return worst


@pytest.fixture(scope="module")
def served(built, tmp_path_factory):
    """The built repository in the real Triton; the TensorRT folders (no plans here) left out."""
    from helpers.triton_harness import TritonServer

    proj, _, _ = built
    work = tmp_path_factory.mktemp("served")
    repo = work / "models"
    shutil.copytree(proj.path("models"), repo, ignore=shutil.ignore_patterns("README.md", "*trt*", "*text_encoder*"))
    for cfg in repo.glob("*/config.pbtxt"):
        cfg.write_text(cfg.read_text().replace("KIND_GPU", "KIND_CPU"))
    with TritonServer(repo, work) as server:
        for ensemble in ("det_dali_end2end", "search", "nf_dali_end2end"):
            ok, why = server.load(ensemble)  # its members first
            assert ok, why
        yield f"127.0.0.1:{server.http}"


def write(tmp, cases: dict[str, bytes]):
    files = []
    for name, data in cases.items():
        (tmp / name).write_bytes(data)
        files.append(tmp / name)
    return files


@pytest.mark.triton
def test_triton_serves_exactly_the_ensembles_computation_one_by_one_and_concurrently(built, served, tmp_path, dali_site):
    proj, _, _ = built
    files = write(tmp_path, {**encoded_cases(), **{f"u-{k}": v for k, v in unresized_cases().items()}})
    sys.path.append(str(dali_site))
    want = in_process(proj, files)
    for f in files:
        match(infer(served, "det_dali_end2end", f.read_bytes()), want[f.name], tol_px=1e-3)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # concurrent requests, ragged, batched by Triton
        got = list(pool.map(lambda f: infer(served, "det_dali_end2end", f.read_bytes()), files * 3))
    for f, g in zip(files * 3, got):
        match(g, want[f.name], tol_px=1e-3)


def agreement(got, want, tol_px):
    """(predict's detections with a same-class ensemble detection within tol_px, the worst of those)."""
    (gb, _, gc), (wb, _, wc) = got, want
    used, found, worst = set(), 0, 0.0
    for box, cls in zip(wb, wc):
        d = np.abs(gb - box).max(axis=1) if len(gb) else np.array([])
        free = [i for i in np.argsort(d) if i not in used and gc[i] == cls and d[i] <= tol_px]
        if free:
            used.add(free[0])
            found += 1
            worst = max(worst, float(d[free[0]]))
    return found, worst


# This checkpoint detects like a random network does: dozens of overlapping boxes per image, whose NMS
# outcome flips under perturbations as small as PyTorch vs onnxruntime rounding (measured: one image in
# 22 already differs in count between YOLO.predict and Ultralytics' own NMS on the ONNX output). So a
# detection may come or go at the margin; what must hold is that the ensemble's boxes are predict's.
@pytest.mark.triton
def test_the_ensemble_answers_in_original_pixels_like_predict(built, served, detector, tmp_path):
    """Images the letterbox only pads: DALI's model input is Ultralytics' (to float rounding)."""
    files = write(tmp_path, unresized_cases())
    want = predictions(detector, files)
    report, found, total = {}, 0, 0
    for f in files:
        got = infer(served, "det_dali_end2end", f.read_bytes())
        n, worst = agreement(got, want[f.name], tol_px=1.0)
        report[f.name] = {"within_1px": f"{n}/{len(want[f.name][0])}", "ensemble": len(got[0]), "worst_px": round(worst, 4)}
        found, total = found + n, total + len(want[f.name][0])
        assert abs(len(got[0]) - len(want[f.name][0])) <= max(1, len(want[f.name][0]) // 20), (f.name, report[f.name])
    from helpers.project import REPORTS
    REPORTS["Track D ensemble in Triton vs YOLO.predict (unresized images)"] = report
    assert total >= 100 and found >= 0.97 * total, (found, total, report)  # the model really detects


@pytest.mark.triton
def test_the_nms_free_ensemble_answers_like_predict_with_its_head(built, served, nms_free_detector, tmp_path):
    """Track D on a YOLO26 served NMS-free: encoded images in, boxes in original pixels out, the same four
    outputs — and predict(nms=False)'s detections (no NMS: nothing flips)."""
    files = write(tmp_path, unresized_cases())
    want = predictions(nms_free_detector, files, nms_free=True)
    found, total = 0, 0
    for f in files:
        got = infer(served, "nf_dali_end2end", f.read_bytes())
        n, _ = agreement(got, want[f.name], tol_px=1.0)
        assert len(got[0]) == len(want[f.name][0]), f.name
        found, total = found + n, total + len(want[f.name][0])
    from helpers.project import REPORTS
    REPORTS["Track D ensemble of an NMS-free YOLO26 in Triton vs predict(nms=False)"] = {"within_1px": f"{found}/{total}"}
    assert total >= 20 and found == total, (found, total)


@pytest.mark.triton
def test_on_resized_images_the_ensemble_agrees_with_predict_at_the_models_resolution(built, served, detector, tmp_path):
    """A resize is within 1 grey level of OpenCV's (the twin test), not equal to it: boxes then move by a
    fraction of a model-input pixel — more original pixels where the image was shrunk."""
    import cv2

    files = write(tmp_path, encoded_cases())
    want = predictions(detector, files)
    report, found, total = {}, 0, 0
    for f in files:
        h, w = cv2.imdecode(np.frombuffer(f.read_bytes(), np.uint8), cv2.IMREAD_COLOR).shape[:2]
        px = max(1.0, max(h, w) / IMGSZ)  # one model-input pixel, in original pixels
        got = infer(served, "det_dali_end2end", f.read_bytes())
        n, worst = agreement(got, want[f.name], tol_px=px)
        report[f.name] = {"within_1_model_px": f"{n}/{len(want[f.name][0])}", "ensemble": len(got[0]),
                          "worst_model_px": round(worst / px, 3)}
        found, total = found + n, total + len(want[f.name][0])
        assert abs(len(got[0]) - len(want[f.name][0])) <= max(1, len(want[f.name][0]) // 10), (f.name, report[f.name])
    from helpers.project import REPORTS
    REPORTS["Track D vs YOLO.predict on resized images"] = report
    assert total >= 100 and found >= 0.9 * total, (found, total, report)


@pytest.mark.triton
def test_the_search_ensemble_answers_detections_and_embeddings_from_one_decode(built, served, tmp_path, dali_site):
    """Track E: the same detections as the Track D ensemble, and the image encoder's embedding of the DALI
    encoder branch (an untrained encoder embeds every image almost alike, cos > 0.9999: so the embedding
    is compared with the same computation run here, and the branch itself with open_clip above)."""
    import json

    import tritonclient.http as http

    proj, _, _ = built
    sys.path.append(str(dali_site))
    from pipeline.tooling.dali_preprocess import run_twin
    from pipeline.tooling import dali_preprocess as D
    from pipeline.tooling.onnx_tools import run

    files = write(tmp_path, unresized_cases())
    record = json.loads(proj.path("models/search_preprocess/1/model.dali.verification.json").read_text())
    twin = D.pipeline(record["verification"]["definition"], "cpu")
    twin.build()
    branch = run_twin(twin, [np.frombuffer(f.read_bytes(), np.uint8) for f in files])[2]
    client = http.InferenceServerClient(served)
    for f, clip_image in zip(files, branch):
        arr = np.frombuffer(f.read_bytes(), np.uint8)[None]
        inp = http.InferInput("encoded_images", list(arr.shape), "UINT8")
        inp.set_data_from_numpy(arr)
        r = client.infer("search", [inp])
        emb = r.as_numpy("image_embeddings")[0]
        want = run(proj.path("models/clip_image_encoder_onnx/1/model.onnx"), {"images": clip_image[None]})[0][0]
        assert emb.shape == (512,) and np.abs(emb - want).max() < 1e-5, (f.name, np.abs(emb - want).max())
        n = int(r.as_numpy("num_dets")[0, 0])
        d = infer(served, "det_dali_end2end", f.read_bytes())
        match((r.as_numpy("det_boxes")[0, :n], r.as_numpy("det_scores")[0, :n], r.as_numpy("det_classes")[0, :n]), d,
              tol_px=1e-4)


def test_compare_tracks_runs_every_track_on_the_same_images(built):
    """`doit compare-tracks det`: Tracks A, raw ONNX + client NMS, C and D on the same images; the table,
    tracks.json and the plot; every track reproduces most of Track A's detections."""
    import json

    proj, _, env = built
    run = proj.doit("compare-tracks", "manifest=manifests/m.yaml", "det", env=env)
    assert run.rc == 0, run.text
    rows = {r["track"]: r for r in json.loads(proj.path(".pipeline/tracks/tracks.json").read_text())["rows"]}
    assert len(rows) == 4 and "D: DALI + End2End (CPU twin)" in rows and "CPU" in run.out
    assert rows["A: PyTorch (YOLO.predict)"]["track_a_detections"] >= 20  # the model really detects
    for name, r in rows.items():
        # Track D resizes within 1 grey level of OpenCV, not equal (test above): on 1080p images 1 original px
        # is a quarter of a model pixel, and this random-weight model moves some boxes further than that
        assert r["agreement"] >= (0.8 if name.startswith("D") else 0.95), r
        assert r["latency_ms"] > 0 and r["images_per_s"] > 0, r
    assert proj.path(".pipeline/tracks/tracks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = proj.doit("compare-tracks", "manifest=manifests/m.yaml", "nope", env=env)
    assert bad.rc != 0 and "NAME one of: det" in bad.err and "Traceback" not in bad.text


@pytest.mark.triton
def test_the_tensorrt_ensemble_chain_in_triton_with_its_plan_stood_in_by_the_fp16_graph(built, tmp_path):
    """No TensorRT here: `det_trt_end2end` is stood in by the FP16 End2End ONNX the plan is compiled from,
    served by the onnxruntime stand-in with the plan folder's own I/O. Triton then checks the real chain
    of dali_trt_end2end — FP16 images from DALI into an FP16 input — and it answers like the FP32 chain."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from pipeline.builders.triton_config import build_config, triton_io
    from pipeline.tooling.onnx_tools import graph_io
    from helpers.triton_harness import TritonServer

    proj, _, env = built
    # the ensemble's own three folders need no TensorRT: published (their member, the plan folder, is not)
    run = proj.doit("manifest=manifests/m.yaml", "publish:det_dali_trt_end2end", "publish:det_dali_trt_end2end_preprocess",
                    "publish:det_dali_trt_end2end_postprocess", env=env)
    assert run.rc == 0, run.text
    repo = tmp_path / "models"
    for folder in ("det_dali_trt_end2end", "det_dali_trt_end2end_preprocess", "det_dali_trt_end2end_postprocess",
                   "det_dali_end2end", "det_dali_end2end_preprocess", "det_dali_end2end_postprocess", "det_end2end"):
        shutil.copytree(proj.path(f"models/{folder}"), repo / folder)
    member = repo / "det_trt_end2end"
    (member / "1").mkdir(parents=True)
    fp16 = proj.path("pytorch_models/det_end2end.fp16.onnx")
    shutil.copy(fp16, member / "1" / "model.onnx")
    inputs, outputs = (triton_io(v) for v in graph_io(fp16))
    assert inputs[0][1] == "TYPE_FP16"
    cfg = build_config("det_trt_end2end", "onnxruntime_onnx", inputs, outputs, max_batch=4,
                       dynamic_batching={"preferred_batch_sizes": None, "max_queue_delay_us": 0},
                       instance_group={"kind": "cpu", "count": 1}, untrained=False,
                       tensorrt_accelerator={"precision_mode": "FP16"})
    (member / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    for c in repo.glob("*/config.pbtxt"):
        c.write_text(c.read_text().replace("KIND_GPU", "KIND_CPU"))
    pre = text_format.Parse((repo / "det_dali_trt_end2end_preprocess/config.pbtxt").read_text(), mc.ModelConfig())
    assert mc.DataType.Name(pre.output[0].data_type) == "TYPE_FP16"
    files = write(tmp_path, unresized_cases())
    with TritonServer(repo, tmp_path) as server:
        for ensemble in ("det_dali_trt_end2end", "det_dali_end2end"):
            ok, why = server.load(ensemble)
            assert ok, why
        url = f"127.0.0.1:{server.http}"
        found = total = 0
        for f in files:
            half = infer(url, "det_dali_trt_end2end", f.read_bytes())
            full = infer(url, "det_dali_end2end", f.read_bytes())
            n, _ = agreement(half, full, tol_px=2.0)
            found, total = found + n, total + len(full[0])
            assert abs(len(half[0]) - len(full[0])) <= max(2, len(full[0]) // 10), (f.name, len(half[0]), len(full[0]))
    assert total >= 100 and found >= 0.85 * total, (found, total)
