"""DDPM and score-SDE families: module wiring on tiny batches, samplers, likelihoods, EMA, ddp_spawn, bf16.

The math (schedules, samplers, bounds, ODE likelihoods against oracles) is tested in
test_diffusion_math.py; here the modules are built from their Hydra configs, as train.py builds them.
"""
import dataclasses
import json
import math
import re
from functools import partial

import hydra
import pytest
import torch
from hydra.errors import InstantiationException

from conftest import compose_config
from divlab.lightning_modules.diffusion import (
    ODESolver,
    ReverseProcess,
    dsm_loss,
    loss_on_fixed_noise,
    ode_log_likelihood,
    uniform_dequantize,
    variational_bound,
)

POINTS = (2,)
IMAGE = (1, 8, 8)
TINY_UNET = ["model.net.width=8", "model.net.channel_mults=[1,2]", "model.net.groups=4"]
# Small enough that every sampler runs in well under a second on one core.
FAST = {
    "ddpm": ["model.T=50"],
    "ddpm_unet": ["model.T=50", "model.sample_steps=5", "model.vlb_timesteps=3", *TINY_UNET],
    "score": ["model.sample_steps=10", "model.ode_tolerance=1e-3"],
    "score_unet": ["model.sample_steps=5", "model.ode_tolerance=1e-2", *TINY_UNET],
}
MODELS = {"ddpm": POINTS, "ddpm_unet": IMAGE, "score": POINTS, "score_unet": IMAGE}
# Each case as family + networks (configs/model/, configs/networks/): the U-Net is networks=conv.
CONFIGS = {"ddpm": ["model=ddpm", "networks=mlp"], "ddpm_unet": ["model=ddpm", "networks=conv"],
           "score": ["model=score", "networks=mlp"], "score_unet": ["model=score", "networks=conv"]}


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def build(tmp_path, model: str, *overrides: str):
    cfg = compose_config(tmp_path, [*CONFIGS[model], *FAST[model], *overrides])
    return hydra.utils.instantiate(cfg.model, data_shape=MODELS[model], _convert_="all")


