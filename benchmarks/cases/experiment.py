"""A benchmark case built from an experiment config: its datamodule (set up), module and first training batch."""
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def experiment_case(experiment: str, name: str, plain_step) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    data = hydra.utils.instantiate(cfg.data)
    data.setup()
    module = hydra.utils.instantiate(cfg.model, data_shape=tuple(data.sample_shape), _convert_="all")
    return {"name": name, "module": module, "batch": next(iter(data.train_dataloader())),
            "plain_step": plain_step, "datamodule": data}
