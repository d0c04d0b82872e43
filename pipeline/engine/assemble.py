"""`doit assemble`: the repository is complete, every GPU target of every folder — or a non-zero exit
naming exactly the missing (folder, GPU target) pairs and where to build each."""
from __future__ import annotations

import os

from .errors import UserError
from .cache import ArtifactCache


def check_published(expected: list[tuple[str, list[dict]]], manifest: str | None):
    """doit python-action, after every folder task ran. expected: (published folder, its GPU targets, each
    {"plan": the staged plan's path, "cc", "where": where to build it}). publish.py publishes only complete
    folders; a missing pair is a target whose plan is neither built nor restored into staging."""
    from doit.exceptions import TaskFailed

    missing = [(folder, t) for folder, targets in expected for t in targets if not os.path.isfile(t["plan"])]
    unpublished = [folder for folder, _ in expected if not os.path.isfile(f"{folder}/config.pbtxt")]
    if not missing and unpublished:  # every plan is there, yet a folder was not published: a bug, not the user's
        raise RuntimeError(f"every plan is staged but {', '.join(unpublished)} was not published")
    if not missing:
        print(f"   assemble: complete: {len(expected)} folder(s) with GPU targets, "
              f"{sum(len(t) for _, t in expected)} plan(s)")
        return None
    cache = ArtifactCache.configured()
    lines = [f"  {folder}  compute capability {t['cc']}: build on {t['where']}" for folder, t in missing]
    return TaskFailed(UserError(
        f"the repository is incomplete: {len(missing)} (folder, GPU target) pair(s) have no plan here nor in the "
        f"artifact cache {cache.url if cache else '(off)'}", key="gpu_targets", file=manifest,
        fix="run doit on a GPU host of each listed compute capability with the same manifest and cache, then doit "
            "assemble again").paragraph + "\n" + "\n".join(lines))
