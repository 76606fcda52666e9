import os
from pathlib import Path

import pytest
import torch

os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
# Every experiment preset, by name
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def compose_config(tmp_path: Path, overrides: list[str]):
    """The train config as `python train.py OVERRIDES` would build it, writing under tmp_path."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[f"paths.output_dir={tmp_path}", f"paths.log_dir={tmp_path.parent}", *overrides],
        )


@pytest.fixture(scope="module")
def single_thread():
    """For modules of tiny tensor ops: a second intra-op thread only adds contention on 2 shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def train_with(tmp_path):
    """Run train.run with overrides; returns (cfg, metrics)."""
    import train

    def _run(*overrides: str, out: Path | None = None):
        cfg = compose_config(out or tmp_path, list(overrides))
        return cfg, train.run(cfg)

    return _run
