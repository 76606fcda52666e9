"""The ring-of-8 GAN of the studies (MLP 3 × 128 generator and critic, non-saturating loss, batch 256):
tiny steps, where the framework's cost per step matters most."""
import functools

from benchmarks.cases import TOY_GOAL
from benchmarks.cases.gan import gan_case, plain_step
from divlab.datamodules.toy2d import Toy2DDataModule
from divlab.lightning_modules.networks.mlp import MLP

__all__ = ["make_case", "plain_step"]


def make_case() -> dict:
    case = gan_case("gan_mlp_ring8 (batch 256)", Toy2DDataModule("ring8", batch_size=256),
                    functools.partial(MLP, hidden=128, depth=3, activation="relu"),
                    functools.partial(MLP, hidden=128, depth=3, activation="leaky_relu"), lr=1e-3, noise_dim=8)
    return {**case, "goal": TOY_GOAL}
