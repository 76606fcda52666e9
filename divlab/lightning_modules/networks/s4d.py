"""S4D: a diagonal state-space language model (Gu et al. 2022, "On the Parameterization and
Initialization of Diagonal State Space Models").

Each of C channels runs its own continuous system x' = A x + B u, y = Re(C x) + D u with a diagonal
complex A (N/2 conjugate pairs, so the output is real). Zero-order hold with a learnt step Δ gives
the discrete recurrence h_k = Ā h_{k−1} + B̄ u_k, whose impulse response is the kernel
K_k = 2 Re Σ_n C_n B̄_n Ā_n^k. Training convolves with K by FFT in O(T log T); generation runs the
recurrence, one step per token.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from divlab.lightning_modules.networks.recurrent_lm import RecurrentLM


def powers(A_bar: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """Ā^k for every k: [..., N] × [K] → [..., N, K], as |Ā|^k e^{ik arg Ā} (CPU's complex exp is slow)."""
    log_abs, angle = A_bar.abs().log().unsqueeze(-1), A_bar.angle().unsqueeze(-1)
    return torch.polar(torch.exp(log_abs * exponents), angle * exponents)


def zoh_discretise(log_dt: torch.Tensor, A: torch.Tensor):
    """Zero-order hold with B = 1 (B is folded into C): Ā = exp(ΔA), B̄ = (exp(ΔA) − 1)/A.

    log_dt [C], A [C, N] complex → Ā, B̄ [C, N].
    """
    dtA = A * log_dt.exp().unsqueeze(-1)
    A_bar = dtA.exp()
    return A_bar, (A_bar - 1) / A


def s4d_kernel(log_dt: torch.Tensor, A: torch.Tensor, C: torch.Tensor, length: int) -> torch.Tensor:
    """K_k = Σ_n C_n · (exp(ΔA_n) − 1)/A_n · exp(ΔA_n)^k for k < length: complex [C, length]."""
    A_bar, B_bar = zoh_discretise(log_dt, A)
    return torch.einsum("cn,cnk->ck", C * B_bar, powers(A_bar, torch.arange(length, device=A.device)))


def s4d_init_imag(d_state: int, init: str) -> torch.Tensor:
    """Imaginary parts of A for the N/2 modes: S4D-Lin π n, or S4D-Inv (N/π)(N/(2n+1) − 1)."""
    n = torch.arange(d_state // 2, dtype=torch.float)
    if init == "lin":
        return math.pi * n
    if init == "inv":
        return d_state / math.pi * (d_state / (2 * n + 1) - 1)
    raise ValueError(f"init must be 'lin' or 'inv', got {init!r}")


class S4DLayer(nn.Module):
    """u [B, T, C] → GLU(W · GELU(y)), y = K ∗ u + D u per channel (causal convolution)."""

    def __init__(self, n_embd: int, d_state: int = 64, init: str = "lin", dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be even and >= 2 (conjugate pairs), got {d_state}")
        self.state_shape = (n_embd, d_state // 2)
        self.log_dt = nn.Parameter(torch.rand(n_embd) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        # A is stored flat: the ar family weight-decays matrices only (ndim >= 2), and decay would pull
        # the dynamics themselves (S4D trains A and Δ without it).
        self.log_A_real = nn.Parameter(torch.full((n_embd * d_state // 2,), math.log(0.5)))
        self.A_imag = nn.Parameter(s4d_init_imag(d_state, init).repeat(n_embd))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(n_embd, d_state // 2, dtype=torch.cfloat)))
        self.D = nn.Parameter(torch.randn(n_embd))
        self.out = nn.Linear(n_embd, 2 * n_embd)

    def A(self) -> torch.Tensor:
        return torch.complex(-self.log_A_real.exp(), self.A_imag).view(self.state_shape)

    def kernel(self, length: int) -> torch.Tensor:
        """The real convolution kernel [C, length]; the factor 2 counts each conjugate pair."""
        return 2 * s4d_kernel(self.log_dt, self.A(), torch.view_as_complex(self.C), length).real

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        """The state-space map alone, convolution mode: [B, T, C] → [B, T, C], in float32."""
        length = u.shape[1]
        u = u.float().transpose(1, 2)
        with torch.autocast(u.device.type, enabled=False):  # FFTs in low precision lose the kernel's tail
            k_f = torch.fft.rfft(self.kernel(length), n=2 * length)  # zero-padding to 2T makes it causal
            y = torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * k_f, n=2 * length)[..., :length]
        return (y + u * self.D.unsqueeze(-1)).transpose(1, 2)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self._output(self.ssm(u), u.dtype)

    def _output(self, y: torch.Tensor, dtype) -> torch.Tensor:
        return F.glu(self.out(F.gelu(y).to(dtype)), dim=-1)

    def prefill(self, u: torch.Tensor):
        """Convolution mode, plus the state after the last position: h_T = B̄ Σ_k Ā^(T−1−k) u_k."""
        length = u.shape[1]
        with torch.autocast(u.device.type, enabled=False):
            A_bar, B_bar = zoh_discretise(self.log_dt, self.A())
            decay = powers(A_bar, torch.arange(length - 1, -1, -1, device=u.device))
            h = B_bar * torch.einsum("bct,cnt->bcn", u.float().transpose(1, 2).to(decay.dtype), decay)
        return self.forward(u), h

    def ssm_step(self, u: torch.Tensor, h: torch.Tensor):
        """Recurrence mode: u [B, C], h [B, C, N/2] → (y [B, C], h'), h' = Ā h + B̄ u, y = 2 Re(C h') + D u."""
        A_bar, B_bar = zoh_discretise(self.log_dt, self.A())
        h = A_bar * h + B_bar * u.float().unsqueeze(-1)
        return 2 * (torch.view_as_complex(self.C) * h).sum(-1).real + self.D * u.float(), h

    def step(self, u: torch.Tensor, h: torch.Tensor):
        y, h = self.ssm_step(u, h)
        return self._output(y, u.dtype), h


class S4D(RecurrentLM):
    """n_layer residual blocks of [LN → S4D layer] and [LN → GELU MLP], tied embedding/head."""

    def __init__(self, vocab_size: int, block_size: int | None = None, n_head: int | None = None,
                 n_layer: int = 4, n_embd: int = 128, d_state: int = 64, init: str = "lin", mlp_ratio: int = 4,
                 dropout: float = 0.0, dt_min: float = 1e-3, dt_max: float = 1e-1):
        """block_size and n_head are accepted and unused: any length runs, and presets written for GPT
        (which set n_head) also run with `networks=s4d`."""
        mixers = [S4DLayer(n_embd, d_state, init, dt_min, dt_max) for _ in range(n_layer)]
        super().__init__(vocab_size, n_embd, mixers, mlp_ratio, dropout)
