"""The family contract (`divlab/lightning_modules/contracts.py`) is declared and kept: every LightningModule a
config can build claims `FamilyModule` and sets every member of each Protocol it claims, and one that forgets a
member fails here with the member's name. Read from the classes' source, so no family is built."""
import ast
import inspect
import re
import textwrap

import lightning as L
import pytest
import torch
from hydra.utils import get_object

from conftest import CONFIG_DIR, ROOT
from divlab.lightning_modules.contracts import (
    CONTRACTS,
    FamilyModule,
    GenerativeModule,
    LikelihoodModel,
    members,
    missing_members,
)

TARGET = re.compile(r"_target_:\s*(divlab\.lightning_modules\.[\w.]+)")


def config_modules() -> list[type]:
    """Every LightningModule class some config under configs/ names as a `_target_`."""
    targets = {name for path in CONFIG_DIR.rglob("*.yaml") for name in TARGET.findall(path.read_text())}
    classes = {get_object(name) for name in targets}  # functions too: `_partial_` targets
    return sorted((c for c in classes if isinstance(c, type) and issubclass(c, L.LightningModule)),
                  key=lambda c: c.__name__)


def _is_protocol(cls: type) -> bool:
    return bool(vars(cls).get("_is_protocol"))


def _assigned_on_self(cls: type) -> set[str]:
    """Names the class's own methods assign as `self.<name> = ...` (instance attributes set in `__init__`)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        else:
            continue
        for part in (part for target in targets for part in ast.walk(target)):  # `self.a, self.b = ...` too
            if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) and part.value.id == "self":
                names.add(part.attr)
    return names


def sets(cls: type, name: str) -> bool:
    """Whether `cls` itself (not a Protocol it claims, whose methods are only `...`) sets member `name`: a class
    attribute, property or method in its MRO, or `self.<name> = ...` in one of its classes' methods."""
    own = [c for c in cls.__mro__ if not _is_protocol(c) and c is not object]
    return any(name in vars(c) for c in own) or any(
        name in _assigned_on_self(c) for c in own if not c.__module__.startswith(("lightning", "torch")))


def contract_problems(cls: type) -> list[str]:
    """What `cls` breaks of the contract, one line each, naming the member."""
    problems = []
    for protocol in CONTRACTS:
        claimed = protocol in cls.__mro__
        for name in members(protocol):
            if claimed and not sets(cls, name):
                problems.append(f"{cls.__name__} claims {protocol.__name__} but does not set `{name}`")
            elif not claimed and sets(cls, name):
                problems.append(f"{cls.__name__} sets `{name}` of {protocol.__name__} without claiming it: "
                                f"add {protocol.__name__} to its bases, or callbacks will not read it")
    return problems


@pytest.mark.parametrize("module", config_modules(), ids=lambda c: c.__name__)
def test_every_family_a_config_builds_keeps_the_contract_it_claims(module):
    assert FamilyModule in module.__mro__, (f"{module.__name__} is built by a model config: it must claim "
                                            f"FamilyModule (divlab/lightning_modules/contracts.py)")
    problems = contract_problems(module)
    assert not problems, "\n".join(problems)


def test_the_walk_finds_every_family():
    names = {c.__name__ for c in config_modules()}
    assert {"VAE", "GAN", "DDPM", "ScoreSDE", "AutoregressiveModel", "DPO", "PPO", "RewardModel"} <= names


class Forgetful(L.LightningModule, FamilyModule, GenerativeModule, LikelihoodModel):
    """A planted family: sets everything it claims except `log_likelihood_bound` and `sample`."""

    family = "forgetful"
    validation_metrics = ("loss",)
    draws_training_noise = True
    log_likelihood_is_exact = True
    log_likelihood_is_discrete = False
    log_likelihood_matches_sample = True

    def __init__(self, divergence: str = "forward_kl"):
        super().__init__()
        self.divergence = divergence  # an instance attribute counts

    def log_likelihood(self, x):
        return x.sum(-1)


class Unclaimed(L.LightningModule, FamilyModule):
    family, divergence, validation_metrics, draws_training_noise = "unclaimed", "kl", (), False

    def log_likelihood(self, x):
        return x.sum(-1)


def test_a_family_that_forgets_a_member_fails_naming_it():
    assert contract_problems(Forgetful) == [
        "Forgetful claims GenerativeModule but does not set `sample`",  # the Protocol's `...` does not count
        "Forgetful claims LikelihoodModel but does not set `log_likelihood_bound`",
    ]
    problems = contract_problems(Unclaimed)
    assert len(problems) == 1 and "sets `log_likelihood` of LikelihoodModel without claiming it" in problems[0]


def test_callbacks_see_a_module_meet_a_protocol_only_with_every_member():
    class Structural(torch.nn.Module):  # claims nothing: isinstance checks its members
        log_likelihood_is_exact, log_likelihood_bound, log_likelihood_is_discrete = True, None, False

        def log_likelihood(self, x):
            return x.sum(-1)

    assert not isinstance(Structural(), LikelihoodModel)
    assert missing_members(Structural(), LikelihoodModel) == ["log_likelihood_matches_sample"]
    Structural.log_likelihood_matches_sample = True
    assert isinstance(Structural(), LikelihoodModel) and not isinstance(Structural(), FamilyModule)


def test_callbacks_and_tracking_read_the_contract_instead_of_probing_the_module():
    probe = re.compile(r"\b(hasattr|getattr)\(\s*pl_module\b")
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for folder in ("callbacks", "tracking") for path in sorted((ROOT / "divlab" / folder).glob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if probe.search(line)]
    assert not found, "check isinstance(pl_module, <Protocol of contracts.py>) instead:\n" + "\n".join(found)
