"""What callbacks and the run record may read of a family: its contract, declared as Protocols.

A family names the Protocols it meets as bases of its class, beside `L.LightningModule`
(`class VAE(L.LightningModule, FamilyModule, GenerativeModule, LikelihoodModel)`), and sets their members
itself: a value the Protocol only declares. Callbacks check `isinstance(pl_module, LikelihoodModel)` and then
read its members, never a family's internals; `tests/test_contracts.py` checks that every model config's class
sets every member of what it claims, and names the one it forgot.
"""
from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class FamilyModule(Protocol):
    """Every module a `configs/model/` config builds: how its runs are grouped, checked and seeded."""

    family: str  # the family's name (vae, gan, ddpm, score, ar, align): run.json's `family`, a W&B tag, in hparams
    divergence: str  # what its training step minimises (e.g. elbo, non_saturating): run.json's `divergence`
    validation_metrics: tuple[str, ...]  # logged at every validation as val/<name>: checkpoint monitors must be one
    draws_training_noise: bool  # its training step draws noise, so each DDP rank reseeds (callbacks/rank_noise.py)


@runtime_checkable
class GenerativeModule(Protocol):
    """A module whose samples the callbacks score (samples, toy metrics, image metrics)."""

    def sample(self, n: int) -> Tensor:  # n draws from P_θ in the DataModule's batch layout
        ...


@runtime_checkable
class LikelihoodModel(Protocol):
    """A module with a log-likelihood of data batches, and what kind of number it is."""

    log_likelihood_is_exact: bool  # log p_θ(x) itself (or an unbiased estimate), not a bound
    log_likelihood_bound: str | None  # which bound when not exact (elbo, iwae, vlb, dequantization), else None
    log_likelihood_is_discrete: bool  # a probability of the data's discrete values (8-bit, tokens), not a density
    log_likelihood_matches_sample: bool  # `sample` draws from the distribution `log_likelihood` scores

    def log_likelihood(self, x: Tensor) -> Tensor:  # log p_θ(x) in nats, one value per example: [B]
        ...


@runtime_checkable
class PreferenceScorer(Protocol):
    """A reward model of preference pairs (the neural `RewardModel`, the bag-of-words one)."""

    def pair_rewards(self, batch: dict) -> tuple[Tensor, Tensor]:  # (r(x, y_w), r(x, y_l)), [B] each
        ...


@runtime_checkable
class AlignmentModule(Protocol):
    """A policy trained against a reference policy (DPO, PPO): what the `alignment` callback measures."""

    policy: Any  # π, the `ar` model being trained (an AutoregressiveModel, which imports this file)
    reference_policy: Any  # π_ref, frozen: a ReferencePolicy (`model`, and `text`: its tokenizer and corpus)
    reward_model: PreferenceScorer | None  # the learned reward it is trained on, None when it has none


CONTRACTS = (FamilyModule, GenerativeModule, LikelihoodModel, AlignmentModule)


def members(protocol: type) -> tuple[str, ...]:
    """The names `protocol` declares: its annotated attributes and its methods."""
    methods = (name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_"))
    return (*vars(protocol).get("__annotations__", {}), *methods)


def missing_members(module: object, protocol: type) -> list[str]:
    """The members of `protocol` that `module` lacks (for messages: a module that claims it has them all)."""
    return [name for name in members(protocol) if not hasattr(module, name)]
