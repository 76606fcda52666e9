"""Train one generative model: compose config → instantiate data, model, callbacks, loggers → fit → test.

`divlab train [overrides]`, `python train.py [overrides]` in a checkout, or `divlab.train([...])` from Python.
"""
import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from divlab.checkpoints import plan_resume
from divlab.cli.hydra_app import run_command_line
from divlab.cli.job_logs import report_job_failure
from divlab.cli.run_exit import recorded_exit
from divlab.cli.trainer_parts import ALWAYS_ON_CALLBACKS, build_trainer
from divlab.config_dir import config_dir
from divlab.config_tree import check_tags, show_config
from divlab.divergence_choice import check_budget_is_read, check_divergence_is_read
from divlab.resume_config import check_resume_config
from divlab.run_files import read_run_record
from divlab.saved_runs import build_data_and_model
from divlab.tracking.run_record import RunRecord
from divlab.validation import check_int, check_positive

log = logging.getLogger("divlab.train")
# Groups whose choice on the command line makes a run no longer the experiment preset it started from.
RUN_DEFINING_GROUPS = ("data", "model", "networks")
# The seeds numpy (and so `seed_everything`) accepts are 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def validate(cfg: DictConfig) -> None:
    """Fail before anything is built or written, naming the key, the bad value and what would work."""
    if cfg.get("seed") is not None:
        with open_dict(cfg):
            cfg.seed = check_int("seed", cfg.seed, minimum=0, maximum=MAX_SEED)
    trainer = cfg.trainer
    if cfg.get("train", True):
        if trainer.get("max_epochs") is not None and trainer.max_epochs != -1:
            check_int("trainer.max_epochs", trainer.max_epochs, minimum=1)
        if trainer.get("max_steps") not in (None, -1):
            check_int("trainer.max_steps", trainer.max_steps, minimum=1)
    if trainer.get("log_every_n_steps") is not None:
        check_int("trainer.log_every_n_steps", trainer.log_every_n_steps, minimum=1)
    check_accelerator_is_present(trainer.get("accelerator"))
    for key, node in _optimizers(cfg.get("model") or {}, "model"):
        if node.get("lr") is not None:
            check_positive(f"{key}.lr", node.lr)
    check_divergence_is_read(cfg)


def check_accelerator_is_present(accelerator) -> None:
    """A GPU asked for (`trainer=gpu`, `trainer.accelerator=gpu|cuda|mps`) must be there: Lightning would only say
    'No supported gpu backend found!'."""
    present = {"gpu": torch.cuda.is_available() or torch.backends.mps.is_available(),
               "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if str(accelerator) in present and not present[str(accelerator)]:
        raise ValueError(f"trainer.accelerator={accelerator!r} asks for a GPU and this machine has none that torch can "
                         f"use (torch {torch.__version__}: CUDA available: {torch.cuda.is_available()}); "
                         "use trainer=cpu (or trainer.accelerator=cpu or auto)")


def _optimizers(node, prefix: str):
    """(`model.x_optimizer`, node) for every optimiser config under `node`."""
    for key, value in node.items():
        if isinstance(value, DictConfig):
            if "optimizer" in str(key) or "optim" in str(value.get("_target_", "")):
                yield f"{prefix}.{key}", value
            else:
                yield from _optimizers(value, f"{prefix}.{key}")


def check_networks_are_read(overrides: list[str]) -> None:
    """`networks=` given on the command line must be read: only families with networks parts
    (configs/networks/<family>/) take it; the others (ar, dpo, ppo, reward_model) would silently ignore it."""
    from hydra.core.hydra_config import HydraConfig

    given = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == "networks"]
    if not given or not HydraConfig.initialized():
        return
    model = HydraConfig.get().runtime.choices.get("model")
    readers = sorted(p.name for p in (config_dir() / "networks").iterdir() if p.is_dir())
    if model not in readers:
        raise ValueError(f"networks={given[-1]} is not read by model={model}, which would ignore it; the models with a "
                         f"networks choice: {', '.join(readers)}. Drop networks= or choose one of those models")


def in_a_sweep() -> bool:
    """Whether this run is a job of `-m` (a sweep), not a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def command_line_overrides() -> list[str]:
    """The overrides `python train.py ...` was given (none when composed in tests)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def describe_run(cfg: DictConfig, datamodule, model, overrides: list[str] = ()) -> None:
    """Fill `cfg.run` (group, name, family, divergence, data, tags) from what was built, so loggers can
    interpolate it and every run's config carries the same top-level keys whatever its family.

    The group is the experiment preset's name only while the run is that preset: choosing another data set,
    model (a study's member) on the command line makes it `family-divergence-data` (what actually runs).
    """
    family, divergence = model.hparams.get("family"), model.hparams.get("divergence")
    rechosen = any(o.split("=", 1)[0].lstrip("+~") in RUN_DEFINING_GROUPS for o in overrides if "=" in o)
    preset = None if rechosen else cfg.experiment_name
    with open_dict(cfg):
        cfg.run.group = cfg.run.group or preset or f"{family}-{divergence}-{datamodule.name}"
        cfg.run.update(family=family, divergence=divergence, data=datamodule.name)
        cfg.run.name = cfg.run.name or f"{family}-{divergence}-{datamodule.name}-seed{cfg.seed}"
        cfg.run.tags = [*cfg.tags, f"family:{family}", f"divergence:{divergence}", f"data:{datamodule.name}",
                        f"seed:{cfg.seed}"]


