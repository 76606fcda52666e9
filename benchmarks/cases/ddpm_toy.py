"""The ddpm_ring8 experiment's DDPM (time-conditioned residual MLP 3 × 128, T = 1000, batch 256): tiny steps."""
from benchmarks.cases import TOY_GOAL
from benchmarks.cases.ddpm import plain_step
from benchmarks.cases.experiment import experiment_case

__all__ = ["make_case", "plain_step"]


def make_case() -> dict:
    return {**experiment_case("ddpm_ring8", "ddpm_mlp_ring8 (batch 256)", plain_step), "goal": TOY_GOAL}
