"""The W&B logger, online when it can be and offline otherwise: never a prompt, never a hang."""
import logging
import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from divlab.validation import check_choice

log = logging.getLogger("divlab.wandb")

MODES = ("online", "offline", "disabled")


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _reachable(url: str, timeout: float) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_mode(mode: str | None, probe_timeout: float = 3.0) -> str:
    """`mode` if given, else $WANDB_MODE, else online only with an API key and a reachable server."""
    mode = mode or os.environ.get("WANDB_MODE")
    if mode:
        # W&B itself treats `dryrun` as `offline` (the name older releases used).
        return check_choice("logger.wandb.mode", "offline" if mode == "dryrun" else mode, MODES)
    base_url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    return "online" if _has_api_key() and _reachable(base_url, probe_timeout) else "offline"


# Set in each offline folder of a resumed run: the global step of the checkpoint it resumed from. Rows an earlier
# folder logged past it belong to the attempt that was killed; `wandb_offline.merged_history` drops them.
RESUME_KEY = "resumed_at_step"


class GlobalStepWandbLogger(WandbLogger):
    """Lightning's WandbLogger, logging every row at the trainer's global step (W&B's `_step`).

    Lightning's logger step restarts with each offline folder's own counter; keyed by the global step (the one
    checkpoints and run.json use) the rows of a resumed run line up with those logged before it.
    """

    _trainer = None
    _config_logged = False
    _service_lost = False

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """The first call (train.py's resolved, nested run config) is the run's config; later ones are
        Lightning re-logging the module's hyperparameters, which the config already holds under `model`:
        kept out, so the W&B config has no flat duplicates (`lr`, `family`, … beside `model.…`)."""
        if self._config_logged:
            return
        self._config_logged = True
        super().log_hyperparams(params, *args, **kwargs)

    def key_steps_by(self, trainer, resume_step: int | None = None, history: dict | None = None) -> None:
        """Log at `trainer`'s global step from now on. Resuming from `resume_step`: mark this folder with it and
        re-log the rows of `history` (run.json's, `{name: [[step, value], ...]}`) that W&B lost up to that step
        (a kill -9 loses what the W&B service had not yet written)."""
        self._trainer = trainer
        if resume_step is None or not trainer.is_global_zero:  # W&B runs on rank 0 only (a stand-in elsewhere)
            return
        self.experiment.config.update({RESUME_KEY: int(resume_step)}, allow_val_change=True)
        logged = self._last_logged_step()
        rows: dict[int, dict] = {}
        for name, series in (history or {}).items():
            for step, value in series:
                if logged < step <= resume_step and isinstance(value, (int, float)):
                    rows.setdefault(int(step), {})[name] = value
        for step in sorted(rows):
            self.experiment.log(dict(rows[step], **{"trainer/global_step": step}), step=step)

    def _last_logged_step(self) -> int:
        """The last step W&B holds for this run: the server's, online; the earlier offline folders', offline."""
        from divlab.tracking.wandb_offline import find_offline_runs, merged_history

        if self.experiment.settings.mode == "online":
            return int(self.experiment.step) - 1
        current = Path(self.experiment.dir).parent.name
        earlier = [f for f in find_offline_runs(self.save_dir) if f.name != current]
        rows = merged_history(self.save_dir, folders=earlier, wait_seconds=0.0)
        return max((int(row["_step"]) for row in rows), default=-1)

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        """A row at the global step. If the W&B service process has gone (a scheduler's SIGTERM reaches every
        process of a SLURM job step, the service included, before training reaches a batch boundary and stops), the
        rows are dropped with a warning instead of failing the run: run.json keeps them, and the resumed run re-logs
        them into the same W&B run (`key_steps_by`)."""
        if self._service_lost:
            return
        try:
            if self._trainer is None:
                return super().log_metrics(metrics, step)
            step = self._trainer.global_step
            self.experiment.log(dict(metrics, **{"trainer/global_step": step}), step=step)
        except ConnectionError as error:
            self._service_lost = True
            log.warning(
                "W&B's service is gone (%s): no more rows go to W&B in this attempt; run.json keeps them", error
            )


def make_wandb_logger(
    save_dir: str,
    project: str = "divlab",
    group: str | None = None,
    tags: list | None = None,
    id: str | None = None,
    mode: str | None = None,
    init_timeout: float = 30.0,
    name: str | None = None,
    log_model: bool | str = False,
) -> WandbLogger:
    """A Lightning `WandbLogger` writing under `<save_dir>/wandb/`; `id` resumes that run.

    `name`: the run's display name (train.py's `family-divergence-data-seedN`); `log_model`: Lightning's
    option, true uploads the checkpoints as W&B artifacts when training ends, "all" whenever one is saved.
    """
    import wandb

    mode = resolve_mode(mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    # A ddp_spawn worker attaches to this run with its own settings, whose directory comes from
    # $WANDB_DIR (else the current directory): without this its media went to ./wandb, not the run's.
    os.environ["WANDB_DIR"] = str(save_dir)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return GlobalStepWandbLogger(
        save_dir=save_dir,
        project=project,
        group=group,
        tags=list(tags or []),
        name=name,
        log_model=log_model,
        id=id,
        resume="allow" if id else None,
        mode=mode,
        settings=wandb.Settings(init_timeout=init_timeout, x_disable_stats=True),
    )
