"""Score models trained by denoising score matching (Song et al. 2021b, eq. 7).

The network predicts the noise: model(x_t, t) = ε_θ(x_t, t) for x_t = a_t x_0 + σ_t ε, t a float
tensor [B] in [ε, 1], and the score is s_θ(x_t, t) = −ε_θ(x_t, t) / σ_t. With the weighting
λ(t) = σ_t², λ(t) ‖s_θ − ∇ log p_0t(x_t | x_0)‖² = ‖ε_θ − ε‖², so the DSM loss is an ε-MSE.
"""
import torch

from divlab.lightning_modules.diffusion.sde import expand_as_data, marginal_mean_std

Tensor = torch.Tensor


def score(model, sde, x: Tensor, t: Tensor) -> Tensor:
    """s_θ(x, t) = −ε_θ(x, t) / σ_t."""
    return -model(x, t) / expand_as_data(sde.std(t), x)


def dsm_loss(model, sde, x0: Tensor, eps: float = 1e-5, generator: torch.Generator | None = None) -> Tensor:
    """Per example: E_{t ~ U[ε, 1], z ~ N(0, I)} mean_dims σ_t² ‖s_θ(x_t, t) + z/σ_t‖²
    = E mean_dims ‖ε_θ(x_t, t) − z‖²."""
    t = eps + (1 - eps) * torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype, generator=generator)
    z = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    mean, std = marginal_mean_std(sde, x0, t)
    return (model(mean + std * z, t) - z).pow(2).flatten(1).mean(1)


def probability_flow_drift(model, sde, x: Tensor, t: Tensor) -> Tensor:
    """f̃(x, t) = f(x, t) − ½ g(t)² s_θ(x, t), the drift of the probability-flow ODE (eq. 13)."""
    g = expand_as_data(sde.diffusion(t), x)
    return sde.drift(x, t) - 0.5 * g**2 * score(model, sde, x, t)
