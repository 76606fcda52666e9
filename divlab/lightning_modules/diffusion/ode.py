"""torchdiffeq's `odeint` over one interval [t0 → t1] whose vector field is undefined outside it.

Adaptive solvers may probe a first step, or step, past the interval; the VP SDE's σ_t is not real
for t < 0. Steps are stopped at t1 (`step_t`) and the initial-step probe sees time clamped into the
interval, so the solution only ever uses the field on [t0, t1].
"""
import torch
from torchdiffeq import odeint

ADAPTIVE_METHODS = {"dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun"}
FIXED_STEP_METHODS = {"euler", "midpoint", "rk4", "explicit_adams", "implicit_adams"}


def solver_options(method: str, steps: int | None, t0: float, t1: float) -> dict | None:
    """torchdiffeq options for `method`: a fixed-step method takes `steps` equal steps over [t0, t1]
    (its cost is then bounded: `steps` evaluations × the method's stages); an adaptive one takes none."""
    if method in FIXED_STEP_METHODS:
        if not steps or steps < 1:
            raise ValueError(f"fixed-step ODE method {method!r} needs model.ode_steps >= 1, got {steps!r}")
        return {"step_size": abs(t1 - t0) / steps}
    if method not in ADAPTIVE_METHODS:
        valid = ", ".join(sorted(ADAPTIVE_METHODS | FIXED_STEP_METHODS))
        raise ValueError(f"unknown model.ode_method {method!r}; valid choices: {valid}")
    if steps is not None:
        raise ValueError(f"model.ode_steps={steps} applies to fixed-step methods; {method!r} adapts its steps "
                         "to model.ode_tolerance (set ode_steps=null, or a fixed-step ode_method such as rk4)")
    return None


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
