"""Denoising diffusion probabilistic models (Ho et al. 2020; Nichol & Dhariwal 2021).

x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, t = 1..T. The `simple` loss regresses the network on ε, x_0 or v
(`target`): a reweighted variational bound, i.e. a weighted denoising score-matching objective
(divergence "<target>-mse"). The `vlb` loss minimises the bound on −log p_θ(x) itself
(divergence "vlb"; E_X[VLB] − H(P_X) ≥ KL(P_X ‖ P_θ)), estimated from one sampled KL term per
example. `log_likelihood` is −VLB: a lower bound, not the likelihood.

The network sees the integer timestep t as t/T ∈ [0, 1) (`denoiser`).
"""
import lightning as L
import torch

from divlab.lightning_modules.contracts import FamilyModule, GenerativeModule, LikelihoodModel
from divlab.lightning_modules.diffusion import (
    BETA_SCHEDULES,
    AncestralSampler,
    DDIMSampler,
    ReverseProcess,
    check_sample_chunk,
    diffusion_loss,
    in_chunks,
    loss_on_fixed_noise,
    make_schedule,
    sampled_variational_bound,
    variational_bound,
)
from divlab.lightning_modules.optim import make_optimizer
from divlab.lightning_modules.step_logging import is_logging_step
from divlab.validation import check_choice, check_positive, optimizer_lr

LOSSES = ("simple", "vlb")
# `ddpm`: ancestral sampling over all T steps; `ddim`: `sample_steps` steps with stochasticity `eta`.
SAMPLERS = ("ddpm", "ddim")


class DDPM(L.LightningModule, FamilyModule, GenerativeModule, LikelihoodModel):
    family = "ddpm"
    divergence = "eps-mse"
    validation_metrics = ("loss",)
    draws_training_noise = True
    log_likelihood_is_exact = False
    log_likelihood_bound = "vlb"
    log_likelihood_matches_sample = True

    @property
    def log_likelihood_is_discrete(self) -> bool:
        """With the `discretized` decoder, a bound on the 8-bit image's probability; with `gaussian`, on a density."""
        return self.reverse.decoder == "discretized"

    def __init__(
        self,
        data_shape,
        net,
        optimizer,
        T: int = 1000,
        schedule: str = "linear",
        target: str = "eps",
        loss: str = "simple",
        variance: str = "fixed_small",
        decoder: str = "gaussian",
        clip_denoised: bool = False,
        sampler: str = "ddpm",
        sample_steps: int | None = None,
        eta: float = 0.0,
        vlb_timesteps: int | None = None,
        sample_chunk: int | None = None,
    ):
        super().__init__()
        check_positive("model.T", T)
        check_sample_chunk(sample_chunk)
        check_choice("model.schedule", schedule, BETA_SCHEDULES)
        check_choice("model.loss", loss, LOSSES)
        check_choice("model.sampler", sampler, SAMPLERS)
        check_positive("model.eta", eta, allow_zero=True)
        if sampler == "ddpm" and sample_steps not in (None, T):
            raise ValueError(f"sampler ddpm runs all T = {T} steps, got model.sample_steps={sample_steps}; "
                             "use sampler=ddim (eta=1 for DDPM-like noise) for fewer steps")
        if sampler == "ddim" and not (sample_steps and 0 < sample_steps <= T):
            raise ValueError(f"sampler ddim needs 0 < model.sample_steps <= T = {T}, got {sample_steps}")
        if vlb_timesteps is not None and not 0 < vlb_timesteps < T:
            raise ValueError(f"model.vlb_timesteps must be null (exact sum) or in [1, T − 1 = {T - 1}], "
                             f"got {vlb_timesteps}")
        self.save_hyperparameters(ignore=["net", "optimizer"])
        self.divergence = "vlb" if loss == "vlb" else f"{target}-mse"
        self.hparams.update(family=self.family, divergence=self.divergence, lr=optimizer_lr(optimizer))
        self.data_shape = tuple(data_shape)
        self.schedule = make_schedule(schedule, T)
        # How p_θ(x_{t−1} | x_t) is read off the network: the bound and the samplers take this one object.
        self.reverse = ReverseProcess(target, variance, decoder, clip_denoised)
        if sampler == "ddim":
            self.sampler = DDIMSampler(sample_steps, eta, self.reverse)
        else:
            self.sampler = AncestralSampler(self.reverse)
        self.net = net(in_shape=self.data_shape, out_shape=self.data_shape)
        self.optimizer = optimizer

    def denoiser(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's prediction of the target at integer timesteps t [B], which it sees as t/T."""
        if t.dim() == 1 and t.stride(0) == 0:  # one timestep for the batch (the samplers'): one value, embedded once
            return self.net(x_t, (t[:1].float() / self.schedule.T).expand(t.shape[0]))
        return self.net(x_t, t.float() / self.schedule.T)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-example objective [B]: L_simple for the target, or the VLB from one sampled KL term."""
        if self.hparams.loss == "vlb":
            return sampled_variational_bound(self.denoiser, self.schedule, x, 1, self.reverse, generator=generator)
        return diffusion_loss(self.denoiser, self.schedule, x, self.reverse.target, generator)

    def training_step(self, x: torch.Tensor, batch_idx: int):
        loss = self.loss(x).mean()
        if is_logging_step(self, batch_idx):
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, x: torch.Tensor, batch_idx: int):
        self.log("val/loss", loss_on_fixed_noise(self.loss, x, batch_idx), sync_dist=True, prog_bar=True)

    def test_step(self, x: torch.Tensor, batch_idx: int):
        self.log("test/loss", loss_on_fixed_noise(self.loss, x, batch_idx), sync_dist=True)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.sampler(in_chunks(self.denoiser, self.hparams.sample_chunk), self.schedule, (n, *self.data_shape),
                            device=self.device)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """−VLB in nats per example, a lower bound on log p_θ(x) (Ho et al. 2020, eq. 5).

        Summed over all T steps (`vlb_timesteps` null) or estimated without bias from that many
        sampled KL terms (`sampled_variational_bound`). With the `discretized` decoder, x must lie
        on the 8-bit grid of [−1, 1] and the bound is on the probability of the 8-bit image itself.
        """
        steps = self.hparams.vlb_timesteps
        if steps is None:
            return -variational_bound(self.denoiser, self.schedule, x, self.reverse).total
        return -sampled_variational_bound(self.denoiser, self.schedule, x, steps, self.reverse)

    def configure_optimizers(self):
        return make_optimizer(self.optimizer, self.parameters(), self)
