"""The artifact cache shared by many hosts: a local folder (file://) and S3 over HTTP (moto's S3 server).

Writers and readers are separate processes, as CI jobs are. What a user depends on: a reader restores
either nothing or one writer's complete entry (outputs and record from the same build), never a torn
one; an upload killed half-way is never served, and the next writer completes the entry.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from helpers.project import REPO

KEY = "5a" * 32

# argv: role url key workdir [writer-id]. A writer makes an output and a record naming its id (builds of
# one recipe may differ in bytes: TensorRT engines do) and stores them; a reader restores until it can.
WORKER = textwrap.dedent(r"""
    import json, os, signal, sys, time
    from pathlib import Path
    sys.path.insert(0, os.environ["PIPELINE_REPO"])
    from pipeline.engine.cache import ArtifactCache
    role, url, key, work = sys.argv[1:5]
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    out, rec = work / "model.plan", work / "model.plan.verification.json"
    cache = ArtifactCache(url)
    if role in ("writer", "killed-writer"):
        wid = sys.argv[5]
        out.write_bytes(f"plan of writer {wid}\n".encode() * 200_000)  # 3.4 MB: several S3 parts' worth of time
        rec.write_text(json.dumps({"writer": wid}))
        if role == "killed-writer":  # SIGKILL after the first file of the entry is uploaded
            put = cache._put
            def put_then_die(src, dst):
                put(src, dst)
                os.kill(os.getpid(), signal.SIGKILL)
            cache._put = put_then_die
        cache.store(key, [out], rec)
    else:
        deadline = time.time() + 60
        seen = 0
        while time.time() < deadline:
            cache = ArtifactCache(url)
            if hasattr(cache.fs, "invalidate_cache"):
                cache.fs.invalidate_cache()
            if cache.restore(key, [out], rec, lambda f: f.with_name(f".{f.name}.tmp-{os.getpid()}")):
                wid = json.loads(rec.read_text())["writer"]
                assert out.read_bytes() == f"plan of writer {wid}\n".encode() * 200_000, "torn or mixed entry"
                seen += 1
                if seen == 3:
                    print("RESTORED", wid)
                    break
                out.unlink(); rec.unlink()
            else:
                time.sleep(0.01)
        else:
            print("NOTHING")
""")


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a free loopback port; the bucket `cache`; credentials for every subprocess."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket="cache")
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(params=["file", "s3"])
def url(request, tmp_path):
    if request.param == "file":
        return f"file://{tmp_path / 'cache'}"
    request.getfixturevalue("s3")
    return f"s3://cache/{request.node.name.replace('[', '-').rstrip(']')}"


def start(role, url, work, *extra):
    env = {**os.environ, "PIPELINE_REPO": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", WORKER, role, url, KEY, str(work), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_writers_of_one_entry_and_readers_never_see_a_torn_one(url, tmp_path):
    readers = [start("reader", url, tmp_path / f"r{i}") for i in range(2)]
    writers = [start("writer", url, tmp_path / f"w{i}", str(i)) for i in range(4)]
    for w in writers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
        assert "could not store" not in err, err
    results = [r.communicate(timeout=120) for r in readers]
    for (out, err), r in zip(results, readers):
        assert r.returncode == 0 and out.startswith("RESTORED"), out + err
        assert "unusable" not in err, err  # no reader ever met an entry whose files did not match
    from pipeline.engine.cache import ArtifactCache

    cache = ArtifactCache(url)
    index = json.loads(cache.fs.cat_file(f"{cache._dir(KEY)}/index.json"))
    assert {m["blob"] for m in index["outputs"]} | {index["record"]["blob"]} <= \
        {p.rsplit("/", 1)[-1] for p in cache.fs.ls(cache._dir(KEY), detail=False)}


def test_an_interrupted_upload_is_never_served_and_the_next_writer_completes_it(url, tmp_path):
    from pipeline.engine.cache import ArtifactCache

    killed = start("killed-writer", url, tmp_path / "k", "killed")
    killed.communicate(timeout=120)
    assert killed.returncode == -9
    cache = ArtifactCache(url)
    cache.fs.invalidate_cache()
    left = cache.fs.ls(cache._dir(KEY), detail=False)
    assert len(left) == 1 and not any(p.endswith("index.json") for p in left), left  # a blob, no index
    out, rec = tmp_path / "r" / "model.plan", tmp_path / "r" / "rec.json"
    out.parent.mkdir()
    assert not cache.restore(KEY, [out], rec, lambda f: f.with_name("." + f.name + ".tmp"))
    assert not out.exists() and not rec.exists() and not list(out.parent.iterdir())
    w = start("writer", url, tmp_path / "w", "second")
    _, err = w.communicate(timeout=120)
    assert w.returncode == 0 and "could not store" not in err, err
    reader = start("reader", url, tmp_path / "r2")
    got, err = reader.communicate(timeout=120)
    assert got.strip() == "RESTORED second", got + err


def test_a_readers_own_failure_never_deletes_the_entry(url, tmp_path):
    """A reader that cannot write where it restores (its disk, its permissions) misses; the entry, maybe a
    plan only one GPU model can rebuild, stays for everyone else."""
    from pipeline.engine.cache import ArtifactCache

    w = start("writer", url, tmp_path / "w", "only")
    _, err = w.communicate(timeout=120)
    assert w.returncode == 0, err
    cache = ArtifactCache(url)
    out, rec = tmp_path / "r" / "model.plan", tmp_path / "r" / "rec.json"
    nowhere = lambda f: tmp_path / "no-such-folder" / f.name  # noqa: E731
    assert not cache.restore(KEY, [out], rec, nowhere)
    cache.fs.invalidate_cache()
    assert cache.fs.exists(f"{cache._dir(KEY)}/index.json")
    reader = start("reader", url, tmp_path / "r2")
    got, err = reader.communicate(timeout=120)
    assert got.strip() == "RESTORED only", got + err
