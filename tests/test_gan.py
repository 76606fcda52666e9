"""GAN family: one step of every divergence on points and images, n_critic, sampling, config errors,
and whole runs on 2 processes (ddp_spawn), in bf16-mixed and (slow) to mode coverage on ring8."""
import functools
import json
import math

import hydra
import lightning as L
import pytest
import torch
from hydra.errors import InstantiationException

from conftest import compose_config
from divlab.evaluation.toy import mode_scores
from divlab.lightning_modules.divergences import DIVERGENCES, get_divergence, mmd2_unbiased
from divlab.lightning_modules.gan import GAN
from divlab.lightning_modules.networks.dcgan import DCGANCritic, DCGANGenerator
from divlab.lightning_modules.networks.mlp import MLP

ADAM = functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999))
NETWORKS = {
    "points": ((2,), functools.partial(MLP, hidden=32), functools.partial(MLP, hidden=32)),
    "image": ((1, 8, 8), functools.partial(DCGANGenerator, width=8), functools.partial(DCGANCritic, width=8)),
}


def make_gan(kind: str = "points", **kwargs) -> GAN:
    data_shape, generator, critic = NETWORKS[kind]
    return GAN(data_shape, generator, critic, ADAM, ADAM, **kwargs)


def batches(kind: str, n_batches: int) -> list[torch.Tensor]:
    shape = NETWORKS[kind][0]
    if kind == "points":
        return [torch.randn(16, *shape) * 0.1 + 1.0 for _ in range(n_batches)]
    return [torch.rand(16, *shape) * 2 - 1 for _ in range(n_batches)]


def fit(model: GAN, data: list[torch.Tensor], **trainer_kwargs) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, **trainer_kwargs,
    )
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    return trainer


def snapshot(module: torch.nn.Module | None) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()] if module is not None else []


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters()))


@pytest.mark.parametrize("kind", ["points", "image"])
@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
def test_one_step_of_every_divergence_is_finite_and_moves_both_networks(kind, divergence):
    torch.manual_seed(0)
    model = make_gan(kind, divergence=divergence, noise_dim=4, gp_weight=1.0, r1_gamma=0.1)
    generator_before, critic_before = snapshot(model.generator), snapshot(model.critic)
    trainer = fit(model, batches(kind, 1))
    metrics = trainer.logged_metrics
    names = {"train/divergence_estimate", "train/generator_loss"} | ({"train/critic_loss"} if model.critic else set())
    assert names <= set(metrics), metrics
    assert all(torch.isfinite(metrics[name]) for name in names), metrics
    assert changed(generator_before, model.generator)
    if DIVERGENCES[divergence].needs_critic:
        assert changed(critic_before, model.critic)
    else:
        assert model.critic is None and len(trainer.optimizers) == 1


def test_critic_takes_n_critic_steps_per_generator_step():
    torch.manual_seed(0)
    model = make_gan(n_critic=3)
    generator_before = snapshot(model.generator)
    trainer = fit(model, batches("points", 2))
    assert not changed(generator_before, model.generator)
    assert trainer.global_step == 2
    trainer = fit(model, batches("points", 3))
    assert changed(generator_before, model.generator)
    assert trainer.global_step == 4


def test_each_schedule_steps_with_its_own_optimiser():
    """n_critic=2 over 8 batches: 8 critic steps, 4 generator steps. Cosine schedules with T_max = those
    counts end at exactly 0; stepped every batch, the generator's would pass T_max and climb back
    (cos(2π) = 1: back at 1e-3), and never stepped both would stay at 1e-3."""
    torch.manual_seed(0)
    cosine = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, eta_min=0.0)
    model = make_gan(n_critic=2, generator_scheduler=functools.partial(cosine, T_max=4),
                     critic_scheduler=functools.partial(cosine, T_max=8))
    trainer = fit(model, batches("points", 8))
    generator_opt, critic_opt = trainer.optimizers
    assert generator_opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert critic_opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert [config.scheduler.last_epoch for config in trainer.lr_scheduler_configs] == [4, 8]


