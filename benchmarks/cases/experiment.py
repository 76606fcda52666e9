"""A benchmark case built from an experiment config: its datamodule (set up), module and first training batch."""
from pathlib import Path

from hydra import compose, initialize_config_dir

from divlab.saved_runs import build_data_and_model

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def experiment_case(experiment: str, name: str, plain_step) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    data, module = build_data_and_model(cfg.data, cfg.model)
    data.setup("fit")
    return {"name": name, "module": module, "batch": next(iter(data.train_dataloader())),
            "plain_step": plain_step, "datamodule": data}
