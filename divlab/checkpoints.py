"""Find, check and write the checkpoints a run resumes from, before anything is trained or overwritten.

Every load is `torch.load(weights_only=True)`: a checkpoint holds tensors and plain containers, and a file
that asks to build anything else (a pickled payload) is refused before a single byte of it runs.
"""
import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from divlab.atomic_files import atomic_write, temporaries
from divlab.deferred_signals import signals_deferred
from divlab.run_files import read_run_record_or_none

log = logging.getLogger("divlab.checkpoints")
LAST = "last.ckpt"
# What `trainer.fit(ckpt_path=...)` needs to restore a run; `trainer.test` needs only the weights.
RESUME_KEYS = ("state_dict", "optimizer_states", "loops", "global_step")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe, not Lightning's, or of another model."""


def load_checkpoint(path: Path) -> dict:
    """`torch.load(path, weights_only=True)` on CPU, or a CheckpointError naming the file and why."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 -- any failure means the file is unusable
        raise CheckpointError(refusal(path, error)) from None


# The name of the global a weights-only load refused, in any of torch's wordings ("Unsupported global: GLOBAL io.open
# was not an allowed global", "Trying to load unsupported GLOBAL posix.system whose module posix is blocked").
REFUSED_GLOBAL = re.compile(r"\bGLOBAL\s+([A-Za-z_][\w.]*)")
# torch's advice around the reason, which must not be what a user reads: it suggests loading the file unsafely.
TORCH_ADVICE = ("weights only load failed", "weights_only", "check the documentation", "please file an issue",
                "(2) alternatively", "do those steps only")


def refusal(path: Path, error: Exception) -> str:
    """Why `torch.load(path, weights_only=True)` raised `error`, in divlab's words: a file that asks to run code
    (the weights-only unpickler refused one of its globals) is said to be refused and not loaded; any other
    failure, unreadable, with torch's reason and without its advice to load the file with weights_only=False."""
    text = str(error)
    unsafe = REFUSED_GLOBAL.search(text) if isinstance(error, pickle.UnpicklingError) else None
    if unsafe:
        return (f"checkpoint {str(path)!r} refused, not loaded: it asks to run {unsafe.group(1)} when loaded. divlab "
                "loads checkpoints with weights_only=True (tensors and plain containers only) and never writes "
                "such files, so it was not written by a divlab run or was tampered with; do not load it otherwise")
    lines = [line.strip() for line in re.split(r"[\n\t]+", text) if line.strip()]
    reasons = [line for line in lines if not any(advice in line.lower() for advice in TORCH_ADVICE)]
    reason = (reasons or lines or [""])[0].removeprefix("WeightsUnpickler error: ")[:200]
    return f"checkpoint {str(path)!r} is unreadable ({type(error).__name__}: {reason})"


def check_readable(path: Path, keys: tuple[str, ...] = ("state_dict",)) -> dict:
    """Load a checkpoint safely and check it is a Lightning checkpoint holding `keys`."""
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {str(path)!r} has no state_dict: not a Lightning checkpoint "
                              "(a plain state_dict or another program's file); pass a .ckpt written by train.py")
    missing = [key for key in keys if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}: a weights-only checkpoint "
                              "cannot resume training; evaluate it with eval.py, or start fresh without ckpt_path")
    return checkpoint


def check_matches(checkpoint: dict, model: torch.nn.Module, path: Path) -> None:
    """Refuse a checkpoint whose weights do not fit `model` (another family, network or data shape)."""
    saved = {name: tuple(value.shape) for name, value in checkpoint["state_dict"].items()}
    wanted = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    if saved == wanted:
        return
    missing, unexpected = sorted(wanted.keys() - saved.keys()), sorted(saved.keys() - wanted.keys())
    reshaped = sorted(n for n in wanted.keys() & saved.keys() if wanted[n] != saved[n])
    details = "; ".join(f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                        for label, names in (("missing", missing), ("unexpected", unexpected),
                                             ("other shape", reshaped)) if names)
    raise CheckpointError(f"checkpoint {str(path)!r} was written by a different model than "
                          f"{type(model).__name__} with this config ({details}); pass the model/data it was "
                          "trained with, or another output directory to start fresh")


