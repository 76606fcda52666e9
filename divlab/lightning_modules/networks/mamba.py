"""Mamba: a selective state-space language model (Gu & Dao 2023).

Unlike S4D, the step Δ_t and the maps B_t, C_t depend on the input, so the recurrence
h_t = exp(Δ_t A) ⊙ h_{t−1} + Δ_t B_t u_t, y_t = C_t · h_t + D u_t is time-varying and has no
convolution kernel. Training runs it as a chunked parallel scan in pure torch (CPU or GPU), or with
the fused `mamba-ssm` CUDA kernel when that optional package imports and the tensors are on a GPU;
generation runs one step per token.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from divlab.lightning_modules.networks.recurrent_lm import RecurrentLM
from divlab.lightning_modules.networks.ssm_scan import chunked_scan

try:  # optional: pip install mamba-ssm (CUDA only)
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except (ImportError, OSError, RuntimeError):
    selective_scan_fn = None


def selective_discretise(u, delta, A, B):
    """Zero-order hold on A, Euler on B (as in Mamba): a_t = exp(Δ_t A), b_t = Δ_t B_t u_t.

    u, Δ [..., D], A [D, N], B [..., N] → a, b [..., D, N].
    """
    return torch.exp(delta.unsqueeze(-1) * A), (delta * u).unsqueeze(-1) * B.unsqueeze(-2)


def selective_scan(u, delta, A, B, C, D, chunk_size: int = 64):
    """y_t = C_t · h_t + D u_t with h_t = exp(Δ_t A) ⊙ h_{t−1} + Δ_t B_t u_t, h_0 = 0.

    u, Δ [B, T, D]; A [D, N]; B, C [B, T, N]; D [D] → y [B, T, D] (computed in float32), h_T [B, D, N].
    """
    if selective_scan_fn is not None and u.is_cuda:
        y, last = selective_scan_fn(*(t.transpose(1, 2).contiguous() for t in (u, delta)), A.float(),
                                    *(t.transpose(1, 2).contiguous() for t in (B, C)), D.float(),
                                    return_last_state=True)
        return y.transpose(1, 2).to(u.dtype), last
    u32, delta, B, C = (t.float() for t in (u, delta, B, C))
    a, b = selective_discretise(u32, delta, A, B)
    h, last = chunked_scan(a, b, chunk_size)
    return (torch.einsum("btdn,btn->btd", h, C) + D * u32).to(u.dtype), last


def selective_step(u, delta, A, B, C, D, h):
    """One position of `selective_scan`: u, Δ [B, D]; B, C [B, N]; h [B, D, N] → (y [B, D], h')."""
    a, b = selective_discretise(u.float(), delta.float(), A, B.float())
    h = a * h + b
    return ((h * C.float().unsqueeze(-2)).sum(-1) + D * u.float()).to(u.dtype), h


class SelectiveSSM(nn.Module):
    """x [B, T, C] → out(y ⊙ SiLU(z)): y = selective scan of SiLU(causal depthwise conv(x_in))."""

    def __init__(self, n_embd: int, d_state: int = 16, expand: int = 2, d_conv: int = 4, dt_rank: int | None = None,
                 chunk_size: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if min(d_state, expand, d_conv, chunk_size) < 1:
            raise ValueError(f"d_state, expand, d_conv, chunk_size must be >= 1, "
                             f"got {d_state}, {expand}, {d_conv}, {chunk_size}")
        d_inner, self.dt_rank = expand * n_embd, dt_rank or math.ceil(n_embd / 16)
        self.d_state, self.d_conv, self.chunk_size = d_state, d_conv, chunk_size
        self.in_proj = nn.Linear(n_embd, 2 * d_inner, bias=False)
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        # Δ starts log-uniform in [dt_min, dt_max]: the bias is softplus⁻¹(Δ) = Δ + log(1 − e^{−Δ}).
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real initialisation A_n = −n, stored as log(−A) so A stays negative (decays in (0, 1)), and
        # flat: the ar family weight-decays matrices only (ndim >= 2); Mamba trains A without decay.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float)).repeat(d_inner))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, n_embd, bias=False)

    def selection(self, x: torch.Tensor):
        """The input-dependent Δ (positive), B and C."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C

    def A(self) -> torch.Tensor:
        return -self.A_log.exp().view(self.D.shape[0], self.d_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prefill(x)[0]

    def prefill(self, x: torch.Tensor):
        """y [B, T, C] and the state after the last position: (the last d_conv conv inputs, h_T)."""
        length = x.shape[1]
        x, z = self.in_proj(x).chunk(2, dim=-1)
        window = F.pad(x.transpose(1, 2), (max(self.d_conv - length, 0), 0))[..., -self.d_conv:]
        x = F.silu(self.conv(x.transpose(1, 2))[..., :length].transpose(1, 2))  # left padding only: causal
        delta, B, C = self.selection(x)
        y, h = selective_scan(x, delta, self.A(), B, C, self.D, self.chunk_size)
        return self.out_proj(y * F.silu(z)), (window, h)

    def step(self, x: torch.Tensor, state):
        window, h = state
        x, z = self.in_proj(x).chunk(2, dim=-1)
        window = torch.cat([window[..., 1:], x.unsqueeze(-1).to(window.dtype)], dim=-1)
        x = F.silu((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias).to(z.dtype)
        delta, B, C = self.selection(x)
        y, h = selective_step(x, delta, self.A(), B, C, self.D, h)
        return self.out_proj(y * F.silu(z)), (window, h)


class Mamba(RecurrentLM):
    """n_layer residual blocks of [LN → selective SSM] (no MLP by default, as in Mamba), tied embedding/head."""

    def __init__(self, vocab_size: int, block_size: int | None = None, n_head: int | None = None,
                 n_layer: int = 4, n_embd: int = 128, d_state: int = 16, expand: int = 2, d_conv: int = 4,
                 dt_rank: int | None = None, chunk_size: int = 64, mlp_ratio: int = 0, dropout: float = 0.0):
        """block_size and n_head are accepted and unused: any length runs, and presets written for GPT
        (which set n_head) also run with `networks=mamba`."""
        mixers = [SelectiveSSM(n_embd, d_state, expand, d_conv, dt_rank, chunk_size) for _ in range(n_layer)]
        super().__init__(vocab_size, n_embd, mixers, mlp_ratio, dropout)
