"""Lightning's CSVLogger, made safe for `ddp_spawn`.

Under `ddp_spawn`, fit and test run in separate spawned processes that each receive a copy of the
writer created in the main process, with an empty list of columns. Lightning's writer then rewrites
`metrics.csv` under the test columns only and fails on the training rows. This writer first reads the
header already on disk, so every stage appends to one file with the union of the columns.
"""
import csv

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _HeaderMergingWriter(ExperimentWriter):
    def _record_new_keys(self) -> set[str]:
        # Only a writer that has not written yet can disagree with the header on disk.
        if not self.metrics_keys and self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(header)
        return super()._record_new_keys()


class SpawnSafeCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HeaderMergingWriter(log_dir=self.log_dir)
        return self._experiment