def readable_checkpoints(output_dir: Path) -> tuple[Path | None, dict | None, list[str]]:
    """The checkpoint of `output_dir` that can resume training at the latest step: of the readable ones, the one
    with the highest global step, `last.ckpt` where it ties (a kill between the epoch checkpoint and last.ckpt of one
    validation leaves the epoch checkpoint ahead, and resuming behind it would leave it stale beside the resumed
    run's own). Returns (path, checkpoint, reasons the unreadable ones were skipped)."""
    directory = Path(output_dir) / "checkpoints"
    if not directory.is_dir():
        return None, None, []
    others = sorted((p for p in directory.glob("*.ckpt") if p.name != LAST), key=lambda p: p.stat().st_mtime,
                    reverse=True)
    candidates = ([directory / LAST] if (directory / LAST).is_file() else []) + others
    found, checkpoint, skipped = None, None, []
    for path in candidates:
        try:
            candidate = check_readable(path, RESUME_KEYS)
        except CheckpointError as error:
            skipped.append(str(error))
            continue
        if checkpoint is None or int(candidate["global_step"]) > int(checkpoint["global_step"]):
            found, checkpoint = path, candidate
    return found, checkpoint, skipped


def latest_sibling_checkpoint(log_dir: Path, group: str, config: dict) -> Path | None:
    """The newest `last.ckpt` of an earlier run under `log_dir` of the same group *and* the same model and data."""
    candidates = []
    for ckpt in Path(log_dir).glob(f"**/checkpoints/{LAST}"):
        earlier = (read_run_record_or_none(ckpt.parent.parent) or {}).get("config") or {}
        if ((earlier.get("run") or {}).get("group") == group and earlier.get("model") == config.get("model")
                and earlier.get("data") == config.get("data")):
            candidates.append(ckpt)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path, log_dir: Path, group: str,
                      config: dict | None = None) -> tuple[Path | None, dict | None]:
    """Where to resume from, and that checkpoint loaded safely: an explicit path; else this output dir's newest
    readable checkpoint; with `last`, else the newest of an earlier run of the same group, model and data.
    (None, None): start fresh."""
    if ckpt_path in (None, "last"):
        found, checkpoint, skipped = readable_checkpoints(output_dir)
        if skipped and found is None:
            raise CheckpointError(f"no usable checkpoint in {Path(output_dir) / 'checkpoints'} (kept as it is): "
                                  + "; ".join(skipped))
        if skipped:
            log.warning("resuming from %s, the readable checkpoint at the latest step; skipped: %s", found,
                        "; ".join(skipped))
        if found is None and ckpt_path == "last":
            found = latest_sibling_checkpoint(log_dir, group, config or {})
            if found is None:
                raise FileNotFoundError(
                    f"ckpt_path=last but no checkpoint in {output_dir} or any earlier run of group {group!r} "
                    f"with this model and data under {log_dir}; drop ckpt_path to start fresh"
                )
            checkpoint = check_readable(found, RESUME_KEYS)
        return found, checkpoint
    path = Path(str(ckpt_path)).expanduser()
    if path.is_dir():
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} is a directory; pass a .ckpt file inside it "
                                f"(e.g. {path / 'checkpoints' / LAST}), 'last' or null")
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} does not exist; pass a .ckpt file, 'last' or null")
    return path, check_readable(path, RESUME_KEYS)


@dataclass(frozen=True)
class ResumePlan:
    """Where a run starts: the checkpoint to resume (None: step 0), its step (None: nothing to resume, a fresh
    run), the W&B run id to continue and the record of the run it continues (this directory's or, for
    `ckpt_path=last`, the earlier run's)."""

    ckpt_path: Path | None = None
    step: int | None = None
    wandb_id: str | None = None
    previous: dict | None = None


def plan_resume(ckpt_path: str | None, output_dir: Path, log_dir: Path, group: str, config: dict,
                model: torch.nn.Module, previous: dict | None, train: bool = True) -> ResumePlan:
    """Every resume decision in one place, checked before anything is written: the checkpoint (`resolve_ckpt_path`)
    must fit `model`; its run's W&B id is carried on. A directory whose earlier attempt left a record but no
    checkpoint starts again from step 0 under that attempt's W&B id."""
    path, checkpoint = resolve_ckpt_path(ckpt_path, output_dir, log_dir, group, config)
    if path is not None:
        check_matches(checkpoint, model, path)
        log.info("resuming from %s", describe(path, checkpoint))
        run_dir = path.parent.parent
        earlier = previous if run_dir.resolve() == Path(output_dir).resolve() else read_run_record_or_none(run_dir)
        return ResumePlan(path, int(checkpoint.get("global_step", 0)), wandb_id_of(earlier), earlier)
    if previous:
        return ResumePlan(None, 0 if train else None, wandb_id_of(previous), previous)
    return ResumePlan()


