"""The top-level `divergence=`: read by the model that takes one by name (its config says `${divergence}`),
refused by every other, so a choice is never silently ignored."""
from omegaconf import DictConfig, OmegaConf

from divlab.lightning_modules.alignment_objectives import PREFERENCE_LOSSES, RENAMED_PREFERENCE_LOSSES
from divlab.lightning_modules.divergences import DIVERGENCES

READS_DIVERGENCE = "${divergence}"


def divergence_readers() -> dict[str, list[str]]:
    """The model configs that read the top-level `divergence`, and the names each accepts."""
    return {"gan": sorted(DIVERGENCES)}


def check_divergence_is_read(cfg: DictConfig) -> None:
    """A top-level `divergence=` must be read by the chosen model (its config says `${divergence}`), never ignored.

    Families whose objective is fixed (the VAE's ELBO, the AR model's likelihood) or chosen by their own keys
    (DDPM: model.target and model.loss; DPO: model.loss) do not read it, so a run of one with a divergence fails here.
    """
    divergence = cfg.get("divergence")
    model = cfg.get("model")
    if divergence is None or model is None or _mentions(OmegaConf.to_container(model, resolve=False), READS_DIVERGENCE):
        return
    own = model.get("divergence") if "divergence" in model else None
    if own is not None:
        raise ValueError(f"divergence={divergence!r} and model.divergence={own!r} disagree: the model's own setting "
                         f"replaces the top-level one; give one of them (divergence={own} alone does it)")
    if "loss" in model and str(model.get("_target_", "")).endswith(".dpo.DPO"):
        loss = RENAMED_PREFERENCE_LOSSES.get(divergence, divergence)
        raise ValueError(f"divergence={divergence!r} is not read by model=dpo: its preference loss is "
                         f"model.loss={'|'.join(PREFERENCE_LOSSES)}"
                         + (f"; use model.loss={loss}" if loss in PREFERENCE_LOSSES else "")
                         + " and drop divergence= (the run records the loss's name as its divergence)")
    readers = "; ".join(f"model={name}: {', '.join(values)}" for name, values in divergence_readers().items())
    raise ValueError(f"divergence={divergence!r} is not read by the model {model.get('_target_')}, which would ignore "
                     f"it; the models that read it and their divergences: {readers}. Drop divergence= (null) or "
                     "choose one of those models")


def _mentions(node, text: str) -> bool:
    """Whether any string in a nested container of dicts and lists contains `text`."""
    if isinstance(node, dict):
        return any(_mentions(value, text) for value in node.values())
    if isinstance(node, list):
        return any(_mentions(value, text) for value in node)
    return isinstance(node, str) and text in node
