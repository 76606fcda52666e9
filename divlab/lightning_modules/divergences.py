"""Adversarial and kernel divergences as losses over critic outputs.

Pure tensor math. P is the data distribution, Q = P_θ the generator's. Every divergence is three
functions of the critic's outputs on a real batch (`out_real`, from P) and a fake batch
(`out_fake`, from Q), each returning a scalar:

- `critic_loss(out_real, out_fake)`: minimised by the critic;
- `generator_loss(out_real, out_fake)`: minimised by the generator (only `mmd` reads `out_real`);
- `estimate(out_real, out_fake)`: the critic's current lower bound on the divergence, logged as
  `train/divergence_estimate` (exact at the optimal critic, and for `mmd` an unbiased estimate).

The registry `DIVERGENCES` maps a name to a `Divergence` holding those three; `get_divergence`
looks one up. Penalties on the critic (`gradient_penalty`, `r1_penalty`) are separate functions
whose weight the caller applies.

f-divergences follow Nowozin et al. (2016), "f-GAN": for convex f with f(1) = 0,
D_f(P‖Q) = ∫ q f(p/q) dx ≥ sup_T E_P[T(x)] − E_Q[f*(T(x))], with equality at T*(x) = f'(p(x)/q(x)).
The critic's raw output V is mapped into dom f* by the output activation T = g_f(V).
"""
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import partial

import torch
import torch.nn.functional as F

from divlab.validation import check_choice

LOG_2 = math.log(2.0)
LOG_4 = math.log(4.0)


@dataclass(frozen=True)
class FDivergence:
    """One row of f-GAN Table 2: f, f', the conjugate f*, the activation g_f, and f*∘g_f.

    `conjugate_of_activation` is f*(g_f(v)) simplified by hand so it stays finite wherever g_f(v)
    approaches the edge of dom f*; it must equal `conjugate(activation(v))`.
    """

    f: Callable[[torch.Tensor], torch.Tensor]
    f_prime: Callable[[torch.Tensor], torch.Tensor]
    conjugate: Callable[[torch.Tensor], torch.Tensor]
    activation: Callable[[torch.Tensor], torch.Tensor]
    conjugate_of_activation: Callable[[torch.Tensor], torch.Tensor]


F_DIVERGENCES: dict[str, FDivergence] = {
    # KL(P‖Q) = ∫ p log(p/q);  f(u) = u log u,  f*(t) = exp(t − 1),  g_f(v) = v.
    "kl": FDivergence(
        f=lambda u: torch.xlogy(u, u),
        f_prime=lambda u: 1.0 + torch.log(u),
        conjugate=lambda t: torch.exp(t - 1.0),
        activation=lambda v: v,
        conjugate_of_activation=lambda v: torch.exp(v - 1.0),
    ),
    # KL(Q‖P) = ∫ q log(q/p);  f(u) = −log u,  f*(t) = −1 − log(−t) on t < 0,  g_f(v) = −exp(−v).
    "reverse_kl": FDivergence(
        f=lambda u: -torch.log(u),
        f_prime=lambda u: -1.0 / u,
        conjugate=lambda t: -1.0 - torch.log(-t),
        activation=lambda v: -torch.exp(-v),
        conjugate_of_activation=lambda v: v - 1.0,
    ),
    # f-GAN Jensen–Shannon, D_f = 2·JSD(P, Q) ∈ [0, log 4];  f(u) = u log u − (u + 1) log((u + 1)/2),
    # f*(t) = −log(2 − exp t) on t < log 2,  g_f(v) = log 2 − log(1 + exp(−v)).
    "js": FDivergence(
        f=lambda u: torch.xlogy(u, u) - (u + 1.0) * torch.log((u + 1.0) / 2.0),
        f_prime=lambda u: torch.log(2.0 * u / (u + 1.0)),
        conjugate=lambda t: -torch.log(2.0 - torch.exp(t)),
        activation=lambda v: LOG_2 + F.logsigmoid(v),
        conjugate_of_activation=lambda v: F.softplus(v) - LOG_2,
    ),
    # Pearson χ²(P‖Q) = ∫ (p − q)²/q;  f(u) = (u − 1)²,  f*(t) = t²/4 + t,  g_f(v) = v.
    "pearson": FDivergence(
        f=lambda u: (u - 1.0) ** 2,
        f_prime=lambda u: 2.0 * (u - 1.0),
        conjugate=lambda t: 0.25 * t**2 + t,
        activation=lambda v: v,
        conjugate_of_activation=lambda v: 0.25 * v**2 + v,
    ),
    # Squared Hellinger ∫ (√p − √q)² = 2(1 − ∫√(pq));  f(u) = (√u − 1)²,  f*(t) = t/(1 − t) on t < 1,
    # g_f(v) = 1 − exp(−v).
    "squared_hellinger": FDivergence(
        f=lambda u: (torch.sqrt(u) - 1.0) ** 2,
        f_prime=lambda u: 1.0 - torch.rsqrt(u),
        conjugate=lambda t: t / (1.0 - t),
        activation=lambda v: -torch.expm1(-v),
        conjugate_of_activation=lambda v: torch.expm1(v),
    ),
    # Total variation ½ ∫ |p − q|;  f(u) = ½|u − 1|,  f*(t) = t on |t| ≤ ½,  g_f(v) = ½ tanh v.
    "total_variation": FDivergence(
        f=lambda u: 0.5 * torch.abs(u - 1.0),
        f_prime=lambda u: 0.5 * torch.sign(u - 1.0),
        conjugate=lambda t: t,
        activation=lambda v: 0.5 * torch.tanh(v),
        conjugate_of_activation=lambda v: 0.5 * torch.tanh(v),
    ),
}