def test_a_generator_schedule_alone_and_no_critic_schedule_without_a_critic():
    linear = functools.partial(torch.optim.lr_scheduler.LinearLR, start_factor=1.0, end_factor=0.5, total_iters=2)
    trainer = fit(make_gan(divergence="mmd", generator_scheduler=linear), batches("points", 2))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="critic_scheduler.*'mmd' has no critic"):
        make_gan(divergence="mmd", critic_scheduler=linear)


@pytest.mark.parametrize("kind", ["points", "image"])
def test_sample_has_the_data_layout(kind):
    model = make_gan(kind).eval()
    samples = model.sample(5)
    assert samples.shape == (5, *NETWORKS[kind][0])
    assert torch.isfinite(samples).all()
    if kind == "image":
        assert samples.min() >= -1 and samples.max() <= 1


def test_wasserstein_gets_a_gradient_penalty_unless_told_otherwise():
    assert make_gan(divergence="wasserstein").hparams.gp_weight == 10.0
    assert make_gan(divergence="wasserstein", gp_weight=0.0).hparams.gp_weight == 0.0
    assert make_gan(divergence="js").hparams.gp_weight == 0.0


def test_hyperparameters_name_family_and_divergence():
    model = make_gan(divergence="hinge")
    assert (model.hparams.family, model.hparams.divergence) == ("gan", "hinge")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"divergence": "jensen"}, "unknown divergence 'jensen'; valid choices: hinge, js, kl, least_squares"),
        ({"n_critic": 0}, "model.n_critic must be > 0, got 0"),
        ({"gp_weight": -1.0}, "model.gp_weight must be >= 0, got -1.0"),
        ({"r1_gamma": -0.1}, "model.r1_gamma must be >= 0, got -0.1"),
    ],
)
def test_bad_hyperparameters_fail_early_with_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_gan(**kwargs)


