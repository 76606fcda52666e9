"""Log `pl_module.sample(n)` every N epochs: a PNG (or text file) in `<output_dir>/samples/` and on W&B, and the
time it took as `time/val/samples_seconds`, beside the evaluation callbacks' own. Every grid is drawn from the
callback's own `seed` (the same latents each time, so grids differ only by the weights), never from training's
random stream, the grid at the end of training included."""
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from divlab.callbacks.evaluation_rng import seeded_stream
from divlab.callbacks.media import log_image_file, log_text_samples
from divlab.callbacks.periodic import check_cadence_is_validated, validation_due
from divlab.callbacks.render import RENDERERS
from divlab.eval_mode import eval_mode
from divlab.validation import check_positive


class SampleLogger(L.Callback):
    def __init__(self, n_samples: int = 64, every_n_epochs: int = 1, dirname: str = "samples", seed: int = 0):
        self.n_samples = check_positive("callbacks.samples.n_samples", n_samples)
        self.every_n_epochs = check_positive("callbacks.samples.every_n_epochs", every_n_epochs)
        self.dirname = dirname
        self.seed = seed
        self._last_step = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            check_cadence_is_validated(trainer, "samples", self.every_n_epochs)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if validation_due(trainer, self.every_n_epochs):
            start = time.perf_counter()
            self.log_samples(trainer, pl_module)
            pl_module.log("time/val/samples_seconds", time.perf_counter() - start, rank_zero_only=True,
                          on_step=False, on_epoch=True)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._last_step != trainer.global_step:
            self.log_samples(trainer, pl_module)

    @rank_zero_only
    def log_samples(self, trainer, pl_module) -> Path | None:
        datamodule = trainer.datamodule
        render = RENDERERS.get(getattr(datamodule, "kind", None))
        if render is None:
            return None
        with eval_mode(pl_module), torch.no_grad(), seeded_stream(self.seed, pl_module.device):
            samples = pl_module.sample(self.n_samples).cpu()
        folder = Path(trainer.default_root_dir) / self.dirname
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"samples_step{trainer.global_step:07d}.png"
        path = render(samples, path, datamodule) or path
        if path.suffix == ".png":
            log_image_file(trainer, "samples", path)
        else:
            log_text_samples(trainer, "samples", [datamodule.decode(row) for row in samples])
        self._last_step = trainer.global_step
        return path
