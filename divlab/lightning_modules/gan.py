"""Generative adversarial networks: x = G(z), z ~ N(0, I), trained to minimise a divergence D(P_X ‖ P_θ).

A critic estimates D from samples through a variational lower bound (f-GAN, the original GAN,
Wasserstein, hinge, least squares; see `divergences.py`): every batch the critic takes a step up
that bound, every `n_critic`-th batch the generator takes a step down the divergence's generator
loss. `mmd` needs no critic: the generator minimises MMD² between data and samples directly.

Learning-rate schedules: `generator_scheduler` / `critic_scheduler` (partial torch schedulers, e.g.
CosineAnnealingLR) are stepped after each step of their own optimiser, so T_max counts that network's
steps (with `n_critic=k` the generator takes one step per k batches).

Packing (PacGAN, Lin et al. 2018): with `packing=m` the critic judges m samples at once, concatenated
along features (channels for images), so it sees the diversity of a batch and can penalise a
generator that drops modes; it applies to every critic-based divergence.

Logged on logging steps (`step_logging.py`): `train/divergence_estimate` (the critic's current bound,
before its step), `train/critic_loss`, `train/generator_loss`; on validation/test batches against as many fresh
samples, `<split>/divergence_estimate` and `<split>/loss` = MMD² (kernels scaled to the data's
dimension), which does not depend on the critic, so it compares epochs and divergences.
"""
import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy

from divlab.lightning_modules.contracts import FamilyModule, GenerativeModule
from divlab.lightning_modules.divergences import (
    get_divergence,
    gradient_penalty,
    least_squares_with_labels,
    mmd2_dimension_scaled,
    mmd_with_bandwidths,
    r1_penalty,
    sample_gradient_norm,
)
from divlab.lightning_modules.optim import make_optimizer, with_scheduler
from divlab.lightning_modules.step_logging import is_logging_step
from divlab.validation import check_positive, optimizer_lr