def test_divergence_from_the_command_line_reaches_the_model(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=gan_ring8", "divergence=js"])
    assert cfg.model.divergence == "js"
    cfg = compose_config(tmp_path, ["~experiment", "model=gan", "data=ring8", "divergence=wasserstein"])
    assert cfg.model.divergence == "wasserstein"
    model = hydra.utils.instantiate(cfg.model, data_shape=(2,), _convert_="all")
    assert model.hparams.divergence == "wasserstein"


def test_unknown_divergence_on_the_command_line_lists_the_valid_ones(train_with, tmp_path):
    with pytest.raises((ValueError, InstantiationException), match="unknown divergence 'jensen'; valid choices: hinge"):
        train_with("experiment=gan_ring8", "debug=fdr", "divergence=jensen")
    assert not (tmp_path / "checkpoints").exists()


def test_gan_trains_on_two_processes_with_ddp_spawn(train_with, tmp_path):
    train_with("experiment=gan_ring8", "debug=tiny", "trainer=ddp_spawn", "trainer.devices=2", "logger=csv",
               "test=false", "model.gp_weight=1", "callbacks.toy_metrics.every_n_epochs=5")
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed" and record["family"] == "gan"
    assert all(torch.isfinite(torch.tensor(record["metrics"][name]))
               for name in ("train/critic_loss", "train/generator_loss", "val/divergence_estimate", "val/loss"))
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 6


def test_gan_trains_in_bf16_mixed(train_with, tmp_path):
    train_with("experiment=gan_fashion_mnist", "debug=tiny", "trainer=cpu", "trainer.precision=bf16-mixed",
               "logger=csv", "data.batch_size=16", "model.r1_gamma=1", "callbacks.image_metrics.every_n_epochs=5")
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["config"]["trainer"]["precision"] == "bf16-mixed"
    assert all(torch.isfinite(torch.tensor(value)) for name, value in record["metrics"].items() if "/" in name)
    assert {"train/divergence_estimate", "val/loss", "test/loss"} <= set(record["metrics"])


@pytest.mark.slow
def test_ring8_non_saturating_covers_at_least_six_modes(train_with, tmp_path):
    from divlab import load_run

    train_with("experiment=gan_ring8", "divergence=non_saturating", "logger=csv")
    _, datamodule, model = load_run(tmp_path)
    torch.manual_seed(0)
    scores = mode_scores(model.sample(2500), datamodule.centres, datamodule.sigma)
    assert scores.modes_covered >= 6, scores


# ---------------------------------------------------------------- packing, critic options


def test_pack_puts_consecutive_samples_side_by_side():
    from divlab.lightning_modules.gan import pack

    points = torch.arange(10.0).view(5, 2)  # 5 samples of 2-d points; the 5th does not fill a pack of 2
    assert pack(points, 2).tolist() == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
    images = torch.arange(4 * 1 * 2 * 2.0).view(4, 1, 2, 2)
    packed = pack(images, 2)
    assert packed.shape == (2, 2, 2, 2)
    assert torch.equal(packed[1, 0], images[2, 0]) and torch.equal(packed[1, 1], images[3, 0])


@pytest.mark.parametrize("kind", ["points", "image"])
@pytest.mark.parametrize("divergence", ["js", "wasserstein", "hinge"])
def test_packed_critic_sees_m_samples_and_every_divergence_trains(kind, divergence):
    torch.manual_seed(0)
    model = make_gan(kind, divergence=divergence, packing=4)
    shape = NETWORKS[kind][0]
    assert model.critic(torch.zeros(3, 4 * shape[0], *shape[1:])).shape == (3,)  # in_shape = packed shape
    assert model.score(torch.zeros(16, *shape)).shape == (4,)  # 16 samples → 4 critic scores
    generator, critic = snapshot(model.generator), snapshot(model.critic)
    fit(model, batches(kind, 2))
    assert changed(generator, model.generator) and changed(critic, model.critic)


def test_packing_needs_a_critic_and_whole_batches():
    with pytest.raises(ValueError, match="model.packing=2 .* 'mmd' has none"):
        make_gan(divergence="mmd", packing=2)


def test_mmd_bandwidths_set_the_generators_kernel_and_only_for_mmd():
    x, fake = torch.randn(16, 2), torch.randn(16, 2) + 0.5
    gan = make_gan(divergence="mmd", mmd_bandwidths=[0.05, 0.5])
    expected = mmd2_unbiased(x, fake, [0.05, 0.5])  # closed-form-tested in test_divergences.py
    assert gan.objective.generator_loss(gan.score(x), gan.score(fake)).item() == pytest.approx(expected.item())
    assert make_gan(divergence="mmd").objective is get_divergence("mmd")
    with pytest.raises(ValueError, match=r"model\.mmd_bandwidths=\[0\.1\] .* not of 'js'"):
        make_gan(divergence="js", mmd_bandwidths=[0.1])
    with pytest.raises(ValueError, match=r"model\.least_squares_labels=\[0, 1, 1\] sets the labels of divergence "
                                         r"'least_squares', not of 'hinge'"):
        make_gan(divergence="hinge", least_squares_labels=[0, 1, 1])
    with pytest.raises(ValueError, match="model.packing=3 needs training batches of a multiple of it, "
                       "got a batch of 16"):
        fit(make_gan(divergence="js", packing=3), batches("points", 1))


def test_spectral_norm_critic_layers_have_unit_largest_singular_value():
    torch.manual_seed(0)
    critic = MLP((2,), (), hidden=64, depth=3, spectral_norm=True)
    for _ in range(30):  # power iteration refines σ on every forward pass in training mode
        critic(torch.randn(8, 2))
    critic.eval()
    for layer in critic.net:
        if isinstance(layer, torch.nn.Linear):
            assert torch.linalg.matrix_norm(layer.weight, ord=2).item() == pytest.approx(1.0, abs=0.02)


def test_mlp_activations_are_the_named_ones_and_an_unknown_name_lists_them():
    x = torch.tensor([[-1.0, 2.0]])
    elu = MLP((2,), (2,), hidden=2, depth=1, activation="elu")
    with torch.no_grad():
        for layer in elu.net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.copy_(torch.eye(2))
                layer.bias.zero_()
    assert elu(x)[0].tolist() == pytest.approx([math.exp(-1.0) - 1.0, 2.0])  # ELU: e^x − 1 below 0, x above
    tanh = MLP((2,), (2,), hidden=2, depth=1, activation="tanh", orthogonal_gain=1.0)
    with torch.no_grad():
        tanh.net[0].weight.copy_(torch.eye(2))
        tanh.net[2].weight.copy_(torch.eye(2))
    assert tanh(x)[0].tolist() == pytest.approx([math.tanh(-1.0), math.tanh(2.0)])
    with pytest.raises(ValueError, match="unknown MLP activation 'gelu'; "
                       "valid choices: elu, leaky_relu, relu, silu, tanh"):
        MLP((2,), (), activation="gelu")


def test_orthogonal_initialisation_scales_orthonormal_rows_by_the_gain_and_zeroes_biases():
    torch.manual_seed(0)
    mlp = MLP((256,), (2,), hidden=128, depth=2, activation="tanh", orthogonal_gain=1.4)
    for layer in (module for module in mlp.net if isinstance(module, torch.nn.Linear)):
        w = layer.weight.detach().double()  # [out, in]: orthonormal rows when out ≤ in, columns otherwise
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, 1.4**2 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-5, rtol=0)
        assert not layer.bias.any()
    with pytest.raises(ValueError, match="init_std=0.02 and orthogonal_gain=1.4 are two initialisations"):
        MLP((2,), (), init_std=0.02, orthogonal_gain=1.4)


