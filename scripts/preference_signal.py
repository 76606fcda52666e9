"""How much signal the controlled-sentiment preference pairs carry (issue 20): the true reward's share of
exact zeros and of tied pairs, its spread, and the accuracy ceiling that Bradley–Terry label noise sets for
any reward model (on the pairs the data keeps).

    python scripts/preference_signal.py [hydra overrides, e.g. data.completion_length=56 data.samples_per_prompt=4]

Uses (and on first use builds) the cached default reference policy and the task's cached pairs.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra
import torch
from hydra import compose, initialize_config_dir

from divlab.alignment.controlled_task import label_accuracy_ceiling
from divlab.alignment.default_policy import prepare_reference_policy
from divlab.config_dir import config_dir


def main(overrides: list[str]) -> None:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=align_dpo", *overrides])
    prepare_reference_policy(**cfg.policy)
    data = hydra.utils.instantiate(cfg.data, drop_ties=False)
    records = data.records
    chosen = torch.tensor([r["chosen_reward"] for r in records])
    rejected = torch.tensor([r["rejected_reward"] for r in records])
    rewards = torch.cat([chosen, rejected])
    tied = chosen == rejected
    kept = ~tied if cfg.data.drop_ties else torch.ones_like(tied)
    ceiling = label_accuracy_ceiling(chosen[kept], rejected[kept], cfg.data.label_temperature).item()
    k = cfg.data.get("samples_per_prompt", 2)
    print(f"pairs {len(records)} ({cfg.data.n_prompts} prompts × {k * (k - 1) // 2} pairs of {k} samples, "
          f"completions of {cfg.data.completion_length} tokens)")
    print(f"true reward: exact zeros {(rewards == 0).float().mean():.1%}, std {rewards.std():.3f}, "
          f"tied pairs {tied.float().mean():.1%}")
    print(f"pairs kept (drop_ties={cfg.data.drop_ties}): {int(kept.sum())} "
          f"({int(kept.sum()) / cfg.data.n_prompts:.2f} per prompt); Bradley–Terry labels at temperature "
          f"{cfg.data.label_temperature}: accuracy ceiling {ceiling:.1%}, label noise {1 - ceiling:.1%}")


if __name__ == "__main__":
    main(sys.argv[1:])