def pack(samples: torch.Tensor, m: int) -> torch.Tensor:
    """[B, C, ...] → [B/m, m·C, ...]: m consecutive samples side by side along the first feature axis.

    A batch that m does not divide loses its last B mod m samples (validation batches only: training
    batches are whole, and their size must be a multiple of m).
    """
    usable = samples.shape[0] - samples.shape[0] % m
    return samples[:usable].reshape(usable // m, m * samples.shape[1], *samples.shape[2:])


def packed_shape(data_shape: tuple, m: int) -> tuple:
    return (m * data_shape[0], *data_shape[1:])


class GAN(L.LightningModule, FamilyModule, GenerativeModule):
    family = "gan"
    validation_metrics = ("divergence_estimate", "loss")
    draws_training_noise = True

    def __init__(
        self,
        data_shape,
        generator,
        critic,
        generator_optimizer,
        critic_optimizer,
        divergence: str = "non_saturating",
        noise_dim: int = 64,
        n_critic: int = 1,
        gp_weight: float | None = None,
        r1_gamma: float = 0.0,
        packing: int = 1,
        mmd_bandwidths: list[float] | None = None,
        least_squares_labels: list[float] | None = None,
        generator_scheduler=None,
        critic_scheduler=None,
    ):
        super().__init__()
        self.divergence = divergence
        self.objective = get_divergence(divergence)  # its losses and bound: divergences.Divergence
        for key, value, (owner, what, variant) in (
            ("mmd_bandwidths", mmd_bandwidths, ("mmd", "kernel", mmd_with_bandwidths)),
            ("least_squares_labels", least_squares_labels, ("least_squares", "labels", least_squares_with_labels)),
        ):
            if value is not None:
                if divergence != owner:
                    raise ValueError(f"model.{key}={list(value)} sets the {what} of divergence {owner!r}, "
                                     f"not of {divergence!r}; leave it null or use divergence={owner}")
                self.objective = variant(value)
        check_positive("model.packing", packing)
        if packing > 1 and not self.objective.needs_critic:
            raise ValueError(f"model.packing={packing} packs samples for a critic, and divergence {divergence!r} has "
                             "none; use packing=1 or a critic-based divergence")
        if gp_weight is None:
            gp_weight = self.objective.default_gp_weight
        check_positive("model.noise_dim", noise_dim)
        check_positive("model.n_critic", n_critic)
        check_positive("model.gp_weight", gp_weight, allow_zero=True)
        check_positive("model.r1_gamma", r1_gamma, allow_zero=True)
        if critic_scheduler is not None and not self.objective.needs_critic:
            raise ValueError(f"model.critic_scheduler is set, and divergence {divergence!r} has no critic; "
                             "leave it null or use a critic-based divergence")
        self.save_hyperparameters(ignore=["generator", "critic", "generator_optimizer", "critic_optimizer",
                                          "generator_scheduler", "critic_scheduler"])
        self.hparams.update(
            family=self.family,
            divergence=divergence,
            gp_weight=gp_weight,
            lr=optimizer_lr(generator_optimizer),
            critic_lr=optimizer_lr(critic_optimizer),
        )
        self.automatic_optimization = False
        self.data_shape = tuple(data_shape)
        self.generator = generator(in_shape=(noise_dim,), out_shape=self.data_shape)
        self.critic = (critic(in_shape=packed_shape(self.data_shape, packing), out_shape=())
                       if self.objective.needs_critic else None)
        self.generator_optimizer = generator_optimizer
        self.critic_optimizer = critic_optimizer
        self.generator_scheduler = generator_scheduler
        self.critic_scheduler = critic_scheduler

    def training_step(self, x: torch.Tensor, batch_idx: int) -> None:
        if x.shape[0] % self.hparams.packing:
            raise ValueError(f"model.packing={self.hparams.packing} needs training batches of a multiple of it, "
                             f"got a batch of {x.shape[0]}; set data.batch_size accordingly")
        optimizers = self.optimizers()
        generator_opt, critic_opt = optimizers if self.critic is not None else (optimizers, None)
        generator_turn = (batch_idx + 1) % self.hparams.n_critic == 0
        log = is_logging_step(self, batch_idx)
        with torch.set_grad_enabled(generator_turn):
            fake = self.generator(self.noise(x.shape[0]))

        out_real, out_fake = self.score(x), self.score(fake.detach())
        if critic_opt is not None:
            critic_loss = self.objective.critic_loss(out_real, out_fake) + self.critic_penalty(x, fake)
            # DDP without find_unused_parameters needs every parameter in every backward, even on one
            # process: there the generator joins the critic's with a zero gradient (a cost others are spared).
            if isinstance(self.trainer.strategy, DDPStrategy):
                critic_loss = critic_loss + sum(p.sum() for p in self.generator.parameters()) * 0.0
            self.descend(critic_opt, critic_loss)
            if log:
                self.log("train/critic_loss", critic_loss.detach())
        if log:
            self.log("train/divergence_estimate", self.objective.estimate(out_real, out_fake).detach(), prog_bar=True)

        if generator_turn:
            generator_loss = self.objective.generator_loss(out_real.detach(), self.score(fake))
            # The gradient each sample gets: ~0 when the divergence has saturated (diagnosis: docs/results/toys.md).
            if log:
                self.log("train/sample_grad_norm", sample_gradient_norm(generator_loss, fake).detach())
            self.descend(generator_opt, generator_loss)
            if log:
                self.log("train/generator_loss", generator_loss.detach())

    def score(self, samples: torch.Tensor) -> torch.Tensor:
        """What the divergence's losses read: the critic's scores, or the flattened samples without a critic.

        In float32: bf16's 8-bit mantissa is too coarse for batch means of log-probabilities.
        """
        if self.critic is None:
            return samples.flatten(1).float()
        return self.critic(pack(samples, self.hparams.packing)).float()

    def critic_penalty(self, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | float:
        """Gradient penalties at packed inputs: the critic's gradient is taken where it is evaluated."""
        penalty = 0.0
        m = self.hparams.packing
        if self.hparams.gp_weight:
            penalty = penalty + self.hparams.gp_weight * gradient_penalty(self.critic, pack(x, m), pack(fake, m))
        if self.hparams.r1_gamma:
            penalty = penalty + 0.5 * self.hparams.r1_gamma * r1_penalty(self.critic, pack(x, m))
        return penalty

    def descend(self, optimizer, loss: torch.Tensor) -> None:
        """One step of `optimizer` down `loss` (named apart from Lightning's `optimizer_step` hook), then one
        of its learning-rate schedule if it has one (manual optimisation: Lightning steps none itself)."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        for config in self.trainer.lr_scheduler_configs:
            if config.scheduler.optimizer is optimizer.optimizer:
                config.scheduler.step()

    def validation_step(self, x: torch.Tensor, batch_idx: int) -> None:
        self.log_dict(self.evaluate("val", x), sync_dist=True, prog_bar=True)

    def test_step(self, x: torch.Tensor, batch_idx: int) -> None:
        self.log_dict(self.evaluate("test", x), sync_dist=True)

    def evaluate(self, split: str, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fake = self.sample(x.shape[0])
        return {
            f"{split}/divergence_estimate": self.objective.estimate(self.score(x), self.score(fake)),
            f"{split}/loss": mmd2_dimension_scaled(x.flatten(1).float(), fake.flatten(1).float()),
        }

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.hparams.noise_dim, device=self.device)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.generator(self.noise(n))

    def configure_optimizers(self):
        """Generator's optimiser first, then the critic's; each with its schedule when it has one."""
        networks = [(self.generator, self.generator_optimizer, self.generator_scheduler)]
        if self.critic is not None:
            networks.append((self.critic, self.critic_optimizer, self.critic_scheduler))
        configs = [with_scheduler(make_optimizer(optimizer, network.parameters(), self), scheduler)
                   for network, optimizer, scheduler in networks]
        return [config if isinstance(config, dict) else {"optimizer": config} for config in configs]
