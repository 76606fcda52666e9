"""Media for runs: a file in the run directory always (PNG, text), and the same media on W&B when present."""
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger


def log_image_file(trainer, key: str, path: Path, caption: str | None = None) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], caption=[caption or path.stem], step=trainer.global_step)


def log_text_samples(trainer, key: str, texts: list[str]) -> None:
    """Text samples as a W&B Table (one row per sample); the run directory gets them as a .txt file."""
    rows = [[trainer.global_step, text] for text in texts]
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_text(key=key, columns=["step", "sample"], data=rows, step=trainer.global_step)
