"""Whether a rerun in a run's directory would continue it on other settings than it was trained with.

A rerun in an output directory resumes the run saved there. Changing what the run learns from (its data, its
model, its seed) on the way would silently make one record out of two experiments, so such a rerun is refused,
naming the keys, unless it names them in `resume.allow_config_change` (recorded in run.json's attempt). Budget
keys (`trainer.max_epochs`, `trainer.max_steps`), loggers, paths, callbacks and `ckpt_path` are not compared:
continuing longer, or watching differently, is what a resume is for.
"""
import json
from pathlib import Path

# The parts of the resolved config that decide what is learned.
COMPARED = ("data", "model", "seed")
# Leaf keys inside them that only say where files are or how fast things run, not what is learned.
NOT_COMPARED = frozenset({"data_dir", "cache_dir", "download", "url", "num_workers", "pin_memory",
                          "persistent_workers", "sample_chunk", "compile", "ckpt_path"})


def _flatten(value, prefix: str) -> dict:
    if isinstance(value, dict) and value:
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}"))
        return flat
    return {prefix: value}


def _plain(config: dict) -> dict:
    """`config` as run.json holds it (tuples as lists, other objects as text), so saved and composed compare."""
    return json.loads(json.dumps({key: config.get(key) for key in COMPARED}, default=str))


def config_changes(saved: dict, now: dict) -> dict[str, tuple]:
    """{dotted key: (saved value, value now)} for every key of `data`, `model` and `seed` that differs between
    a run's saved resolved config and the one composed now (a key present in one only: the other is
    `"<absent>"`); keys in NOT_COMPARED are left out."""
    before, after = (_flatten(_plain(config), "") for config in (saved, now))
    changes = {}
    for key in sorted(before.keys() | after.keys()):
        if key.rsplit(".", 1)[-1] in NOT_COMPARED:
            continue
        old, new = before.get(key, "<absent>"), after.get(key, "<absent>")
        if old != new:
            changes[key.lstrip(".")] = (old, new)
    return changes


def is_allowed(key: str, allowed: list[str]) -> bool:
    """Whether `key` is one of `allowed` or lies under one of them (`data` allows every `data.*` key)."""
    return any(key == name or key.startswith(f"{name}.") for name in allowed)


def check_resume_config(saved: dict, now: dict, allowed, output_dir: Path) -> dict[str, tuple]:
    """The changes from the run saved in `output_dir` that `allowed` (`resume.allow_config_change`) permits;
    a ValueError naming the others, how to start fresh and how to continue deliberately, if there are any."""
    if isinstance(allowed, str):
        allowed = [allowed]
    allowed = [str(name) for name in (allowed or [])]
    changes = config_changes(saved, now)
    refused = {key: change for key, change in changes.items() if not is_allowed(key, allowed)}
    if refused:
        listed = "; ".join(f"{key}: {old!r} saved, {new!r} now" for key, (old, new) in list(refused.items())[:8])
        more = f" (and {len(refused) - 8} more)" if len(refused) > 8 else ""
        keys = ",".join([*allowed, *refused])
        raise ValueError(
            f"{output_dir} holds a run trained with other settings than this config ({listed}{more}); resuming "
            f"would continue it on them. To start fresh, run in a new output directory (another hydra.run.dir, "
            f"or none); to continue this run deliberately, add 'resume.allow_config_change=[{keys}]' "
            "(recorded in run.json's attempt)")
    return changes
