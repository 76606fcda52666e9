"""A Lightning callback for peer benchmarks: the time at every training step's end, to time a `train.py` run's
steps from inside it (`+callbacks.step_times._target_=benchmarks.step_times.StepTimes
+callbacks.step_times.path=FILE`)."""
import json
import time
from pathlib import Path

import lightning as L


class StepTimes(L.Callback):
    """`time.perf_counter()` at every training step's end, written to `path` as a JSON list when training ends."""

    def __init__(self, path: str):
        self.path, self.times = path, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.path).write_text(json.dumps(self.times))
