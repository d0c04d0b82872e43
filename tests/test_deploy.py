"""Acceptance: `doit deploy` and `doit rollback` against a real Triton server (2.51, CPU) serving the project's own
models/ — explicit mode and poll mode — with a client sending requests the whole time, and hand edits kept.

The project: a detector that really detects (tests/helpers/detecting.py) served as an End2End ONNX folder and a
Track D ensemble (DALI preprocessing, the End2End folder, the box mapping). Triton's onnxruntime and DALI
backends are the project's stand-ins (tests/triton_backend/); everything else is the real server.
"""
from __future__ import annotations

import re
import shutil
import threading
import time

import numpy as np
import pytest

from helpers.detecting import make_detecting_checkpoint
from helpers.project import REPORTS, Project, make_project
from helpers.triton_harness import TritonServer
from pipeline.tooling.dali_preprocess import INPUT

pytestmark = [pytest.mark.triton, pytest.mark.slow]

MANIFEST = """defaults:
  formats: [onnx_end2end, dali_end2end]
  imgsz: 320
  max_batch: 4
  instance_group: {kind: cpu}
  versions: {keep: 3}
models:
  shapes:
    pt_file: ../shapes.pt
    conf: 0.25
"""
E2E, ENSEMBLE = "shapes_end2end", "shapes_dali_end2end"
ENCODED = INPUT  # the ensemble's input: the DALI pipeline's external source
FOLDERS = [E2E, f"{ENSEMBLE}_preprocess", f"{ENSEMBLE}_postprocess", ENSEMBLE]


@pytest.fixture(scope="module")
def live(tmp_path_factory, yolo_env, dali_site):
    proj = make_project(tmp_path_factory.mktemp("deploy") / "proj")
    make_detecting_checkpoint(proj.path("shapes.pt"), ["a", "b", "c"], imgsz=320)
    proj.write("manifests/live.yaml", MANIFEST)
    proj.env = {"PYTHONPATH": str(dali_site)}
    run = build(proj)
    assert run.rc == 0, run.text
    return proj


def build(proj, *args):
    return proj.doit("manifest=manifests/live.yaml", *args, env=proj.env)


def set_conf(proj, conf: float) -> None:
    path = proj.path("manifests/live.yaml")
    path.write_text(re.sub(r"conf: [0-9.]+", f"conf: {conf}", path.read_text()))


def ready(server, name) -> list[int]:
    import tritonclient.http as http

    c = http.InferenceServerClient(f"127.0.0.1:{server.http}")
    try:
        return sorted(int(r["version"]) for r in c.get_model_repository_index()
                      if r["name"] == name and r.get("state") == "READY")
    finally:
        c.close()


class Clients:
    """Requests sent without pause while deploys happen: the End2End folder (noise, as the probe) and the
    ensemble (a JPEG); every failure is counted, every answer's version and detection count kept."""

    def __init__(self, server, jpeg: bytes):
        self.server, self.jpeg = server, np.frombuffer(jpeg, np.uint8)
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.answers: dict[str, set] = {E2E: set(), ENSEMBLE: set()}
        self._stop = threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self._loop)
        self.thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        time.sleep(0.5)
        self._stop.set()
        self.thread.join()

    def _loop(self):
        import tritonclient.http as http

        c = http.InferenceServerClient(f"127.0.0.1:{self.server.http}")
        x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
        while not self._stop.is_set():
            for name, data, dtype, inp in ((E2E, x, "FP32", "images"), (ENSEMBLE, self.jpeg[None], "UINT8", ENCODED)):
                i = http.InferInput(inp, list(data.shape), dtype)
                i.set_data_from_numpy(data)
                try:
                    r = c.infer(name, [i])
                    self.ok += 1
                    self.answers[name].add((r.get_response()["model_version"], int(r.as_numpy("num_dets")[0, 0])))
                except Exception as e:  # any failure a client would see
                    self.failed += 1
                    self.errors.append(str(e)[:200])
        c.close()


