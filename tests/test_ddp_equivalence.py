"""1 process vs 2 processes (ddp_spawn, gloo) at the same global batch and seed give the same run.

Both runs use Lightning's DistributedSampler (1 or 2 replicas, one seed), so step k of either run sees
the same examples: the 2-process run splits each global batch of B into two halves of B/2, DDP
averages the two half-batch gradients into the full-batch gradient, and validation metrics are
synced means over the ranks' equal halves. For families whose training step is deterministic given
the batch (exact likelihood: the autoregressive backbones; Bradley–Terry reward model; DPO) the
weights, and so every validation and test metric, agree to float round-off (tolerance 1e-4 relative,
from the summation order of the gradient all-reduce over a few AdamW steps).

Families that draw noise inside the training step (VAE reparameterisation, diffusion timesteps and
noise, GAN latents, PPO rollouts) cannot match exactly: each rank draws its own noise for its half of
the batch, so the 2-process run sees other noise than the 1-process run (as a different seed would);
those families are checked under DDP for finite, synced, once-written results in their own test files
(test_distributed.py, test_diffusion_modules.py, test_gan.py, test_alignment_family.py).
"""
import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

TOLERANCE = 1e-4
TINY_GPT = ["model.backbone.n_layer=1", "model.backbone.n_embd=16"]
BACKBONES = {
    "gpt": ["experiment=char_gpt", *TINY_GPT],
    "s4d": ["experiment=char_s4d", "model.backbone.n_layer=1", "model.backbone.n_embd=16", "model.backbone.d_state=8"],
    "mamba": ["experiment=char_mamba", "model.backbone.n_layer=1", "model.backbone.n_embd=16",
              "model.backbone.d_state=4"],
}
TINY_POLICY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 48, "batch_size": 16, "steps": 40,
               "lr": 3.0e-3, "seed": 0}
PAIRS = [
    {"prompt": "KING: ", "chosen": "my good lord", "rejected": "thou vile wretch"},
    {"prompt": "Enter ", "chosen": "sweet love", "rejected": "bloody death"},
    {"prompt": "QUEEN: ", "chosen": "a gentle heart", "rejected": "a cursed day"},
    {"prompt": "Exit ", "chosen": "with joy", "rejected": "in grief"},
]


def one_and_two_processes(train_with, tmp_path, overrides: list[str], batch_key: str, global_batch: int,
                          per_batch_length: str | None = None, batches: int = 0) -> tuple[dict, dict]:
    """Run records of the same run on 1 and on 2 ddp_spawn processes, each step seeing `global_batch` examples."""
    records = []
    for devices in (1, 2):
        batch = [f"{batch_key}={global_batch // devices}"]
        if per_batch_length:  # datasets whose length is batches × batch size keep their global length
            batch.append(f"{per_batch_length}={batches * devices}")
        out = tmp_path / f"{devices}proc"
        train_with(*overrides, *batch, "trainer=ddp_spawn", f"trainer.devices={devices}", "logger=csv", out=out)
        records.append(json.loads((out / "run.json").read_text()))
    return records[0], records[1]


def assert_same_metrics(one: dict, two: dict, names: list[str]) -> None:
    assert one["status"] == two["status"] == "completed"
    for name in names:
        assert two["metrics"][name] == pytest.approx(one["metrics"][name], rel=TOLERANCE), name
    assert one["metrics"][names[0]] != two["metrics"].get("train/loss")  # the compared values are real metrics


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_autoregressive_backbones_match_on_one_and_two_processes(train_with, tmp_path, backbone):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs\n" * 60)
    overrides = [*BACKBONES[backbone], "data=text", f"data.path={text}", "data.block_size=16", "data.val_windows=16",
                 f"paths.data_dir={tmp_path / 'data'}", "debug=tiny", "trainer.limit_val_batches=2",
                 "trainer.limit_test_batches=2"]
    one, two = one_and_two_processes(train_with, tmp_path, overrides, "data.batch_size", 8,
                                     per_batch_length="data.batches_per_epoch", batches=4)
    assert_same_metrics(one, two, ["val/loss", "val/bpc", "test/loss"])


@pytest.mark.parametrize("experiment, metrics", [
    ("align_reward_model", ["val/loss", "val/reward_model_accuracy"]),
    ("align_dpo", ["val/loss", "val/implicit_reward_margin"]),
])
def test_preference_families_match_on_one_and_two_processes(train_with, tmp_path, experiment, metrics):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in PAIRS * 4) + "\n")
    overrides = [f"experiment={experiment}", "data=preferences", f"data.path={path}", "data.val_fraction=0.25",
                 "debug=tiny", "test=false", *(f"policy.default.{k}={v}" for k, v in TINY_POLICY.items())]
    if experiment == "align_dpo":
        overrides.append("callbacks.alignment.n_prompts=8")
    one, two = one_and_two_processes(train_with, tmp_path, overrides, "data.batch_size", 4)
    assert_same_metrics(one, two, metrics)
