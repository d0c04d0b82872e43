"""A rich progress bar for TensorRT builds, fed by TensorRT's IProgressMonitor (phases nest; each gets a bar).

NEVER RUN AGAINST A REAL TENSORRT here: only against the stand-in of the tests (README "TensorRT").
"""
from __future__ import annotations


def monitor(trt):
    """A rich progress bar fed by TensorRT's IProgressMonitor (phases nest; each gets a bar).

    A display problem must never stop a build: TensorRT calls these from C++, where a Python exception
    would surface as an error of the build (or a False from step_complete, which cancels it). Every
    callback catches its own errors, keeps the first few in `errors` (they go into the record), and
    step_complete always answers True."""
    from rich.progress import Progress

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.bars = Progress(transient=True)
            self.tasks: dict[str, int] = {}
            self.errors: list[str] = []

        def _safely(self, what, call):
            try:
                call()
            except Exception as e:  # noqa: BLE001 - see the docstring: nothing may escape into TensorRT
                if len(self.errors) < 5:
                    self.errors.append(f"{what}: {type(e).__name__}: {e}")

        def phase_start(self, phase_name, parent_phase, num_steps):
            def start():
                if not self.tasks:
                    self.bars.start()
                indent = "  " if parent_phase else ""
                self.tasks[phase_name] = self.bars.add_task(f"{indent}{phase_name}", total=num_steps)
            self._safely("phase_start", start)

        def step_complete(self, phase_name, step):
            def update():
                if phase_name in self.tasks:
                    self.bars.update(self.tasks[phase_name], completed=step + 1)
            self._safely("step_complete", update)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            def finish():
                task = self.tasks.pop(phase_name, None)
                if task is not None:
                    self.bars.remove_task(task)
                if not self.tasks:
                    self.bars.stop()
            self._safely("phase_finish", finish)

    return Monitor()
