"""Time-conditioned networks share one time embedding; `TimeMLP` is the denoiser for flat data (2-D points).

Diffusion time t arrives as a tensor [B] (or a scalar) in [0, 1]: score SDEs pass their continuous
time, DDPM families pass t/T.
"""
import math

import torch
from torch import nn

from divlab.validation import check_positive

# t ∈ [0, 1] is embedded as 1000·t, the integer-timestep range the sinusoid was designed for
# (Vaswani et al. 2017; Ho et al. 2020).
TIME_SCALE = 1000.0


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """[cos(t ω_i), sin(t ω_i)]_{i < dim/2} with ω_i = max_period^(−2i/dim); t [B] → [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class TimeEmbedding(nn.Module):
    """t [B] in [0, 1] → [B, out_dim]: the sinusoid of 1000·t through a two-layer MLP.

    One time for the whole batch, a scalar or a [B] tensor expanded from one value (stride 0, as the samplers
    and the likelihood's ODE pass their steps), is embedded once: → [1, out_dim], which the blocks broadcast.
    For the toy networks the embedding is a quarter of a forward pass's arithmetic.
    """

    def __init__(self, out_dim: int, sinusoid_dim: int | None = None):
        super().__init__()
        self.sinusoid_dim = sinusoid_dim or out_dim
        if self.sinusoid_dim % 2:
            raise ValueError(f"time embedding sinusoid_dim must be even, got {self.sinusoid_dim}")
        self.mlp = nn.Sequential(nn.Linear(self.sinusoid_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor, batch_size: int) -> torch.Tensor:
        t = torch.as_tensor(t).reshape(-1).expand(batch_size)
        if t.stride(0) == 0:  # one time, however many rows: embed it once
            t = t[:1]
        return self.mlp(sinusoidal_embedding(TIME_SCALE * t, self.sinusoid_dim))


class TimeResidualBlock(nn.Module):
    """h + W₂ SiLU(W₁ SiLU(LayerNorm h) + W_t emb)."""

    def __init__(self, width: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.time = nn.Linear(emb_dim, width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(self.act(self.fc1(self.act(self.norm(h))) + self.time(emb)))


class TimeMLP(nn.Module):
    """(x [B, *in_shape], t [B]) → [B, *out_shape]: a residual MLP with the time embedding added in every block."""

    def __init__(self, in_shape, out_shape, hidden: int = 128, depth: int = 3, time_dim: int = 64):
        super().__init__()
        check_positive("hidden", hidden)
        check_positive("depth", depth)
        self.out_shape = tuple(out_shape)
        self.time = TimeEmbedding(time_dim)
        self.input = nn.Linear(math.prod(in_shape), hidden)
        self.blocks = nn.ModuleList(TimeResidualBlock(hidden, time_dim) for _ in range(depth))
        self.output = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, math.prod(self.out_shape)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(t, x.shape[0])
        h = self.input(x.flatten(1))
        for block in self.blocks:
            h = block(h, emb)
        return self.output(h).view(-1, *self.out_shape)
