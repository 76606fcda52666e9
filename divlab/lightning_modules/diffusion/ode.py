"""`ODESolver`: torchdiffeq's `odeint` over one interval [t0 → t1] whose vector field is undefined outside it.

Adaptive solvers may probe a first step, or step, past the interval; the VP SDE's σ_t is not real
for t < 0. Steps are stopped at t1 (`step_t`) and the initial-step probe sees time clamped into the
interval, so the solution only ever uses the field on [t0, t1].
"""
from dataclasses import dataclass

import torch
from torchdiffeq import odeint

from divlab.validation import check_positive

ADAPTIVE_METHODS = {"dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun"}
FIXED_STEP_METHODS = {"euler", "midpoint", "rk4", "explicit_adams", "implicit_adams"}


@dataclass(frozen=True)
class ODESolver:
    """How probability-flow ODEs are solved, checked once: an adaptive `method` (dopri5, …) to
    relative and absolute `tolerance`, or a fixed-step one (rk4, euler, …) with `steps` equal steps
    over the interval (its cost then bounded: `steps` evaluations × the method's stages)."""

    method: str = "dopri5"
    tolerance: float = 1e-5
    steps: int | None = None

    def __post_init__(self):
        check_positive("model.ode_tolerance", self.tolerance)
        if self.method in FIXED_STEP_METHODS:
            if not self.steps or self.steps < 1:
                raise ValueError(f"fixed-step ODE method {self.method!r} needs model.ode_steps >= 1, "
                                 f"got {self.steps!r}")
        elif self.method not in ADAPTIVE_METHODS:
            valid = ", ".join(sorted(ADAPTIVE_METHODS | FIXED_STEP_METHODS))
            raise ValueError(f"unknown model.ode_method {self.method!r}; valid choices: {valid}")
        elif self.steps is not None:
            raise ValueError(f"model.ode_steps={self.steps} applies to fixed-step methods; {self.method!r} adapts "
                             "its steps to model.ode_tolerance (set ode_steps=null, or a fixed-step ode_method "
                             "such as rk4)")

    def solve(self, func, y0, t0: float, t1: float):
        """y(t1) for dy/dt = func(t, y), y(t0) = y0; y0 a tensor or a tuple of tensors."""
        first = y0[0] if isinstance(y0, tuple) else y0
        times = torch.tensor([t0, t1], device=first.device, dtype=first.dtype)
        lo, hi = min(t0, t1), max(t0, t1)
        if self.method in FIXED_STEP_METHODS:
            options = {"step_size": abs(t1 - t0) / self.steps}
        else:
            options = {"step_t": times[1:]}

        def clamped(t, y):
            return func(t.clamp(lo, hi), y)

        solution = odeint(clamped, y0, times, rtol=self.tolerance, atol=self.tolerance, method=self.method,
                          options=options)
        return tuple(s[-1] for s in solution) if isinstance(y0, tuple) else solution[-1]
