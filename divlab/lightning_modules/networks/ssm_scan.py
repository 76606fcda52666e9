"""Diagonal linear recurrences h_t = a_t ⊙ h_{t−1} + b_t, the core of every state-space layer.

`sequential_scan` is the definition (one step per position; the tests' reference); `chunked_scan`
computes the same states in Q + T/Q vectorised steps for chunk size Q, with an adjoint backward.
Both work on real or complex tensors of shape [batch, time, *state].
"""
import torch


def sequential_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None):
    """h_t = a_t ⊙ h_{t−1} + b_t for t = 1..T, h_0 = h0 (zeros by default).

    a broadcasts against b ([B, T, *S]); returns (all states [B, T, *S], last state [B, *S]).
    """
    a = a.expand_as(b)
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    states = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        states.append(h)
    return torch.stack(states, 1), h


def chunked_scan(a: torch.Tensor, b: torch.Tensor, chunk_size: int, h0: torch.Tensor | None = None):
    """The states of `sequential_scan` (all [B, T, *S], last [B, *S]), computed chunk-parallel.

    The sequence is cut into T/Q chunks of Q positions. Within chunks, all chunks advance together
    from a zero state, one position per step, also accumulating each position's decay A_t = ∏ a
    since the chunk start; then the chunks are joined by carrying the state across them,
    h_t = local_t + A_t ⊙ h_(chunk start). That is Q + T/Q steps over tensors T/Q (resp. Q) times
    wider than the plain loop's. Only products of the a's appear (never their inverses), so decays
    in (0, 1] stay stable at any length. On CPU a chunk as long as the sequence (the plain loop)
    is fastest up to a few hundred positions; shorter chunks pay off on long sequences and GPUs.

    The backward pass is the adjoint recurrence λ_t = G_t + conj(a_{t+1}) λ_{t+1}, run backwards in
    time by the same scan, with ∂L/∂b_t = λ_t and ∂L/∂a_t = λ_t conj(h_{t−1}), instead of autograd
    through every step (which keeps a graph node and a copy per step).
    """
    b_shape = b.shape
    h0 = torch.zeros_like(b[:, 0]) if h0 is None else h0
    states = _ChunkedScan.apply(a.expand(b_shape), b, h0, chunk_size)
    return states, states[:, -1]


class _ChunkedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, h0, chunk_size):
        states = _scan(a, b, h0, chunk_size)
        ctx.save_for_backward(a, states, h0)
        ctx.chunk_size = chunk_size
        return states

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_states):
        a, states, h0 = ctx.saved_tensors
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], 1).conj()
        adjoint = _scan(a_next.flip(1), grad_states.flip(1), torch.zeros_like(h0), ctx.chunk_size).flip(1)
        previous = torch.cat([h0.unsqueeze(1), states[:, :-1]], 1)
        return adjoint * previous.conj(), adjoint, a[:, 0].conj() * adjoint[:, 0], None


def _scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor, chunk_size: int) -> torch.Tensor:
    batch, length = b.shape[:2]
    n_chunks = -(-length // chunk_size)
    pad = n_chunks * chunk_size - length
    if pad:  # identity maps (a = 1, b = 0) after the end change no earlier state
        a = torch.cat([a, a.new_ones(batch, pad, *a.shape[2:])], 1)
        b = torch.cat([b, b.new_zeros(batch, pad, *b.shape[2:])], 1)
    a = a.reshape(batch, n_chunks, chunk_size, *a.shape[2:])
    b = b.reshape(batch, n_chunks, chunk_size, *b.shape[2:])
    local, decay = [b[:, :, 0]], [a[:, :, 0]]
    for i in range(1, chunk_size):
        local.append(a[:, :, i] * local[-1] + b[:, :, i])
        decay.append(a[:, :, i] * decay[-1])
    h, starts = h0, []
    for c in range(n_chunks):
        starts.append(h)
        h = decay[-1][:, c] * h + local[-1][:, c]
    states = torch.stack(local, 2) + torch.stack(decay, 2) * torch.stack(starts, 1).unsqueeze(2)
    return states.reshape(batch, n_chunks * chunk_size, *states.shape[3:])[:, :length]