def batch(shape, n: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if len(shape) == 3:
        return torch.randint(0, 256, (n, *shape), generator=g) / 127.5 - 1
    angles = 2 * math.pi * torch.randint(0, 8, (n,), generator=g) / 8
    return torch.stack([angles.cos(), angles.sin()], 1) + 0.01 * torch.randn(n, 2, generator=g)


@pytest.mark.parametrize("model", list(MODELS))
def test_one_training_step_changes_parameters_with_finite_loss(tmp_path, model):
    module = build(tmp_path, model)
    optimizer = module.configure_optimizers()
    before = [p.detach().clone() for p in module.parameters()]
    with pytest.warns(UserWarning, match="self.log"):
        loss = module.training_step(batch(MODELS[model]), 0)
    loss.backward()
    optimizer.step()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
    assert all(not torch.equal(a, p) for a, p in zip(before, module.parameters()))


def test_loss_choice_sets_the_divergence(tmp_path):
    assert build(tmp_path, "ddpm").hparams.divergence == "eps-mse"
    assert build(tmp_path, "ddpm", "model.target=v").hparams.divergence == "v-mse"
    vlb = build(tmp_path, "ddpm", "model.loss=vlb")
    assert vlb.hparams.divergence == "vlb" and vlb.hparams.family == "ddpm"
    assert torch.isfinite(vlb.loss(batch(POINTS))).all()
    assert build(tmp_path, "score").hparams.divergence == "dsm"


def test_evaluation_loss_draws_the_same_noise_for_a_batch_index_every_epoch(tmp_path):
    module = build(tmp_path, "score")
    loss = partial(dsm_loss, module.net, module.sde)
    x = batch(POINTS)
    first = loss_on_fixed_noise(loss, x, 3)
    assert torch.equal(first, loss_on_fixed_noise(loss, x, 3))
    assert torch.equal(first, loss(x, generator=torch.Generator().manual_seed(3)).mean())
    assert not torch.equal(first, loss_on_fixed_noise(loss, x, 4))
    logged = {}
    module.log = lambda name, value, **kwargs: logged.update({name: value})
    module.validation_step(x, 3)
    module.test_step(x, 3)
    assert torch.equal(logged["val/loss"], first) and torch.equal(logged["test/loss"], first)


@pytest.mark.parametrize(
    "model, overrides",
    [
        ("ddpm", ["model.sampler=ddpm"]),
        ("ddpm", ["model.sampler=ddim", "model.sample_steps=5", "model.eta=1.0"]),
        ("ddpm_unet", ["model.sampler=ddpm", "model.sample_steps=null"]),
        ("ddpm_unet", ["model.sampler=ddim"]),
        ("score", ["model.sampler=pc"]),
        ("score", ["model.sampler=ode"]),
        ("score_unet", ["model.sampler=pc"]),
        ("score_unet", ["model.sampler=ode"]),
        ("score", ["model.sampler=ddim", "model.sample_steps=5"]),
        ("score_unet", ["model.sampler=ddim"]),
    ],
    ids=lambda v: v if isinstance(v, str) else v[0].split("=")[1],
)
def test_sample_honours_sampler_with_data_shape_and_range(tmp_path, model, overrides):
    module = build(tmp_path, model, *overrides).eval()
    calls = []  # per network call: was the step's time one value expanded over the batch (embedded once)?
    net_forward = module.net.forward
    module.net.forward = lambda x, t: calls.append(t.shape == (len(x),) and t.stride(0) == 0) or net_forward(x, t)
    samples = module.sample(6)
    assert samples.shape == (6, *MODELS[model]) and torch.isfinite(samples).all()
    assert all(calls), "every sampler step passes its one time expanded, so the network embeds it once"
    if model == "ddpm_unet":
        assert samples.abs().max() <= 1
    h = module.hparams
    network_calls = {"ddpm": h.get("T"), "ddim": h.sample_steps, "pc": 2 * (h.sample_steps or 0), "ode": len(calls)}
    assert len(calls) == network_calls[h.sampler] and len(calls) > 1


@pytest.mark.parametrize("model, overrides", [("ddpm", ["model.sampler=ddpm"]), ("score", ["model.sampler=pc"]),
                                              ("ddpm_unet", ["model.sampler=ddim", "model.eta=1.0"])],
                         ids=["ancestral", "predictor_corrector", "ddim_unet"])
def test_sample_chunk_runs_the_network_on_chunks_and_draws_the_same_samples(tmp_path, model, overrides):
    whole = build(tmp_path, model, *overrides, "model.sample_chunk=null").eval()
    chunked = build(tmp_path, model, *overrides, "model.sample_chunk=3").eval()
    chunked.load_state_dict(whole.state_dict())
    rows = []
    net_forward = chunked.net.forward
    chunked.net.forward = lambda x, t: rows.append(len(x)) or net_forward(x, t)
    samples = {}
    for name, module in (("whole", whole), ("chunked", chunked)):
        torch.manual_seed(0)
        samples[name] = module.sample(7)  # every step's noise is drawn for all 7, so the chunks change no draw
    assert set(rows) == {3, 1}  # 7 = 3 + 3 + 1 at every call
    torch.testing.assert_close(samples["chunked"], samples["whole"], rtol=1e-4, atol=1e-4)


def test_time_grid_reaches_the_predictor_corrector(tmp_path):
    module = build(tmp_path, "score", "model.time_grid=log_snr", "model.sample_steps=7")
    assert (module.sampler.time_grid, module.sampler.steps) == ("log_snr", 7)


def test_exact_vlb_is_the_math_bound_and_images_get_a_probability_bound(tmp_path):
    module = build(tmp_path, "ddpm_unet", "model.vlb_timesteps=null")
    x = batch(IMAGE, n=4)
    torch.manual_seed(1)
    log_likelihood = module.log_likelihood(x)
    torch.manual_seed(1)
    bound = variational_bound(module.denoiser, module.schedule, x,
                              ReverseProcess(decoder="discretized", clip_denoised=True))
    assert torch.allclose(log_likelihood, -bound.total)
    assert bound.per_step.shape == (4, 50) and (log_likelihood < 0).all()
    assert module.log_likelihood_is_exact is False and module.log_likelihood_bound == "vlb"
    assert module.log_likelihood_is_discrete is True
    module.reverse = dataclasses.replace(
        module.reverse, decoder="gaussian"
    )  # a bound on a density: bits/dim not comparable with 8-bit ones
    assert module.log_likelihood_is_discrete is False


def test_sampled_vlb_is_an_unbiased_estimate_of_the_exact_sum(tmp_path):
    module = build(tmp_path, "ddpm", "model.T=30")
    x = batch(POINTS, n=1).expand(4000, 2)
    torch.manual_seed(2)
    exact = module.log_likelihood(x)
    module.hparams.vlb_timesteps = 2
    sampled = module.log_likelihood(x)
    standard_error = (exact.var() / len(exact) + sampled.var() / len(sampled)).sqrt()
    assert sampled.std() > exact.std()
    assert (sampled.mean() - exact.mean()).abs() < 4 * standard_error


def test_fixed_step_ode_bounds_the_network_calls_of_sampling_and_likelihood(tmp_path):
    # rk4 with 4 steps: 4 steps × 4 stages, whatever the network (adaptive dopri5 may take hundreds).
    module = build(tmp_path, "score", "model.sampler=ode", "model.ode_method=rk4", "model.ode_steps=4").eval()
    calls = []
    net_forward = module.net.forward
    module.net.forward = lambda x, t: calls.append(1) or net_forward(x, t)
    assert module.sample(5).shape == (5, *POINTS)
    assert len(calls) == 16
    calls.clear()
    assert torch.isfinite(module.log_likelihood(batch(POINTS, n=3))).all() and len(calls) == 16


@pytest.mark.parametrize("overrides, message", [
    (["model.ode_method=rk4"], "fixed-step ODE method 'rk4' needs model.ode_steps >= 1"),
    (["model.ode_steps=8"], "model.ode_steps=8 applies to fixed-step methods"),
    (["model.ode_method=leapfrog"], "unknown model.ode_method 'leapfrog'; valid choices: .*rk4"),
])
def test_ode_solver_settings_are_checked_when_built(tmp_path, overrides, message):
    with pytest.raises(Exception, match=message):
        build(tmp_path, "score", *overrides)


@pytest.mark.parametrize("sampler, matches", [("pc", False), ("ode", True)])
def test_score_log_likelihood_describes_only_the_ode_samplers_samples(tmp_path, sampler, matches):
    # The toy metrics score samples with log_likelihood only when both describe one distribution.
    assert build(tmp_path, "score", f"model.sampler={sampler}").log_likelihood_matches_sample is matches


def test_score_image_likelihood_is_dequantised_ode_likelihood(tmp_path):
    module = build(tmp_path, "score_unet")
    x = batch(IMAGE, n=3)
    torch.manual_seed(3)
    log_likelihood = module.log_likelihood(x)
    torch.manual_seed(3)
    x_tilde, log_volume = uniform_dequantize(x)
    expected = ode_log_likelihood(module.net, module.sde, x_tilde, "rademacher", ODESolver(tolerance=1e-2)) + log_volume
    assert torch.allclose(log_likelihood, expected)
    assert torch.allclose(log_volume, torch.full((3,), 64 * math.log(2 / 255)))
    # Dequantised: a lower bound on the 8-bit probability, not the exact density (run.json said exact).
    assert module.log_likelihood_is_exact is False and module.log_likelihood_bound == "dequantization"
    assert module.log_likelihood_is_discrete is True
    module.hparams.dequantize = False
    assert module.log_likelihood_is_exact is True and module.log_likelihood_bound is None
    assert module.log_likelihood_is_discrete is False
    with torch.inference_mode():
        assert torch.isfinite(module.log_likelihood(x)).all()


@pytest.mark.parametrize(
    "model, override, message",
    [
        ("ddpm", "model.schedule=cosin", "unknown model.schedule 'cosin'; valid choices: cosine, linear"),
        ("ddpm", "model.target=score", "valid choices: eps, v, x0"),
        ("ddpm", "model.sampler=pc", "unknown model.sampler 'pc'; valid choices: ddim, ddpm"),
        ("ddpm", "model.loss=kl", "valid choices: simple, vlb"),
        ("ddpm", "model.decoder=bernoulli", "valid choices: discretized, gaussian"),
        ("ddpm", "model.sample_steps=5", "sampler ddpm runs all T = 50 steps"),
        ("ddpm", "model.vlb_timesteps=50", "model.vlb_timesteps must be null"),
        ("ddpm_unet", "model.sample_steps=60", "0 < model.sample_steps <= T = 50"),
        ("ddpm", "model.T=0", "model.T must be > 0"),
        ("score", "model.sde=subvp", "unknown model.sde 'subvp'; valid choices: ve, vp"),
        ("score", "model.sampler=ddpm", "unknown model.sampler 'ddpm'; valid choices: ddim, ode, pc"),
        ("score", "model.trace=skilling", "valid choices: exact, gaussian, rademacher"),
        ("score", "model.time_grid=cosine", "unknown model.time_grid 'cosine'; valid choices: log_snr, uniform"),
        ("score", "model.optimizer.lr=0", "optimizer.lr must be > 0"),
        ("ddpm", "model.sample_chunk=0", "model.sample_chunk must be > 0"),
        ("score", "model.sample_chunk=-64", "model.sample_chunk must be > 0"),
    ],
)
def test_bad_values_raise_naming_the_valid_ones(tmp_path, model, override, message):
    with pytest.raises((ValueError, InstantiationException), match=re.escape(message)):
        build(tmp_path, model, override)


def test_unet_handles_odd_sides_and_checks_groups():
    from divlab.lightning_modules.networks.unet import Attention, UNet

    for shape, mults in [((1, 28, 28), (1, 2, 2)), ((3, 32, 32), (1, 2, 2, 2)), ((1, 7, 7), (1, 2, 2))]:
        net = UNet(shape, shape, width=8, channel_mults=mults, groups=4)
        assert net(torch.randn(2, *shape), torch.rand(2)).shape == (2, *shape)
        assert any(isinstance(m, Attention) for m in net.modules())
    with pytest.raises(ValueError, match="groups"):
        UNet((1, 8, 8), (1, 8, 8), width=12, groups=8)


@pytest.mark.parametrize("network", ["time_mlp", "unet"])
def test_one_time_for_the_batch_is_embedded_once_and_gives_each_rows_output(network):
    from divlab.lightning_modules.networks.time_mlp import TimeMLP
    from divlab.lightning_modules.networks.unet import UNet

    shape = POINTS if network == "time_mlp" else IMAGE
    torch.manual_seed(0)
    net = (
        TimeMLP(shape, shape) if network == "time_mlp" else UNet(shape, shape, width=8, channel_mults=(1, 2), groups=4)
    )
    rows = []  # rows of each time embedding computed
    net.time.register_forward_hook(lambda module, inputs, out: rows.append(out.shape[0]))
    x = torch.randn(4, *shape)
    alone = lambda times: torch.cat([net(x[i:i + 1], times[i:i + 1]) for i in range(4)])  # noqa: E731
    with torch.no_grad():
        shared = net(x, torch.tensor(0.3).expand(4))  # how the samplers pass a step's time
        assert rows == [1]
        torch.testing.assert_close(shared, alone(torch.full((4,), 0.3)))
        times = torch.tensor([0.1, 0.3, 0.6, 0.9])  # training's times, one per row, each embedded
        rows.clear()
        distinct = net(x, times)
        assert rows == [4]
        torch.testing.assert_close(distinct, alone(times))


# --- through train.py -----------------------------------------------------------------------------

TINY_RUN = ["debug=tiny", "logger=csv", "callbacks.progress_bar=null",
            "callbacks.likelihood.every_n_epochs=1"]
TINY_RING8 = [*TINY_RUN, "model.sample_steps=10", "model.vlb_timesteps=4"]
TINY_SCORE_RING8 = [*TINY_RUN, "model.sample_steps=10", "model.ode_tolerance=1e-3"]
TINY = {"ddpm_ring8": TINY_RING8, "score_ring8": TINY_SCORE_RING8}


def completed_record(tmp_path) -> dict:
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed"
    return record


def test_sample_and_toy_metric_callbacks_see_the_ema_weights(train_with, tmp_path, monkeypatch):
    from divlab.lightning_modules.ddpm import DDPM

    seen = []
    original = DDPM.sample
    monkeypatch.setattr(DDPM, "sample", lambda self, n: seen.append(self.net.input.weight.clone()) or original(self, n))
    # the preset draws its scatter plots in toy_metrics only; a sample logger is added back to test it too
    _, metrics = train_with("experiment=ddpm_ring8", *TINY_RING8, "trainer=cpu", "test=false",
                            "++callbacks.samples._target_=divlab.callbacks.samples.SampleLogger",
                            "++callbacks.samples.every_n_epochs=1")
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    ema, raw = checkpoint["state_dict"]["net.input.weight"], checkpoint["current_model_state"]["net.input.weight"]
    assert len(seen) == 2 and not torch.equal(ema, raw)
    assert all(torch.equal(weights, ema) for weights in seen)
    assert metrics["time/val/samples_seconds"] > 0  # the sample logger's time, beside the evaluation callbacks'


def test_test_stage_evaluates_the_ema_weights(train_with, tmp_path, monkeypatch):
    from divlab.lightning_modules.ddpm import DDPM

    seen = []
    original = DDPM.test_step
    monkeypatch.setattr(DDPM, "test_step", lambda self, x, i: seen.append(self.net.input.weight.clone())
                        or original(self, x, i))
    train_with("experiment=ddpm_ring8", *TINY_RING8, "trainer=cpu")
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert torch.equal(seen[0], checkpoint["state_dict"]["net.input.weight"])


@pytest.mark.parametrize("experiment", ["ddpm_ring8", "score_ring8"])
def test_trains_on_two_processes_with_ddp_spawn(train_with, tmp_path, experiment):
    train_with(f"experiment={experiment}", *TINY[experiment], "trainer=ddp_spawn", "trainer.devices=2")
    record = completed_record(tmp_path)
    assert all(math.isfinite(record["metrics"][k]) for k in ("train/loss", "val/loss", "val/nll", "test/nll"))
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3


@pytest.mark.parametrize("experiment, overrides", [
    ("ddpm_ring8", TINY_RING8),
    ("score_ring8", TINY_SCORE_RING8),
    ("ddpm_fashion_mnist", [*TINY_RUN, "model.sample_steps=5",
                            "model.vlb_timesteps=2", "data.batch_size=8", "callbacks.image_metrics.n_samples=16",
                            *TINY_UNET]),
])
def test_trains_in_bf16_mixed(train_with, tmp_path, experiment, overrides):
    from divlab.tracking.plots import last_sample_image

    train_with(f"experiment={experiment}", *overrides, "trainer=cpu", "trainer.precision=bf16-mixed")
    record = completed_record(tmp_path)
    assert record["config"]["trainer"]["precision"] == "bf16-mixed"
    assert all(math.isfinite(record["metrics"][k]) for k in ("train/loss", "val/loss", "val/nll", "test/nll"))
    assert last_sample_image({"run_dir": str(tmp_path)}) is not None  # samples/, or the 2-D presets' toy_metrics/


@pytest.mark.slow
def test_ddpm_ring8_covers_all_modes_in_its_default_budget(train_with, tmp_path):
    from divlab.datamodules.toy2d import make_distribution
    from divlab.evaluation.toy import mode_scores

    cfg, _ = train_with("experiment=ddpm_ring8", "trainer=cpu", "logger=csv", "callbacks.progress_bar=null")
    module = hydra.utils.instantiate(cfg.model, data_shape=POINTS, _convert_="all")
    module.load_state_dict(torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"])
    torch.manual_seed(0)
    samples = module.eval().sample(2500)
    ring = make_distribution("ring8")
    scores = mode_scores(samples, ring.centres, ring.sigma)
    assert scores.modes_covered == 8, scores
    assert scores.high_quality_percent > 50, scores
