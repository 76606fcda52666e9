"""Where divlab's Hydra configs are: the checkout's `configs/` when divlab runs from a checkout (or an editable
install of one), else the copy shipped in the wheel as `divlab/configs` (setup.py maps `configs/` there)."""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MAIN_CONFIG = "train.yaml"


def config_dir() -> Path:
    """The directory holding `train.yaml`, `eval.yaml` and the config groups."""
    for candidate in (PACKAGE_DIR.parent / "configs", PACKAGE_DIR / "configs"):
        if (candidate / MAIN_CONFIG).is_file():
            return candidate
    raise FileNotFoundError(f"no divlab configs: neither {PACKAGE_DIR.parent / 'configs'} (a checkout) nor "
                            f"{PACKAGE_DIR / 'configs'} (an installed wheel) holds {MAIN_CONFIG}; reinstall divlab")
