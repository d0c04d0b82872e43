"""One Triton server, over HTTP or gRPC (tritonclient), with the few calls deploy and rollback make — and a
paragraph, not a traceback, when the URL does not lead to a Triton."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

from ..engine.errors import UserError

DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
NO_SUCH_MODEL = ".no-such-model-mode-check"  # unloading it: a no-op in explicit mode, refused in the others
URL_FIX = "give url=http://HOST:PORT (Triton's HTTP port, 8000 by default) or url=grpc://HOST:PORT (its gRPC port, 8001)"


class Server:
    """mode: "explicit" (the load API works), or "poll-or-none" (Triton refuses load/unload: it polls its
    repository, or never looks at it again)."""

    def __init__(self, url: str, timeout: float):
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise UserError(f"'{url}' is not a Triton server URL", key="url", fix=URL_FIX)
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise UserError(f"'{url}' has no usable port", key="url", fix=URL_FIX) from None
        self.url, self.scheme, self.address = url, parts.scheme, f"{parts.hostname}:{port}"
        if self.scheme == "http":
            import tritonclient.http as tc

            self.client = tc.InferenceServerClient(self.address, connection_timeout=5.0, network_timeout=timeout)
        else:
            import tritonclient.grpc as tc

            self.client = tc.InferenceServerClient(self.address)
        self.tc, self.timeout = tc, timeout
        self._check_live()
        self.mode = self._mode()

    def _check_live(self) -> None:
        other = "grpc" if self.scheme == "http" else "http"
        try:
            live = self.client.is_server_live()
            meta = self.client.get_server_metadata()
        except Exception as e:  # connection refused, a non-Triton or other-protocol port: tritonclient's many types
            reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise UserError(f"no Triton server answers {self.scheme.upper()} at {self.address} ({reason})", key="url",
                            fix=f"start Triton or correct the URL: is {self.address} its {self.scheme.upper()} port, "
                                f"not its {other.upper()} or metrics port? {URL_FIX}") from None
        if not live:
            raise UserError(f"the Triton server at {self.address} is not live", key="url",
                            fix="wait for it to start (or look at its log), then deploy again")
        name = meta["name"] if isinstance(meta, dict) else meta.name
        self.version = meta["version"] if isinstance(meta, dict) else meta.version
        if name != "triton":
            raise UserError(f"{self.address} answers, but as '{name}', not Triton", key="url", fix=URL_FIX)

    def _mode(self) -> str:
        """Unloading a name that cannot exist is a no-op in explicit mode and refused in poll and none modes."""
        try:
            self.client.unload_model(NO_SUCH_MODEL)
            return "explicit"
        except self.tc.InferenceServerException as e:
            if "not allowed" in str(e):
                return "poll-or-none"
            raise

    def close(self) -> None:
        self.client.close()

    # ---- the repository
    def index(self) -> dict[str, dict[int, str]]:
        """{model name: {version: state}} (a model never loaded has no versions)."""
        if self.scheme == "http":
            rows = self.client.get_model_repository_index()
        else:
            rows = self.client.get_model_repository_index(as_json=True).get("models", [])
        out: dict[str, dict[int, str]] = {}
        for r in rows:
            versions = out.setdefault(r["name"], {})
            if r.get("version"):
                versions[int(r["version"])] = r.get("state", "")
        return out

    def ready_versions(self, name: str) -> list[int]:
        return sorted(v for v, state in self.index().get(name, {}).items() if state == "READY")

    def load(self, name: str, config: dict | None = None) -> None:
        """Explicit mode: (re)load, with this whole config instead of the repository's when given."""
        kwargs = {"config": json.dumps(config)} if config is not None else {}
        if self.scheme == "grpc":
            kwargs["client_timeout"] = self.timeout
        self.client.load_model(name, **kwargs)

    def unload(self, name: str) -> None:
        self.client.unload_model(name)

    def infer(self, name: str, version: int, inputs: dict, outputs: list[str]) -> dict:
        from tritonclient.utils import np_to_triton_dtype

        tensors = []
        for key, value in inputs.items():
            t = self.tc.InferInput(key, list(value.shape), np_to_triton_dtype(value.dtype))
            t.set_data_from_numpy(value)
            tensors.append(t)
        wanted = [self.tc.InferRequestedOutput(n) for n in outputs]
        kwargs = {"client_timeout": self.timeout} if self.scheme == "grpc" else {}
        result = self.client.infer(name, tensors, model_version=str(version), outputs=wanted, **kwargs)
        return {n: result.as_numpy(n) for n in outputs}
