"""The resolved config as a tree at the start of a run (lightning-hydra-template's `extras`): printed
with Rich on the console and written to the run's log, so what ran is visible without opening YAML."""
import logging

import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("divlab.train")

# The groups shown first, in this order; every other top-level key follows.
ORDER = ("data", "model", "callbacks", "logger", "trainer", "paths", "run")


def config_tree(cfg: DictConfig, always_on: dict[str, str] | None = None) -> rich.tree.Tree:
    """The config's groups, and after `callbacks` the callbacks every run adds in code (`always_on`: name → what
    it does), so the tree shows every callback the Trainer gets."""
    tree = rich.tree.Tree("config", style="dim", guide_style="dim")
    keys = [k for k in ORDER if k in cfg] + [k for k in cfg if k not in ORDER]
    for key in keys:
        branch = tree.add(str(key), style="bold", guide_style="dim")
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
        if key == "callbacks" and always_on:
            fixed = tree.add("callbacks (always on)", style="bold", guide_style="dim")
            for name, purpose in always_on.items():
                fixed.add(f"{name}: {purpose}")
    return tree


def show_config(cfg: DictConfig, always_on: dict[str, str] | None = None) -> None:
    """Print the tree (Rich) and log a one-line summary plus the resolved YAML (train.log)."""
    rich.print(config_tree(cfg, always_on))
    log.info("experiment %s: data %s, model %s, seed %s", cfg.get("experiment_name"),
             (cfg.get("data") or {}).get("_target_"), (cfg.get("model") or {}).get("_target_"), cfg.get("seed"))
    log.info("resolved config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))


def check_tags(cfg: DictConfig) -> None:
    """With `extras.enforce_tags`, a run must say what it is for (`tags=[ablation,lr]`): tags go to W&B and run.json."""
    if cfg.get("extras", {}).get("enforce_tags") and not cfg.get("tags"):
        raise ValueError("extras.enforce_tags=true but no tags were given; pass e.g. tags=[baseline,seed_sweep] "
                         "(they are recorded in W&B and run.json), or extras.enforce_tags=false")