def test_maxout_takes_the_max_over_pieces_by_hand():
    from divlab.lightning_modules.networks.maxout import Maxout, MaxoutMLP

    layer = Maxout(2, 1, pieces=3)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        layer.linear.bias.zero_()
    assert layer(torch.tensor([[2.0, -1.0], [-3.0, 0.5]])).tolist() == [
        [2.0],
        [2.5],
    ]  # max(2, −1, −1), max(−3, .5, 2.5)
    critic = MaxoutMLP((8,), (), hidden=200, depth=3, pieces=5, init_std=0.02)
    assert critic(torch.randn(4, 8)).shape == (4,)
    assert critic.hidden[0].linear.weight.std().item() == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize("recipe, expected", [
    ("pacgan_nets", {"packing": 4, "noise_dim": 2, "critic_target": "MaxoutMLP", "batch_size": 100}),
    ("wgan_gp", {"n_critic": 5, "gp_weight": 0.1, "divergence": "wasserstein", "batch_size": 256}),
    ("sngan_hinge", {"n_critic": 5, "divergence": "hinge", "spectral_norm": True}),
    ("packed_ema", {"packing": 4, "divergence": "non_saturating", "ema_decay": 0.999, "n_critic": 1}),
    ("fgan", {"n_critic": 1, "batch_size": 4096, "critic_activation": "elu", "critic_lr": 2e-4, "critic_beta1": 0.5}),
    ("lsgan", {"divergence": "least_squares", "least_squares_labels": [0, 1, 1], "noise_dim": 256, "batch_size": 512,
               "critic_activation": "tanh", "critic_lr": 1e-4, "generator_lr": 1e-3, "critic_beta1": 0.5,
               "orthogonal_gain": 1.4}),
])
def test_recipes_set_their_papers_settings_and_train(train_with, tmp_path, recipe, expected):
    cfg, metrics = train_with("experiment=gan_ring8", f"recipe={recipe}", "debug=fdr", "logger=csv",
                        *([] if recipe != "pacgan_nets" else ["data.n_train=1000"]))
    model = cfg.model
    actual = {
        "packing": model.packing,
        "noise_dim": model.noise_dim,
        "n_critic": model.n_critic,
        "gp_weight": model.gp_weight,
        "divergence": cfg.divergence,
        "batch_size": cfg.data.batch_size,
        "critic_target": model.critic._target_.split(".")[-1],
        "spectral_norm": model.critic.get("spectral_norm"),
        "ema_decay": (cfg.callbacks.get("ema") or {}).get("decay"),
        "critic_activation": model.critic.get("activation"),
        "critic_lr": model.critic_optimizer.lr,
        "critic_beta1": model.critic_optimizer.betas[0],
        "generator_lr": model.generator_optimizer.lr,
        "orthogonal_gain": model.critic.get("orthogonal_gain"),
        "least_squares_labels": model.get("least_squares_labels"),
    }
    assert {key: actual[key] for key in expected} == expected
    if model.n_critic == 1:  # fast_dev_run's one batch reaches the generator's turn
        assert metrics["train/sample_grad_norm"] > 0  # the generator's push per sample, logged for diagnosis
