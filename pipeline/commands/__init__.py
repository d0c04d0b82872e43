"""doit commands for people looking at the build, one module each (registered in pyproject.toml,
[tool.doit.plugins.command]; doit imports this package on every call, so nothing heavy here).

    doit status [--json]          status.py: per artifact: present, size, build time, up to date or why stale,
    doit graph [--out x.svg]                 verification; the DAG as graphviz DOT, coloured by status
    doit builtins [--json]        builtins.py: every family's built-in models and their settings
    doit recipe [--json] [--key]  recipe.py: each artifact's recipe hash; one cache key for the manifest
    doit clean-downloads [-n]                remove downloaded weights (`doit clean` never does)
    doit compare-tracks NAME      compare_tracks.py: the same images through every track, on this host
    doit adopt-config NAME        adopt_config.py: hand edits of models/NAME/config.pbtxt into the manifest
    doit deploy url=URL           deploy.py: the published versions into a live Triton, probed; rollback on failure
    doit rollback NAME url=URL               one version back
"""
from .adopt_config import AdoptConfig
from .builtins import Builtins
from .compare_tracks import CompareTracks
from .deploy import Deploy, Rollback
from .recipe import CleanDownloads, Recipe
from .status import Graph, Status

__all__ = ["AdoptConfig", "Builtins", "CleanDownloads", "CompareTracks", "Deploy", "Graph", "Recipe", "Rollback",
           "Status"]