def wandb_id_of(record: dict | None) -> str | None:
    return ((record or {}).get("wandb") or {}).get("id")


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary checkpoint files (`.<name>.ckpt.<random>.tmp`, AtomicCheckpointIO's naming) that a run
    killed while writing a checkpoint left in `directory`; called before training starts, when no write of this run
    is under way. Returns the files removed."""
    removed = []
    for path in temporaries(directory, "*.ckpt") if Path(directory).is_dir() else []:
        path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.warning("removed %d temporary checkpoint file(s) that a killed write left: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames: a kill mid-write leaves the old file
    whole (fsspec's transaction writes in the system temp dir and copies across devices, which is not atomic).
    A stop or pre-emption signal during the write is handled once the checkpoint is whole (`signals_deferred`)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with signals_deferred(), atomic_write(path, fsync=True) as file:
            torch.save(checkpoint, file)

    def load_checkpoint(self, path, map_location=None, weights_only=True) -> dict:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


class SaveLast(Checkpoint):
    """Keeps `<dirpath>/last.ckpt` at the latest state: after every validation and epoch (ModelCheckpoint's
    `save_last` writes it only when a monitored metric improves), at the end of training, and on Ctrl-C or
    SIGTERM before the run exits. A failure (e.g. non-finite weights) never overwrites it.

    On a stop, ranks are not in step: a multi-node job pre-empted or requeued by SLURM stops each rank on its own
    signal, while another rank may wait in the next step's all-reduce. So that checkpoint is written by rank 0
    without `Trainer.save_checkpoint`'s closing barrier, which waited for that rank until SLURM's SIGKILL (the
    weights and optimiser states are the same on every DDP rank)."""

    def __init__(self, dirpath: str):
        self.path = Path(dirpath) / LAST
        self._saved_step = None

    def _save(self, trainer, stopping: bool = False) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or trainer.state.fn != "fit":
            return
        main = trainer.checkpoint_callback if trainer.checkpoint_callback is not self else None
        written_by_main = (main is not None and getattr(main, "last_model_path", None) == str(self.path)
                           and getattr(main, "_last_global_step_saved", None) == trainer.global_step)
        if written_by_main or (self._saved_step == trainer.global_step and self.path.is_file()):
            return
        if stopping and trainer.world_size > 1:
            trainer.strategy.save_checkpoint(trainer._checkpoint_connector.dump_checkpoint(weights_only=False),
                                             self.path)
        else:  # the whole state (optimisers, loops), said explicitly: Lightning logs its default otherwise
            trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step
        if main is not None and hasattr(main, "last_model_path"):
            main.last_model_path = str(self.path)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SystemExit)):
            self._save(trainer, stopping=True)


# A config read back from a run directory instantiates only these: divlab's own code, and classes of torch and
# Lightning (a function such as torch.load could run anything).
TRUSTED_CODE = ("divlab.",)
TRUSTED_CLASSES = ("torch.", "torchvision.", "torchmetrics.", "lightning.", "pytorch_lightning.")


def check_targets(config, source: str, key: str = "") -> None:
    """Refuse a saved config whose `_target_` names anything but divlab code or torch/Lightning classes."""
    if isinstance(config, dict):
        target = config.get("_target_")
        if target is not None and not _trusted(str(target)):
            raise CheckpointError(
                f"{source}: {key + '.' if key else ''}_target_={target!r} is not a divlab, torch or Lightning class; "
                "a config read back from a run directory only instantiates those (pass data=... model=... instead)"
            )
        for name, value in config.items():
            check_targets(value, source, f"{key}.{name}" if key else str(name))
    elif isinstance(config, (list, tuple)):
        for index, value in enumerate(config):
            check_targets(value, source, f"{key}[{index}]")


def _trusted(target: str) -> bool:
    import inspect

    from hydra.utils import get_object

    if target.startswith(TRUSTED_CODE):
        return True
    if not target.startswith(TRUSTED_CLASSES):
        return False
    try:
        return inspect.isclass(get_object(target))
    except Exception:  # noqa: BLE001 -- a name that does not resolve is not trusted
        return False


def describe(ckpt_path: Path, checkpoint: dict) -> str:
    return f"{ckpt_path} (epoch {checkpoint.get('epoch')}, global step {checkpoint.get('global_step')})"
