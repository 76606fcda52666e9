"""Score-based generative models through SDEs (Song et al. 2021b).

A VP or VE SDE perturbs the data continuously over t ∈ [0, 1]; the network predicts the noise,
s_θ(x_t, t) = −ε_θ(x_t, t)/σ_t, trained by denoising score matching with λ(t) = σ_t² (an ε-MSE):
the Fisher divergence between the perturbed data's and the model's scores, weighted by λ(t) and
integrated over t. (The weighting λ(t) = g(t)² would make it a bound on KL(P_X ‖ P_θ); Song et
al. 2021a.) Samples come from the reverse SDE (predictor–corrector), the probability-flow ODE, whose
instantaneous change of variables gives `log_likelihood`, or DDIM steps on the SDE's marginals (`ddim`).
"""
from functools import partial

import lightning as L
import torch

from divlab.lightning_modules.contracts import FamilyModule, GenerativeModule, LikelihoodModel
from divlab.lightning_modules.diffusion import (
    TRACE_ESTIMATORS,
    VESDE,
    VPSDE,
    MarginalDDIM,
    ODESolver,
    PredictorCorrector,
    ProbabilityFlowSampler,
    check_sample_chunk,
    dsm_loss,
    in_chunks,
    loss_on_fixed_noise,
    ode_log_likelihood,
    uniform_dequantize,
)
from divlab.lightning_modules.optim import make_optimizer
from divlab.validation import check_choice, optimizer_lr

SDES = {"vp": VPSDE, "ve": VESDE}
SAMPLERS = ("pc", "ode", "ddim")


class ScoreSDE(L.LightningModule, FamilyModule, GenerativeModule, LikelihoodModel):
    family = "score"
    divergence = "dsm"
    validation_metrics = ("loss",)
    draws_training_noise = True

    @property
    def log_likelihood_is_exact(self) -> bool:
        """The ODE density itself (estimated without bias by the Hutchinson trace), unless dequantised."""
        return not self.hparams.dequantize

    @property
    def log_likelihood_bound(self) -> str | None:
        """With `dequantize`, E_u log p(x + u) + D log(2/255) is a lower bound on the 8-bit probability."""
        return "dequantization" if self.hparams.dequantize else None

    @property
    def log_likelihood_matches_sample(self) -> bool:
        """`log_likelihood` is the probability-flow ODE's density: only the `ode` sampler draws from it."""
        return self.hparams.sampler == "ode"

    @property
    def log_likelihood_is_discrete(self) -> bool:
        return bool(self.hparams.dequantize)

    def __init__(
        self,
        data_shape,
        net,
        optimizer,
        sde: str = "vp",
        sde_kwargs: dict | None = None,
        sampler: str = "pc",
        sample_steps: int = 500,
        snr: float = 0.16,
        corrector_steps: int = 1,
        time_grid: str = "uniform",
        eta: float = 0.0,
        clip_denoised: bool = False,
        trace: str = "exact",
        dequantize: bool = False,
        ode_tolerance: float = 1e-5,
        ode_method: str = "dopri5",
        ode_steps: int | None = None,
        sample_chunk: int | None = None,
    ):
        super().__init__()
        check_choice("model.sde", sde, SDES)
        check_sample_chunk(sample_chunk)
        check_choice("model.sampler", sampler, SAMPLERS)
        check_choice("model.trace", trace, TRACE_ESTIMATORS)
        self.save_hyperparameters(ignore=["net", "optimizer"])
        self.hparams.update(family=self.family, divergence=self.divergence, lr=optimizer_lr(optimizer))
        self.data_shape = tuple(data_shape)
        self.sde = SDES[sde](**(sde_kwargs or {}))
        # Sampling with `ode` and `log_likelihood` solve the same probability-flow ODE with this solver.
        self.ode_solver = ODESolver(ode_method, ode_tolerance, ode_steps)
        # `pc`: `sample_steps` Euler–Maruyama steps on `time_grid`, each after `corrector_steps` Langevin steps at
        # `snr`; `ode`: the probability-flow ODE; `ddim`: `sample_steps` DDIM steps on `time_grid` with noise `eta`,
        # x̂_0 clipped
        # to [−1, 1] with `clip_denoised`. All are
        # built, so any one's bad settings fail here.
        samplers = {"pc": PredictorCorrector(sample_steps, snr, corrector_steps, time_grid),
                    "ode": ProbabilityFlowSampler(self.ode_solver),
                    "ddim": MarginalDDIM(sample_steps, time_grid, eta, clip_denoised)}
        self.sampler = samplers[sampler]
        self.net = net(in_shape=self.data_shape, out_shape=self.data_shape)
        self.optimizer = optimizer

    def training_step(self, x: torch.Tensor, batch_idx: int):
        # Denoising score matching, E_{t, z} mean_dims ‖ε_θ(x_t, t) − z‖² per example.
        loss = dsm_loss(self.net, self.sde, x).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, x: torch.Tensor, batch_idx: int):
        loss = loss_on_fixed_noise(partial(dsm_loss, self.net, self.sde), x, batch_idx)
        self.log("val/loss", loss, sync_dist=True, prog_bar=True)

    def test_step(self, x: torch.Tensor, batch_idx: int):
        loss = loss_on_fixed_noise(partial(dsm_loss, self.net, self.sde), x, batch_idx)
        self.log("test/loss", loss, sync_dist=True)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.sampler(in_chunks(self.net, self.hparams.sample_chunk), self.sde, (n, *self.data_shape),
                            device=self.device)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p_θ(x) in nats per example through the probability-flow ODE (`ode_log_likelihood`), the
        density of the process at t = 10⁻⁵; with the Hutchinson `trace`, an unbiased estimate of it.

        With `dequantize` (8-bit images on the grid of [−1, 1]), x is first spread uniformly over its
        bin, x̃ = x + u, and the bin's log-volume added: log p_θ(x̃) + D log(2/255), whose expectation
        over u lower-bounds the probability of the 8-bit image (Theis et al. 2016), so bits/dim are
        comparable with the DDPM's discretised decoder.
        """
        h = self.hparams
        log_volume = 0.0
        if h.dequantize:
            x, log_volume = uniform_dequantize(x)
        # The divergence needs autograd, which Lightning's test loop (torch.inference_mode) switches off.
        with torch.inference_mode(False):
            x = x.clone()
            log_p = ode_log_likelihood(self.net, self.sde, x, h.trace, self.ode_solver)
        return log_p + log_volume

    def configure_optimizers(self):
        return make_optimizer(self.optimizer, self.parameters(), self)
