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


def compose_train(overrides):
    """The train config that `python train.py OVERRIDES` would run, by Hydra's compose API: inside a running Hydra app
    (a command line, a sweep's job) on that app's config search path, else on `config_dir()`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    name = MAIN_CONFIG.removesuffix(".yaml")
    if GlobalHydra.instance().is_initialized():
        return compose(name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(name, overrides=list(overrides))
