"""The top-level `divergence=` and `budget.*`: read by the model whose config says `${divergence}` (or
`${oc.select:budget.<key>,...}`), refused by every other, so a choice is never silently ignored."""
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


def check_budget_is_read(cfg: DictConfig, overrides: list[str]) -> None:
    """`budget.<key>=` given on the command line must be read by the chosen model's config, never ignored.

    `budget` caps the score SDE's sampling cost (configs/model/score.yaml reads budget.sample_steps, ode_method and
    ode_steps where nothing sets its own model.<key>); debug=tiny|fdr set it for every run as a cap that applies where
    it is read. Given on the command line, a key the model does not read (another family, or a preset that sets the
    model's own key: experiment=score_ring8 sets model.sample_steps) is refused, naming the key to set instead.
    """
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    budget, model = cfg.get("budget") or {}, cfg.get("model")
    if model is None:
        return
    node = OmegaConf.to_container(model, resolve=False)
    for key, value in budget.items():
        name = f"budget.{key}"
        if value is None or not given & {"budget", name} or _mentions(node, name):
            continue
        own = (f"; its own model.{key} is {node[key]!r} (set model.{key}= instead)" if key in node
               else f"; the model has no {key}")
        raise ValueError(f"{name}={value!r} is not read by the model {model.get('_target_')}, which would ignore it"
                         f"{own}. budget.* is read by model=score's config where no preset sets the key itself")


def _mentions(node, text: str) -> bool:
    """Whether any string in a nested container of dicts and lists contains `text`."""
    if isinstance(node, dict):
        return any(_mentions(value, text) for value in node.values())
    if isinstance(node, list):
        return any(_mentions(value, text) for value in node)
    return isinstance(node, str) and text in node
