"""`doit shard=I/N`: a CI job's share of the manifest — every model in exactly one shard, the same split in every
job, balanced, ensembles with their members, composed with GPU targets."""
from __future__ import annotations

import re

from helpers.project import make_project


def test_shards_split_the_models_deterministically_and_compose_with_gpu_targets(tmp_path):
    """doit shard=I/N: every model in exactly one shard, the same split in every job, loads balanced."""
    from pipeline.declarations import sharding
    from pipeline.declarations.dag import all_steps
    from pipeline.declarations.manifest.records import resolve

    (tmp_path / "m.yaml").write_text(
        'defaults: {formats: [onnx], triton: "24.12", gpu_targets: ["8.6", "9.0"]}\n'
        "models:\n" + "".join(f"  m{i}: {{arch: yolo11n{', formats: [onnx, trt, trt_end2end]' if i % 3 == 0 else ''}}}\n"
                              for i in range(7)) +
        "encoders:\n  e: {weights: untrained}\n  f: {weights: untrained, formats: [onnx]}\n"
        "ensembles:\n  search: {detector: m1, encoder: f}\n")  # needs m1's and f's folders: one shard
    models = resolve(tmp_path / "m.yaml", tmp_path)
    for n in (1, 2, 3, 4):
        shards = [sharding.select(models, f"{i}/{n}", all_steps()) for i in range(1, n + 1)]
        names = [m["name"] for s in shards for m in s]
        assert sorted(names) == sorted(m["name"] for m in models)  # a partition
        assert shards == [sharding.select(models, f"{i}/{n}", all_steps()) for i in range(1, n + 1)]
        loads = [sharding.work(s, all_steps()) for s in shards]
        of = sharding.units(models)
        biggest = max(sharding.work([m for m in models if of[m["name"]] == u], all_steps()) for u in set(of.values()))
        assert max(loads) - min(loads) <= biggest, loads
        together = [s for s in shards if any(m["name"] == "search" for m in s)]
        assert len(together) == 1 and {"m1", "f_image_encoder", "f_text_encoder"} <= {m["name"] for m in together[0]}
        for s in shards:  # an encoder's image and text towers share their weights step: one shard
            assert len({m["encoder"] for m in s if "encoder" in m}) == sum(1 for m in s if m.get("role") == "image")
    proj = make_project(tmp_path / "proj")
    proj.write("manifests/m.yaml", (tmp_path / "m.yaml").read_text())
    listed = []
    for i in (1, 2):
        run = proj.doit("manifest=manifests/m.yaml", f"shard={i}/2", "list", "--all")
        assert run.rc == 0, run.text
        listed.append(set(re.findall(r"^plan:(\S+)", run.out, re.M)))
    assert listed[0] and listed[1] and not listed[0] & listed[1]
    assert listed[0] | listed[1] == {f"{name}.sm{cc}" for cc in ("86", "90") for name in
                                     [f"m{i}{s}" for i in (0, 3, 6) for s in ("_trt", "_trt_end2end")]
                                     + ["e_image_encoder", "e_text_encoder"]}  # f has no plan
    bad = proj.doit("manifest=manifests/m.yaml", "shard=0/2", "list")
    assert bad.rc != 0 and "at 'shard'" in bad.err and "Fix:" in bad.err and "Traceback" not in bad.err
