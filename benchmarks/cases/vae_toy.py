"""The vae_ring8 experiment's VAE (MLP 2 × 128 encoder and decoder, 2-d latent, Gaussian decoder, batch 256):
tiny steps."""
from benchmarks.cases import TOY_GOAL
from benchmarks.cases.experiment import experiment_case
from benchmarks.cases.vae import plain_step

__all__ = ["make_case", "plain_step"]


def make_case() -> dict:
    return {**experiment_case("vae_ring8", "vae_mlp_ring8 (batch 256)", plain_step), "goal": TOY_GOAL}
