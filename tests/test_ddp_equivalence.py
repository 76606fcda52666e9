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
the batch (DistinctNoisePerRank), so the 2-process run is the 1-process run with other training noise
and the same initial weights and data order. The bound says exactly that: the 2-process run's
validation loss (each family evaluates on fixed noise) is no further from the 1-process run's than
three times what redrawing only the training noise of the 1-process run moves it (the largest of two
redraws). A run whose ranks trained on one half of the data, or whose metrics were not synced, moves
further than that.
"""
import json

import hydra
import lightning as L
import pytest
import torch
from test_alignment_family import TINY_POLICY_OVERRIDE

from divlab.lightning_modules.sequence import sequence_log_prob
from divlab.saved_runs import build_data_and_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

TOLERANCE = 1e-4
TINY_GPT = ["model.backbone.n_layer=1", "model.backbone.n_embd=16"]
BACKBONES = {
    "gpt": ["experiment=char_gpt", *TINY_GPT],
    "s4d": ["experiment=char_s4d", "model.backbone.n_layer=1", "model.backbone.n_embd=16", "model.backbone.d_state=8"],
    "mamba": ["experiment=char_mamba", "model.backbone.n_layer=1", "model.backbone.n_embd=16",
              "model.backbone.d_state=4"],
}
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
                 "debug=tiny", "test=false", TINY_POLICY_OVERRIDE]
    if experiment == "align_dpo":
        overrides.append("callbacks.alignment.n_prompts=8")
    one, two = one_and_two_processes(train_with, tmp_path, overrides, "data.batch_size", 4)
    assert_same_metrics(one, two, metrics)


class RedrawTrainingNoise(L.Callback):
    """Reseeds torch at the start of fit: same initial weights and data order, other training noise."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_fit_start(self, trainer, pl_module):
        torch.manual_seed(self.seed)


def validation_loss(cfg, run_dir) -> float:
    """`val/loss` of a run's last checkpoint, evaluated the same way for every run: one process, the
    configuration `cfg` (so the same validation batches and the same fixed evaluation noise)."""
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model, data_shape=tuple(datamodule.sample_shape), _convert_="all")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    [metrics] = trainer.validate(model, datamodule=datamodule, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt"),
                                 weights_only=True, verbose=False)
    return metrics["val/loss"]


def policy_log_likelihood(cfg, run_dir) -> float:
    """PPO has no validation loss of its own (it measures fresh rollouts): the fixed evaluation of its last
    checkpoint is the policy's mean log π(y_w | x) over the validation pairs' chosen completions."""
    datamodule, model = build_data_and_model(cfg.data, cfg.model)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    datamodule.setup("fit")
    with torch.no_grad():
        values = [sequence_log_prob(model.policy.eval(), batch["chosen_ids"], batch["chosen_mask"])
                  for batch in datamodule.val_dataloader()]
    return torch.cat(values).mean().item()


TINY_PPO = ["experiment=align_ppo", TINY_POLICY_OVERRIDE,
            "data.n_prompts=48", "data.drop_ties=false", "data.prompt_length=6", "data.completion_length=10"]
STOCHASTIC = {
    "vae": (["experiment=vae_ring8"], validation_loss, 64),
    "gan_wgan_gp": (["experiment=gan_ring8", "divergence=wasserstein"], validation_loss, 64),
    "gan_mmd": (["experiment=gan_ring8", "divergence=mmd"], validation_loss, 64),
    "ddpm": (["experiment=ddpm_ring8"], validation_loss, 64),
    "score": (["experiment=score_ring8"], validation_loss, 64),
    "ppo": (TINY_PPO, policy_log_likelihood, 8),
}


@pytest.mark.parametrize("family", sorted(STOCHASTIC))
def test_stochastic_families_on_two_processes_differ_from_one_only_as_much_as_new_training_noise(
        train_with, tmp_path, family):
    # The families' own validation loss only: no sampling callbacks (a 1000-step DDPM sampler per epoch).
    family_overrides, evaluate, batch = STOCHASTIC[family]
    overrides = [*family_overrides, "debug=tiny", "trainer.max_epochs=4", "test=false", "callbacks=none",
                 "trainer=ddp_spawn", "logger=csv"]
    runs = {}
    for name, extra in {"one": [f"data.batch_size={batch}", "trainer.devices=1"],
                        "two": [f"data.batch_size={batch // 2}", "trainer.devices=2"],
                        **{f"redraw{seed}": [f"data.batch_size={batch}", "trainer.devices=1",
                                             f"+callbacks.redraw._target_={__name__}.RedrawTrainingNoise",
                                             f"+callbacks.redraw.seed={seed}"] for seed in (101, 202)}}.items():
        cfg, _ = train_with(*overrides, *extra, out=tmp_path / name)
        record = json.loads((tmp_path / name / "run.json").read_text())
        assert record["status"] == "completed" and record["global_step"] > 0
        runs[name] = (cfg, record["global_step"])
    assert runs["one"][1] == runs["two"][1]
    one_cfg = runs["one"][0]
    loss = {name: evaluate(one_cfg, tmp_path / name) for name in runs}
    noise_scale = max(abs(loss[name] - loss["one"]) for name in ("redraw101", "redraw202"))
    assert noise_scale > 0  # the training noise is real: redrawing it moves the result
    assert abs(loss["two"] - loss["one"]) <= 3 * noise_scale, loss
