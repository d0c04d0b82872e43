"""What the commands read off doit's tasks: the runner spec of each artifact task, and the options they share."""
from __future__ import annotations

opt_json = {"name": "as_json", "long": "json", "type": bool, "default": False,
            "help": "print JSON for scripts instead of a table"}


def spec_of(task) -> dict | None:
    """The runner spec of an artifact task (its python-action's argument), None for groups."""
    from ..engine.runner import run_step

    return next((a.args[0] for a in task.actions if getattr(a, "py_callable", None) is run_step), None)


def step_specs(tasks) -> dict:
    """{task name: the runner spec} of every artifact task."""
    return {t.name: s for t in tasks if (s := spec_of(t)) is not None}
