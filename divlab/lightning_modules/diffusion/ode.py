"""torchdiffeq's `odeint` over one interval [t0 → t1] whose vector field is undefined outside it.

Adaptive solvers may probe a first step, or step, past the interval; the VP SDE's σ_t is not real
for t < 0. Steps are stopped at t1 (`step_t`) and the initial-step probe sees time clamped into the
interval, so the solution only ever uses the field on [t0, t1].
"""
import torch
from torchdiffeq import odeint

ADAPTIVE_METHODS = {"dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun"}


def odeint_interval(func, y0, t0: float, t1: float, rtol: float, atol: float, method: str = "dopri5", options=None):
    """y(t1) for dy/dt = func(t, y), y(t0) = y0; y0 a tensor or a tuple of tensors."""
    first = y0[0] if isinstance(y0, tuple) else y0
    times = torch.tensor([t0, t1], device=first.device, dtype=first.dtype)
    lo, hi = min(t0, t1), max(t0, t1)
    options = dict(options or {})
    if method in ADAPTIVE_METHODS:
        options.setdefault("step_t", times[1:])

    def clamped(t, y):
        return func(t.clamp(lo, hi), y)

    solution = odeint(clamped, y0, times, rtol=rtol, atol=atol, method=method, options=options)
    return tuple(s[-1] for s in solution) if isinstance(y0, tuple) else solution[-1]
