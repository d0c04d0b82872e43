"""`doit deploy url=...` and `doit rollback NAME url=...`: make a live Triton serve exactly the versions the
repository (models/) publishes, each one probed before it counts as deployed.

Deploy reads the server's repository index, and for every published folder whose served versions differ
from what its config.pbtxt's `version_policy` names:
* explicit mode: loads it with the published config (members before the ensembles that use them: an
  ensemble never points at a member that is not loaded); Triton serves the old version until the new one
  is ready, then unloads it;
* poll mode: waits until the server has picked the new versions up itself;
then waits for READY and sends the version's probe (the request and answer stored at build time). On any
failure the previous version is restored (explicit: a load whose config override pins it; both modes: the
repository pins it too, so the next deploy and a polling server agree) and the command fails with a
paragraph. Nothing to do is a no-op. Rollback pins the next older version the same way.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..declarations import layout as L
from ..engine import publish
from ..engine.errors import UserError
from ..tooling import model_config
from . import probe
from .client import Server


@dataclass
class Folder:
    """A published folder as deploy sees it."""
    name: str
    path: Path
    versions: list[int]          # present
    wanted: list[int]            # what its config.pbtxt serves
    config: object               # the published ModelConfig
    members: list[str]           # models an ensemble's steps name

    @classmethod
    def read(cls, path: Path) -> "Folder":
        text = (path / publish.CONFIG).read_text()
        cfg = model_config.parse(text)
        present = publish.versions_of(path)
        members = [s.model_name for s in cfg.ensemble_scheduling.step]
        return cls(path.name, path, present, publish.served_versions(text, present), cfg, members)

    def contract(self, version: int) -> dict[str, list]:
        """The outputs' declared types and shapes (with the batch dimension of a one-request probe)."""
        rec = publish.version_record(self.path, version)
        cfg = model_config.parse(rec["config"]) if rec.get("config") else self.config
        batch = [1] if cfg.max_batch_size > 0 else []
        return {o.name: [model_config.type_name(o.data_type), batch + list(o.dims)] for o in cfg.output}


@dataclass
class Timings:
    phases: dict[str, float] = field(default_factory=lambda: {"index": 0.0, "load": 0.0, "ready": 0.0, "probe": 0.0})

    def add(self, phase: str, started: float) -> None:
        self.phases[phase] += time.perf_counter() - started

    def line(self) -> str:
        return ", ".join(f"{k} {v:.2f} s" for k, v in self.phases.items())


def published_folders(repo: Path) -> dict[str, Folder]:
    out = {}
    for path in sorted(repo.iterdir()) if repo.is_dir() else []:
        if path.is_dir() and not path.name.startswith(".") and (path / publish.CONFIG).is_file():
            out[path.name] = Folder.read(path)
    return out


def in_order(folders: dict[str, Folder], names: list[str]) -> list[str]:
    """Members before the ensembles that use them."""
    done: list[str] = []

    def visit(name: str, seen: tuple = ()) -> None:
        if name in done or name not in folders or name in seen:
            return
        for member in folders[name].members:
            visit(member, seen + (name,))
        if name in names:
            done.append(name)
    for name in names:
        visit(name)
    return done


def _check_repository(server: Server, index: dict, folders: dict[str, Folder], repo: Path) -> None:
    ours, theirs = set(folders), set(index)
    if not ours:
        raise UserError(f"{repo}/ holds no published Triton folder", fix="run doit first")
    if not ours & theirs:
        shown = ", ".join(sorted(theirs)[:6]) + (" ..." if len(theirs) > 6 else "") or "nothing"
        raise UserError(f"the Triton server at {server.address} does not serve this {repo}/: its repository holds "
                        f"{shown}, and none of the {len(ours)} folders published here", key="url",
                        fix=f"start Triton with --model-repository pointing at {repo.resolve()} (or a copy of it), or "
                            "deploy to the server that serves it")
    missing = sorted(ours - theirs)
    if missing:
        raise UserError(f"the Triton server at {server.address} does not know {', '.join(missing)}, published in "
                        f"{repo}/: its repository is not this one, or a copy that is not synced", key="url",
                        fix=f"point the server's --model-repository at {repo.resolve()} (or sync the copy), then "
                            "deploy again")