def f_divergence_estimate(f_div: FDivergence, v_real: torch.Tensor, v_fake: torch.Tensor) -> torch.Tensor:
    """E_P[g_f(V)] − E_Q[f*(g_f(V))] ≤ D_f(P‖Q), with equality at g_f(V) = f'(p/q)."""
    return f_div.activation(v_real).mean() - f_div.conjugate_of_activation(v_fake).mean()


def f_critic_loss(f_div: FDivergence, v_real: torch.Tensor, v_fake: torch.Tensor) -> torch.Tensor:
    """−(E_P[T] − E_Q[f*(T)]) with T = g_f(V): the negated variational bound."""
    return -f_divergence_estimate(f_div, v_real, v_fake)


def f_generator_loss(f_div: FDivergence, v_real: torch.Tensor, v_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating −E_Q[g_f(V)] (f-GAN §3.2), in place of the saturating −E_Q[f*(g_f(V))].

    Both have the same fixed point; this one keeps strong gradients while the critic wins.
    """
    return -f_div.activation(v_fake).mean()


def gan_critic_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """−E_P[log D] − E_Q[log(1 − D)] with D = σ(logit) (Goodfellow et al. 2014)."""
    return F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean()


def gan_estimate(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """E_P[log D] + E_Q[log(1 − D)] + log 4 ≤ 2·JSD(P, Q), the same quantity `js` bounds.

    At D* = p/(p + q) the GAN value E_P[log D*] + E_Q[log(1 − D*)] equals 2·JSD − log 4.
    """
    return LOG_4 - gan_critic_loss(logit_real, logit_fake)


def minimax_generator_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """Saturating E_Q[log(1 − D)]: the generator's side of the original min-max game."""
    return -F.softplus(logit_fake).mean()


def non_saturating_generator_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """−E_Q[log D]: same fixed point as the minimax loss, non-vanishing gradient when D(fake) ≈ 0."""
    return F.softplus(-logit_fake).mean()


def wasserstein_estimate(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """E_P[D] − E_Q[D] ≤ W₁(P, Q) when D is 1-Lipschitz (Kantorovich–Rubinstein duality)."""
    return d_real.mean() - d_fake.mean()


def wasserstein_critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """E_Q[D] − E_P[D] (Arjovsky et al. 2017); pair with `gradient_penalty` for WGAN-GP."""
    return d_fake.mean() - d_real.mean()


def critic_score_generator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """−E_Q[D]: the generator loss of WGAN and of the hinge GAN."""
    return -d_fake.mean()


def hinge_critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """E_P[max(0, 1 − D)] + E_Q[max(0, 1 + D)] (Lim & Ye 2017; Miyato et al. 2018)."""
    return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()


def hinge_estimate(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """1 − ½·L_hinge ≤ TV(P, Q) = ½ ∫ |p − q|.

    The hinge loss is minimised by D* = sign(p − q), where it equals 2 − 2·TV(P, Q).
    """
    return 1.0 - 0.5 * hinge_critic_loss(d_real, d_fake)


def least_squares_critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor, a: float = -1.0, b: float = 1.0
                              ) -> torch.Tensor:
    """½ E_P[(D − b)²] + ½ E_Q[(D − a)²] (Mao et al. 2017, eq. 2); by default a = −1, b = 1."""
    return 0.5 * ((d_real - b) ** 2).mean() + 0.5 * ((d_fake - a) ** 2).mean()


def least_squares_generator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, c: float = 0.0) -> torch.Tensor:
    """½ E_Q[(D − c)²]; with a = −1, b = 1, c = 0 (b − c = 1, b − a = 2) this minimises χ²(P + Q ‖ 2Q)
    (Mao et al. 2017, Theorem 1)."""
    return 0.5 * ((d_fake - c) ** 2).mean()


def least_squares_estimate(d_real: torch.Tensor, d_fake: torch.Tensor, a: float = -1.0, b: float = 1.0
                           ) -> torch.Tensor:
    """2 − 8·L_LS/(b − a)² ≤ ∫ (p − q)²/(p + q) = χ²_Pearson(P + Q ‖ 2Q), in [0, 2].

    The critic loss is minimised by D* = (b·p + a·q)/(p + q), where it equals ½(b − a)² ∫ pq/(p + q), and
    ∫ (p − q)²/(p + q) = 2 − 4 ∫ pq/(p + q). With a = −1, b = 1 the bound is 2 − 2·L_LS.
    """
    return 2.0 - 8.0 * least_squares_critic_loss(d_real, d_fake, a, b) / (b - a) ** 2


def _critic_gradient(critic: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """∇ₓ D(x) per example, flattened to [B, d], kept in the graph so penalties train the critic."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.flatten(1)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """E_x̂[(‖∇D(x̂)‖₂ − 1)²] at x̂ = εx + (1 − ε)x̃, ε ~ U[0, 1] per example (Gulrajani et al. 2017).

    The caller multiplies by λ (10 in the paper).
    """
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = eps * real.detach() + (1.0 - eps) * fake.detach()
    return ((_critic_gradient(critic, x_hat).norm(dim=1) - 1.0) ** 2).mean()


def sample_gradient_norm(generator_loss: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Mean over generated samples of ‖∂(N·L_G)/∂x̃ᵢ‖₂: how hard the generator's loss pushes each sample.

    L_G is a mean over the N samples (or their packs), so N·L_G's gradient is one sample's own push,
    comparable across batch sizes. Near zero: the divergence gives the generator nothing to follow
    (a saturated critic); huge: the step overshoots. The graph is kept for the generator's backward.
    """
    (grad,) = torch.autograd.grad(generator_loss * fake.shape[0], fake, retain_graph=True)
    return grad.flatten(1).norm(dim=1).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """E_P[‖∇D(x)‖₂²] on real data (Mescheder et al. 2018); the caller multiplies by γ/2."""
    return _critic_gradient(critic, real).pow(2).sum(dim=1).mean()


def mmd2_from_kernels(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> torch.Tensor:
    """The unbiased U-statistic of Gretton et al. 2012, eq. 3, from the three kernel matrices:

    MMD²_u = Σ_{i≠j} k(xᵢ, xⱼ)/(n(n−1)) + Σ_{i≠j} k(yᵢ, yⱼ)/(m(m−1)) − 2 Σ_{i,j} k(xᵢ, yⱼ)/(nm).
    """
    n, m = k_xx.shape[0], k_yy.shape[0]
    return (
        (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
        + (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        - 2.0 * k_xy.mean()
    )


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float]) -> torch.Tensor:
    """Unbiased MMD²(P, Q) with k(a, b) = Σ_h exp(−‖a − b‖²/(2h²)) (Gretton et al. 2012, eq. 3).

    MMD²_u = Σ_{i≠j} k(xᵢ, xⱼ)/(n(n−1)) + Σ_{i≠j} k(yᵢ, yⱼ)/(m(m−1)) − 2 Σ_{i,j} k(xᵢ, yⱼ)/(nm),
    for x ~ P of shape [n, ...] and y ~ Q of shape [m, ...]; may be slightly negative when P = Q.
    """
    x, y = x.flatten(1), y.flatten(1)
    n = x.shape[0]
    z = torch.cat([x, y])
    sq_dist = torch.cdist(z, z).pow(2)
    gamma = torch.tensor([1.0 / (2.0 * h**2) for h in bandwidths], dtype=z.dtype, device=z.device)
    k = exp_floored_at_tiny(-sq_dist.unsqueeze(-1) * gamma).sum(-1)
    return mmd2_from_kernels(k[:n, :n], k[n:, n:], k[:n, n:])


def exp_floored_at_tiny(log_values: torch.Tensor) -> torch.Tensor:
    """exp(log_values) with each value first raised to 2 nats above log of the dtype's smallest normal number
    (−85.3 in float32, −706.4 in float64): the same kernel sums and gradients, bit for bit, ~3× faster on CPU.

    A raised value's exp is below 1e−37 (float32) or 1e−306 (float64) instead of an underflowed one, a difference
    no sum that also holds a kernel's diagonal of ones can represent; exp's underflow path is what it avoids
    (~20× a normal exp on CPU, still taken at the smallest normal number itself; the far pairs of distant
    samples, e.g. the 5×5 grid, are there). float16, whose smallest normal number (6e−5) is not negligible,
    is left as it is.
    """
    tiny = torch.finfo(log_values.dtype).tiny
    if tiny > 1e-30:
        return log_values.exp()
    return log_values.clamp(min=math.log(tiny) + 2.0).exp()


MMD_BANDWIDTH_SCALES = (0.125, 0.25, 0.5, 1.0, 2.0)


def mmd2_dimension_scaled(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MMD²_u with bandwidths h = c·√d, c in `MMD_BANDWIDTH_SCALES`, d the flattened sample size.

    ‖a − b‖² grows like d, so scaling h by √d keeps the kernel away from 0 and 1 on 2-D points
    and 784-pixel images alike.
    """
    root_d = math.sqrt(x[0].numel())
    return mmd2_unbiased(x, y, [c * root_d for c in MMD_BANDWIDTH_SCALES])


def mmd_critic_loss(out_real: torch.Tensor, out_fake: torch.Tensor,
                    bandwidths: Sequence[float] | None = None) -> torch.Tensor:
    """−MMD²_u of critic features: an optional kernel-learning critic (MMD-GAN, Li et al. 2017)."""
    return -mmd_generator_loss(out_real, out_fake, bandwidths)


def mmd_generator_loss(out_real: torch.Tensor, out_fake: torch.Tensor,
                       bandwidths: Sequence[float] | None = None) -> torch.Tensor:
    """MMD²_u between real and generated samples (GMMN; Li et al. 2015, Dziugaite et al. 2015).

    `bandwidths`: the Gaussian kernels' h in the data's own units; None: h = c·√d (`mmd2_dimension_scaled`).
    """
    if bandwidths is None:
        return mmd2_dimension_scaled(out_real, out_fake)
    return mmd2_unbiased(out_real, out_fake, bandwidths)


@dataclass(frozen=True)
class Divergence:
    """A divergence as the three losses a GAN-style module needs (see the module docstring).

    `needs_critic=False` means the losses apply to samples directly: a module without a critic
    passes flattened real and generated batches as `out_real`/`out_fake` and skips the critic step.
    Pickles as a reference to its registry entry (its losses close over lambdas), so modules that
    hold one survive `ddp_spawn`.
    """

    name: str
    critic_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    generator_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    estimate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    needs_critic: bool = True
    # Gradient-penalty weight a module uses unless told otherwise: WGAN needs a Lipschitz critic
    # (WGAN-GP, λ = 10, Gulrajani et al. 2017); the others train without one.
    default_gp_weight: float = 0.0

    def __reduce__(self):
        if DIVERGENCES.get(self.name) is self:
            return get_divergence, (self.name,)
        return Divergence, tuple(getattr(self, field.name) for field in fields(self))  # a variant: by value


def _f_gan(name: str) -> Divergence:
    f_div = F_DIVERGENCES[name]
    return Divergence(
        name,
        critic_loss=partial(f_critic_loss, f_div),
        generator_loss=partial(f_generator_loss, f_div),
        estimate=partial(f_divergence_estimate, f_div),
    )


DIVERGENCES: dict[str, Divergence] = {
    divergence.name: divergence
    for divergence in (
        *(_f_gan(name) for name in F_DIVERGENCES),
        Divergence("minimax", gan_critic_loss, minimax_generator_loss, gan_estimate),
        Divergence("non_saturating", gan_critic_loss, non_saturating_generator_loss, gan_estimate),
        Divergence("wasserstein", wasserstein_critic_loss, critic_score_generator_loss, wasserstein_estimate,
                   default_gp_weight=10.0),
        Divergence("hinge", hinge_critic_loss, critic_score_generator_loss, hinge_estimate),
        Divergence("least_squares", least_squares_critic_loss, least_squares_generator_loss, least_squares_estimate),
        Divergence("mmd", mmd_critic_loss, mmd_generator_loss, mmd_generator_loss, needs_critic=False),
    )
}


def get_divergence(name: str) -> Divergence:
    """The registered `Divergence` called `name`; ValueError listing the valid names otherwise."""
    return DIVERGENCES[check_choice("divergence", name, DIVERGENCES)]


def least_squares_with_labels(labels: Sequence[float]) -> Divergence:
    """`least_squares` with the critic's targets a (fake), b (real) and the generator's c (Mao et al. 2017, eq. 2)
    instead of a = −1, b = 1, c = 0: e.g. [0, 1, 1], the 0-1 coding of LSGAN's own toy code. Any a ≠ b keeps the
    estimate a lower bound on ∫ (p − q)²/(p + q); only b − c = 1, b − a = 2 makes the generator minimise it."""
    values = [float(v) for v in labels]
    if len(values) != 3 or not all(math.isfinite(v) for v in values) or values[0] == values[1]:
        raise ValueError(f"model.least_squares_labels={list(labels)} must be three finite numbers [a, b, c] "
                         "with a ≠ b (a: the critic's target on samples, b: on data, c: the generator's target)")
    a, b, c = values
    return Divergence("least_squares", partial(least_squares_critic_loss, a=a, b=b),
                      partial(least_squares_generator_loss, c=c), partial(least_squares_estimate, a=a, b=b))


def mmd_with_bandwidths(bandwidths: Sequence[float]) -> Divergence:
    """`mmd` with Gaussian kernels of these bandwidths h (the data's units) instead of the dimension-scaled
    default: k(a, b) = Σ_h exp(−‖a − b‖²/(2h²)), the multi-bandwidth kernel of GMMN (Li et al. 2015, §3.2)."""
    bandwidths = tuple(float(h) for h in bandwidths)
    if not bandwidths or not all(math.isfinite(h) and h > 0 for h in bandwidths):
        raise ValueError(f"model.mmd_bandwidths={list(bandwidths)} must be a non-empty list of positive numbers")
    loss = partial(mmd_generator_loss, bandwidths=bandwidths)
    return Divergence("mmd", partial(mmd_critic_loss, bandwidths=bandwidths), loss, loss, needs_critic=False)