def check_same_run(previous: dict, cfg: DictConfig, output_dir: Path) -> None:
    """Refuse to continue a run directory's record with another model or data set (settings of the same ones:
    `divlab.resume_config`)."""
    saved = previous.get("config") or {}
    for group in ("model", "data"):
        before = (saved.get(group) or {}).get("_target_")
        now = (cfg.get(group) or {}).get("_target_")
        if before and now and before != now:
            raise ValueError(f"{output_dir} holds a run of {group} {before}, not {now}; rerun there with the "
                             "same model and data, or choose a new hydra.run.dir")


def run(cfg: DictConfig) -> dict:
    """Train and/or test as `cfg` says; returns the final metrics. Writes everything under `paths.output_dir`.

    Everything that can be checked (values, the checkpoint to resume, the run record) is checked before
    anything in the output directory is written. A sweep's job whose directory holds a completed run of the same
    settings is skipped (its recorded metrics returned), so rerunning a sweep completes only what is missing.
    """
    validate(cfg)
    check_networks_are_read(command_line_overrides())
    check_budget_is_read(cfg, command_line_overrides())
    output_dir = Path(cfg.paths.output_dir)
    previous = read_run_record(output_dir)
    config_changes = check_continuation(previous, cfg, output_dir)
    if previous and previous.get("status") == "completed" and in_a_sweep():
        log.info("%s holds this job's completed run: skipped (rerunning a sweep completes only what is missing)",
                 output_dir)
        return dict(previous.get("metrics") or {})
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))
    run_setup(cfg, output_dir, previous)

    datamodule, model = build_data_and_model(cfg.data, cfg.model)
    describe_run(cfg, datamodule, model, command_line_overrides())
    plan = plan_resume(cfg.get("ckpt_path"), output_dir, Path(cfg.paths.log_dir), cfg.run.group,
                       OmegaConf.to_container(cfg, resolve=True), model, previous, cfg.get("train", True))
    with open_dict(cfg):
        cfg.run.wandb_id = cfg.run.wandb_id or plan.wandb_id
    config = OmegaConf.to_container(cfg, resolve=True)
    record = RunRecord(str(output_dir), config=config, seed=cfg.get("seed"), previous=previous,
                       resumed_from=str(plan.ckpt_path) if plan.ckpt_path else None, resume_step=plan.step,
                       config_changes=config_changes)
    trainer, model_checkpoint = build_trainer(cfg, model, record, plan.step, config)

    with recorded_exit(record, trainer, close_wandb=True):
        if cfg.get("train", True):
            trainer.fit(model, datamodule=datamodule, ckpt_path=plan.ckpt_path and str(plan.ckpt_path),
                        weights_only=True)
        if cfg.get("test", True):
            best = model_checkpoint.best_model_path if model_checkpoint is not None else ""
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        record.finish("completed")
    return dict(record.record["metrics"])


def check_continuation(previous: dict | None, cfg: DictConfig, output_dir: Path) -> dict:
    """A directory that holds a run is continued with the same model and data, and, once it has trained, on its
    own settings only (`divlab.resume_config`; `resume.allow_config_change=[keys]` lets keys change). Returns the
    allowed changes, for the attempt's record."""
    if not previous:
        return {}
    check_same_run(previous, cfg, output_dir)
    if not (previous.get("global_step") or previous.get("history")):
        return {}
    return check_resume_config(previous.get("config") or {}, OmegaConf.to_container(cfg, resolve=True),
                               (cfg.get("resume") or {}).get("allow_config_change"), output_dir)


def run_setup(cfg: DictConfig, output_dir: Path, previous: dict | None) -> None:
    """Call the config's one-off `setup` steps (alignment: train the default reference policy) before data and
    model are built, with run.json on disk while they work, so a run stopped there leaves its record (a first
    attempt's provisional record goes again once they are done: the run proper writes its own)."""
    steps = [step for step in (cfg.get("setup") or {}).values() if step]
    if not steps:
        return
    record = RunRecord(str(output_dir), config=OmegaConf.to_container(cfg, resolve=True), seed=cfg.get("seed"),
                       previous=previous)
    if not previous:
        record.write()
    with recorded_exit(record):
        for step in steps:
            hydra.utils.call(step)
    if not previous and rank_zero_only.rank == 0:  # the rank that wrote it (a SLURM task knows its rank)
        record.path.unlink(missing_ok=True)


def run_job(cfg: DictConfig) -> dict:
    """A command-line run: the start-up extras (tags, the printed config), then `run`."""
    check_tags(cfg)
    if cfg.get("extras", {}).get("print_config"):
        show_config(cfg, always_on=ALWAYS_ON_CALLBACKS)
    return run(cfg)


def sweep_objective(cfg: DictConfig) -> float | None:
    """Hydra's task function: runs the job and returns `optimized_metric` to a sweeper."""
    try:
        metrics = run_job(cfg)
    except Exception as error:
        report_job_failure(error)
        raise
    objective = cfg.get("optimized_metric")
    return metrics.get(objective) if objective else None


def main(argv: list[str] | None = None) -> None:
    """`train [overrides]` (default: `sys.argv[1:]`), with all of Hydra's command line (`-m`, `--cfg job`, ...)."""
    run_command_line(sweep_objective, "train", argv)


if __name__ == "__main__":
    main()