def plan(server: Server, folders: dict[str, Folder], names: list[str] | None) -> tuple[list[str], dict]:
    """(folders to change in order, the server's index)."""
    index = server.index()
    serving = {n: sorted(v for v, s in index.get(n, {}).items() if s == "READY") for n in folders}
    changed = [n for n in (names or folders) if serving[n] != folders[n].wanted]
    return in_order(folders, changed), index


def _wait_ready(server: Server, name: str, wanted: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        ready = server.ready_versions(name)
        if ready == wanted or time.monotonic() > deadline:
            return ready
        time.sleep(0.2)


def _probe(server: Server, folder: Folder, version: int) -> list[str]:
    path = folder.path / str(version) / "probe.npz"
    if not path.is_file():
        return [f"{path} is missing (the folder was published without its probe)"]
    inputs, expected = probe.load(path)
    contract = folder.contract(version)
    try:
        answer = server.infer(folder.name, version, inputs, list(contract))
    except Exception as e:  # the server's refusal, whatever the protocol's exception type
        return [f"the request failed: {str(e).splitlines()[0][:300]}"]
    return probe.judge(answer, expected, contract)


def _config_json(folder: Folder, versions: list[int]) -> dict:
    """The published config with its version policy pinned to `versions`: the load override of a restore."""
    cfg = model_config.parse(model_config.to_text(folder.config))
    cfg.ClearField("version_policy")
    cfg.version_policy.specific.versions.extend(versions)
    return model_config.as_dict(cfg)


def _activate(server: Server, folder: Folder, wanted: list[int], timeout: float, times: Timings,
              config: dict | None = None) -> str | None:
    """Make the server serve `wanted` of this folder; None, or why it did not."""
    started = time.perf_counter()
    if server.mode == "explicit":
        try:
            server.load(folder.name, config if config is not None else model_config.as_dict(folder.config))
        except Exception as e:
            times.add("load", started)
            return f"Triton refused to load it: {str(e).splitlines()[0][:400]}"
        times.add("load", started)
        started = time.perf_counter()
        ready = _wait_ready(server, folder.name, wanted, min(timeout, 10.0))
    else:
        ready = _wait_ready(server, folder.name, wanted, timeout)
    times.add("ready", started)
    if ready != wanted:
        if server.mode != "explicit":
            return (f"the server did not pick up version(s) {', '.join(map(str, wanted))} within {timeout:.0f} s (it "
                    f"serves {', '.join(map(str, ready)) or 'none'}): it polls its repository less often than that, "
                    "or does not watch it at all (--model-control-mode=none)")
        return f"the server serves version(s) {', '.join(map(str, ready)) or 'none'} after the load, not " \
               f"{', '.join(map(str, wanted))}: its copy of the repository lacks them"
    return None


def deploy(url: str, repo: Path, names: list[str] | None, dry_run: bool, timeout: float, say) -> int:
    times = Timings()
    started = time.perf_counter()
    folders = published_folders(repo)
    unknown = [n for n in names or [] if n not in folders]
    if unknown:
        raise UserError(f"{', '.join(unknown)}: not published in {repo}/", key="NAME",
                        fix=f"name published folders: {', '.join(folders) or '(none: run doit first)'}")
    server = Server(url, timeout)
    try:
        index = server.index()
        times.add("index", started)
        _check_repository(server, index, folders, repo)
        mode = server.mode
        order, index = plan(server, folders, names)
        if not order:
            say(f"deploy: {server.address} (Triton {server.version}, {mode} mode) already serves every published "
                "version: nothing to do")
            return 0
        for name in order:
            f = folders[name]
            now = sorted(v for v, s in index.get(name, {}).items() if s == "READY")
            say(f"deploy: {name}: version(s) {', '.join(map(str, now)) or 'none'} -> {', '.join(map(str, f.wanted))}"
                + (" (would load)" if dry_run else ""))
        if dry_run:
            return 0
        if mode != "explicit":
            say(f"deploy: {server.address} does not take load requests (poll mode, or none): waiting for it to pick "
                "the new versions up")
        failed: list[str] = []
        for name in order:
            f = folders[name]
            if any(m in failed for m in f.members):
                failed.append(name)
                say(f"deploy: {name}: not loaded, a member of it failed")
                continue
            before = sorted(v for v, s in index.get(name, {}).items() if s == "READY")
            why = _activate(server, f, f.wanted, timeout, times)
            problems = [why] if why else []
            if not problems:
                started = time.perf_counter()
                for v in [v for v in f.wanted if v not in before] or f.wanted[-1:]:
                    problems += [f"version {v}: {p}" for p in _probe(server, f, v)]
                times.add("probe", started)
            if not problems:
                say(f"deploy: {name}: serving version(s) {', '.join(map(str, f.wanted))}, probe passed")
                continue
            failed.append(name)
            say(_restore(server, f, before, problems, timeout, times))
        say(f"deploy: timings: {times.line()}")
        if failed:
            raise UserError(f"deploying {', '.join(failed)} to {server.address} failed (said above); "
                            f"{'the previous versions serve again' if mode == 'explicit' else 'the repository pins the previous versions'}",
                            fix="fix the model (or the server: its log says why a load failed), run doit to publish a "
                                "new version, then deploy again")
        return 0
    finally:
        server.close()


def _restore(server: Server, folder: Folder, before: list[int], problems: list[str], timeout: float,
             times: Timings) -> str:
    """The previous versions back: pinned in the repository, and (explicit mode) loaded with that pin."""
    text = f"deploy: {folder.name}: version(s) {', '.join(map(str, folder.wanted))} failed: {'; '.join(problems)}"
    if not before:
        if server.mode == "explicit":
            server.unload(folder.name)
        return text + "; it was not served before: unloaded"
    publish.pin(folder.path, before, L.STAGED)
    pinned = Folder.read(folder.path)
    why = _activate(server, pinned, before, timeout, times)
    if why:
        return text + f"; restoring version(s) {', '.join(map(str, before))} failed too: {why}"
    return text + (f"; version(s) {', '.join(map(str, before))} restored and serving (the repository pins them until a "
                   "new version is published)")


def rollback(url: str, repo: Path, name: str, timeout: float, say) -> int:
    folders = published_folders(repo)
    if name not in folders:
        raise UserError(f"{name}: not published in {repo}/", key="NAME",
                        fix=f"name a published folder: {', '.join(folders) or '(none: run doit first)'}")
    f = folders[name]
    server = Server(url, timeout)
    try:
        _check_repository(server, server.index(), {name: f}, repo)
        current = server.ready_versions(name) or f.wanted
        older = [v for v in f.versions if v < min(current)] if current else []
        if not older:
            raise UserError(f"{name} has no version older than {', '.join(map(str, current)) or 'none'} in "
                            f"{f.path}/ (present: {', '.join(map(str, f.versions))})", key="versions.keep",
                            fix="keep more versions (manifest versions: {keep: 3}) before the next publication; "
                                "to serve another build, publish it with doit")
        target = [older[-1]]
        times = Timings()
        publish.pin(f.path, target, L.STAGED)
        why = _activate(server, Folder.read(f.path), target, timeout, times, _config_json(f, target))
        problems = [why] if why else [f"version {target[0]}: {p}" for p in _probe(server, f, target[0])]
        if problems:
            raise UserError(f"rolling {name} back to version {target[0]} failed: {'; '.join(problems)}",
                            fix="look at the server's log; `doit deploy` serves what the repository now names")
        say(f"rollback: {name}: serving version {target[0]} (was {', '.join(map(str, current))}); the repository pins "
            f"it until a new version is published; timings: {times.line()}")
        return 0
    finally:
        server.close()