def jpeg_of_noise() -> bytes:
    import io

    from PIL import Image

    img = (np.random.default_rng(1).random((240, 320, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def phases(out: str) -> dict[str, float]:
    m = re.search(r"deploy: timings: (.*)", out)
    return {k: float(v) for k, v in re.findall(r"(\w+) ([0-9.]+) s", m.group(1))} if m else {}


def test_explicit_mode_deploy_switch_failure_and_rollback(live, tmp_path):
    proj = live
    cfg = proj.path(f"models/{E2E}/config.pbtxt")
    with TritonServer(proj.path("models"), tmp_path) as server:
        url = f"url=http://127.0.0.1:{server.http}"
        run = build(proj, "deploy", url, "--dry-run")
        assert run.rc == 0 and all(f"deploy: {f}: version(s) none -> 1 (would load)" in run.out for f in FOLDERS), run.text
        assert ready(server, E2E) == []  # a dry run changes nothing
        order = [re.search(r"deploy: (\S+):", ln).group(1) for ln in run.out.splitlines() if "would load" in ln]
        assert order.index(ENSEMBLE) == 3  # the ensemble after every member

        run = build(proj, "deploy", url)
        assert run.rc == 0 and run.out.count("probe passed") == 4, run.text
        timings = {"first deploy (4 folders)": phases(run.out)}
        assert all(ready(server, f) == [1] for f in FOLDERS)
        run = build(proj, "deploy", f"url=grpc://127.0.0.1:{server.grpc}")  # either protocol
        assert run.rc == 0 and "nothing to do" in run.out, run.text

        # a hand edit of the served config: kept through a rebuild, holds the next version, adopted
        edited = cfg.read_text().replace("max_queue_delay_microseconds: 5000", "max_queue_delay_microseconds: 100")
        cfg.write_text(edited)
        assert "edited by hand, kept" in build(proj).out and cfg.read_text() == edited
        set_conf(proj, 0.6)
        run = build(proj)
        assert run.rc != 0 and f"{E2E} is held" in run.text and cfg.read_text() == edited, run.text
        assert build(proj, "adopt-config", E2E).rc == 0
        run = build(proj)
        assert run.rc == 0 and f"models/{E2E}: version 2 published" in run.out, run.text
        assert cfg.read_text() == edited  # adopt-config, then a rebuild: the same config bytes
        # only the End2End folder changed; the ensemble follows its member's served version
        assert [f for f in FOLDERS if (proj.path(f"models/{f}/2")).exists()] == [E2E]

        with Clients(server, jpeg_of_noise()) as clients:
            run = build(proj, "deploy", url)
        assert run.rc == 0 and f"deploy: {E2E}: serving version(s) 2, probe passed" in run.out, run.text
        timings["deploy of a new version under load"] = phases(run.out)
        assert clients.failed == 0, clients.errors[:3]
        versions = {v for v, _ in clients.answers[E2E]}
        assert versions == {"1", "2"}, clients.answers  # answers switched to version 2's ...
        dets = {v: {n for vv, n in clients.answers[E2E] if vv == v} for v in versions}
        assert dets["1"] != dets["2"], dets  # ... which detect differently (conf 0.25 -> 0.6)
        assert len({n for _, n in clients.answers[ENSEMBLE]}) == 2  # so did the ensemble's, through its member

        # version 3, broken after its check: the deploy fails, version 2 keeps serving
        set_conf(proj, 0.4)
        assert build(proj).rc == 0
        broken = proj.path(f"models/{E2E}/3/model.onnx")
        data = broken.read_bytes()
        broken.unlink()  # replaced, as a bad copy would be (staging keeps the good graph)
        broken.write_bytes(data[: len(data) // 2])
        with Clients(server, jpeg_of_noise()) as clients:
            run = build(proj, "deploy", url)
        assert run.rc != 0 and "version(s) 3 failed" in run.out and "version(s) 2 restored and serving" in run.out, run.text
        assert "Traceback" not in run.text
        assert clients.failed == 0 and {v for v, _ in clients.answers[E2E]} == {"2"}, (clients.errors[:3], clients.answers)
        assert ready(server, E2E) == [2]
        run = build(proj, "deploy", url)
        assert run.rc == 0 and "nothing to do" in run.out, run.text  # the repository pins version 2 too

        run = build(proj, "rollback", E2E, url)
        assert run.rc == 0 and f"rollback: {E2E}: serving version 1" in run.out, run.text
        assert ready(server, E2E) == [1]
        assert "max_queue_delay_microseconds: 100" in cfg.read_text()  # the adopted edit, in every version since
        run = build(proj, "rollback", E2E, url)
        assert run.rc != 0 and "no version older than 1" in run.text, run.text
        REPORTS["doit deploy phases, seconds (real Triton 2.51, CPU, stand-in backends)"] = timings


def test_poll_mode_picks_up_twenty_rebuilds_without_a_failed_load_or_request(live, tmp_path):
    from pipeline.engine.publish import versions_of

    shutil.copytree(live.root, tmp_path / "proj", symlinks=True)  # the built project, as the first test left it
    proj = Project(tmp_path / "proj")
    proj.env = live.env
    with TritonServer(proj.path("models"), tmp_path, mode="poll") as server:
        url = f"url=http://127.0.0.1:{server.http}"
        run = build(proj, "deploy", url)  # the server loaded everything at start
        assert run.rc == 0 and "nothing to do" in run.out, run.text
        first = max(versions_of(proj.path(f"models/{E2E}")))
        with Clients(server, jpeg_of_noise()) as clients:
            for k in range(20):
                set_conf(proj, round(0.3 + k / 50, 2))
                run = build(proj)
                assert run.rc == 0 and f"models/{E2E}: version {first + k + 1} published" in run.out, run.text
            run = build(proj, "deploy", url)  # waits until the server serves the newest, then probes it
        assert run.rc == 0 and f"serving version(s) {first + 20}, probe passed" in run.out, run.text
        REPORTS["doit deploy phases, seconds, poll mode (1 s polls)"] = phases(run.out)
        assert clients.failed == 0, clients.errors[:3]
        seen = {int(v) for v, _ in clients.answers[E2E]}
        assert len(seen) >= 5 and max(seen) == first + 20, seen  # it really served the new versions as they came
        log = server.log.read_text().splitlines()
        failures = [ln for ln in log if re.search("fail", ln, re.I) and re.search("load|poll", ln, re.I)]
        assert not failures, failures[:5]
        loaded = {int(m.group(1)) for ln in log if (m := re.search(rf'"loading: {E2E}:(\d+)"', ln))}  # none failed
        # Triton loads what it finds at each poll: two versions published within one poll interval load only the
        # newer, so the loads are not one per rebuild; every version a client was answered by was loaded first.
        assert seen <= loaded and first + 20 in loaded, (seen, loaded)
        starts = sum(f'"loading: {E2E}:' in ln for ln in log)
        assert sum(f"successfully loaded '{E2E}'" in ln for ln in log) == starts  # every load it began, it finished


def test_bad_servers_and_names_get_a_paragraph_and_change_nothing(live, tmp_path):
    proj = live
    before = {f: sorted(p.name for p in proj.path(f"models/{f}").iterdir()) for f in FOLDERS}
    cases = {"no server": ("url=http://127.0.0.1:1", "no Triton server answers HTTP at 127.0.0.1:1"),
             "no scheme": ("url=localhost:8000", "is not a Triton server URL"),
             "ftp": ("url=ftp://localhost:8000", "is not a Triton server URL")}
    for what, (arg, said) in cases.items():
        run = build(proj, "deploy", arg)
        assert run.rc != 0 and said in run.err and "Traceback" not in run.text, (what, run.text)
    foreign = tmp_path / "foreign"
    shutil.copytree(proj.path(f"models/{E2E}"), foreign / "someone_elses")
    cfg = foreign / "someone_elses/config.pbtxt"
    cfg.write_text(cfg.read_text().replace(f'name: "{E2E}"', 'name: "someone_elses"'))
    with TritonServer(foreign, tmp_path / "a") as server:
        run = build(proj, "deploy", f"url=http://127.0.0.1:{server.grpc}")  # the gRPC port, spoken to in HTTP
        assert run.rc != 0 and "is 127.0.0.1" in run.err and "its HTTP port" in run.err, run.text
        run = build(proj, "deploy", f"url=http://127.0.0.1:{server.http}")
        assert run.rc != 0 and "does not serve this models/" in run.err and "someone_elses" in run.err, run.text
        run = build(proj, "deploy", f"url=http://127.0.0.1:{server.http}", "no_such_model")
        assert run.rc != 0 and "no_such_model" in run.err, run.text
        run = build(proj, "rollback", "no_such_model", f"url=http://127.0.0.1:{server.http}")
        assert run.rc != 0 and "no_such_model: not published" in run.err, run.text
    none_repo = tmp_path / "none"
    shutil.copytree(proj.path("models"), none_repo, ignore=shutil.ignore_patterns("README.md"))
    with TritonServer(none_repo, tmp_path / "b", mode="none") as server:  # the server does not watch its repository
        other = Project(tmp_path / "other")  # the same project, where a new version is published
        shutil.copytree(proj.root, other.root, symlinks=True)
        other.env = proj.env
        set_conf(other, 0.45)
        assert build(other).rc == 0
        run = build(other, "deploy", f"url=http://127.0.0.1:{server.http}", "--timeout=3")
        assert run.rc != 0 and "does not watch it at all (--model-control-mode=none)" in run.text, run.text
    assert {f: sorted(p.name for p in proj.path(f"models/{f}").iterdir()) for f in FOLDERS} == before
