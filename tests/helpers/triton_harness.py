"""A real Triton server (2.51, CPU, from the nvidia-pytriton wheel) for acceptance tests.

* Its own virtual environment (~/.cache/triton-export-pipeline/triton-venv-*, made once per machine):
  nvidia-pytriton pins numpy<2.
* The real onnxruntime, tensorrt and dali backends are not obtainable here. Python-based backends
  (Triton's "Python-based backend" mechanism, tests/triton_backend/<name>/model.py) stand in for two:
  `onnxruntime` — the unchanged `onnxruntime_onnx` folders load and really run through onnxruntime;
  End2End graphs run their EfficientNMS_TRT node through the project's NumPy reference
  (pipeline/tooling/efficient_nms.py); `dali` — the served `model.dali` must be the pipeline definition
  byte for byte, and its CPU twin runs (the GPU pipeline needs a GPU).
* Loopback only, free ports, explicit model control (or poll/none, for the deploy tests), strict config validation
  (`--disable-auto-complete-config`), stopped by PID whatever happens.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["nvidia-pytriton==0.7.0", "onnxruntime==1.32.0", "onnxruntime-extensions==0.15.2", "onnx==1.23.2",
            "nvidia-dali-cuda130==2.4.0"]
# Outside the checkout, keyed by its packages: made once per machine, reused by every clone and CI run.
VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "triton-export-pipeline" / (
    "triton-venv-" + hashlib.sha256(" ".join(PACKAGES).encode()).hexdigest()[:12])
BACKENDS = Path(__file__).resolve().parents[1] / "triton_backend"  # stand-ins: one folder per backend name


def ensure_venv() -> Path:
    py = VENV / "bin" / "python"
    marker = VENV / ".ready"
    if not marker.exists():
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        p = subprocess.run([str(py), "-m", "pip", "install", "-q", *PACKAGES], capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(f"installing {PACKAGES} into {VENV} failed:\n{p.stdout}\n{p.stderr}")
        marker.touch()
    return py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    def __init__(self, repository: Path, workdir: Path, mode: str = "explicit", poll_seconds: int = 1):
        """mode: Triton's --model-control-mode (explicit, poll or none); poll_seconds: its
        --repository-poll-secs in poll mode."""
        self.repository, self.workdir, self.mode, self.poll_seconds = repository, workdir, mode, poll_seconds
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "tritonserver.log"

    def __enter__(self) -> "TritonServer":
        py = ensure_venv()
        site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        server = self.workdir / "tritonserver"
        shutil.copytree(site / "pytriton" / "tritonserver", server)
        v = f"{sys.version_info.major}.{sys.version_info.minor}"
        shutil.copy(server / "python_backend_stubs" / v / "triton_python_backend_stub", server / "backends" / "python")
        for backend in BACKENDS.iterdir():
            if (backend / "model.py").is_file():
                (server / "backends" / backend.name).mkdir()
                shutil.copy(backend / "model.py", server / "backends" / backend.name / "model.py")
        self.http, self.grpc, metrics = free_port(), free_port(), free_port()
        env = {**os.environ,
               "LD_LIBRARY_PATH": f"{site / 'nvidia_pytriton.libs'}:{sysconfig.get_config_var('LIBDIR')}",
               "PATH": f"{py.parent}:{os.environ['PATH']}", "PIPELINE_ROOT": str(REPO)}
        cmd = [str(server / "bin" / "tritonserver"), "--model-repository", str(self.repository),
               "--backend-directory", str(server / "backends"), "--http-address", "127.0.0.1",
               "--http-port", str(self.http), "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc),
               "--metrics-address", "127.0.0.1", "--metrics-port", str(metrics), "--allow-gpu-metrics=false",
               "--exit-timeout-secs", "5", "--model-control-mode", self.mode, "--disable-auto-complete-config",
               "--log-verbose", "0"] + (["--repository-poll-secs", str(self.poll_seconds)] if self.mode == "poll" else [])
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.time() + 60
        import urllib.request
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v2/health/live", timeout=1).status == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("tritonserver did not become live in 60 s")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def load(self, name: str) -> tuple[bool, str]:
        """(loaded, Triton's own reason from its log when not)."""
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{self.http}/v2/repository/models/{name}/load", data=b"",
                                     method="POST")
        try:
            urllib.request.urlopen(req, timeout=300)
            return True, ""
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            reasons = [ln for ln in self.log.read_text().splitlines() if name in ln and ("failed" in ln.lower()
                                                                                       or "error" in ln.lower())]
            return False, (body + "\n" + "\n".join(reasons[-5:])).strip()
