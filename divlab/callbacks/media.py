"""Media for runs: a PNG file in the run directory always, and the same image on W&B when present."""
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger


def log_image_file(trainer, key: str, path: Path, caption: str | None = None) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], caption=[caption or path.stem], step=trainer.global_step)
