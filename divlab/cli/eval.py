"""Evaluate a checkpoint with the training callbacks: `divlab eval ckpt_path=PATH [data=... model=...]`
(`python eval.py ...` in a checkout).

Rebuilds data and model from the run's resolved config (the lightning-hydra-template convention),
runs `trainer.test` and writes `<output_dir>/eval.json` with every logged test metric.
"""
import logging
from datetime import datetime, timezone
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from divlab.checkpoints import check_matches, check_readable
from divlab.cli.hydra_app import run_command_line
from divlab.cli.trainer_parts import callbacks_and_loggers
from divlab.run_files import write_json_atomic
from divlab.saved_runs import build_data_and_model, saved_config

log = logging.getLogger("divlab.eval")
EVAL_FILE = "eval.json"


def evaluate(cfg: DictConfig) -> dict:
    """Test `cfg.ckpt_path`; returns and writes the metrics (`eval.json` under `paths.output_dir`)."""
    ckpt_path = Path(str(cfg.ckpt_path)).expanduser()
    if ckpt_path.is_dir():
        raise FileNotFoundError(f"ckpt_path={str(cfg.ckpt_path)!r} is a directory; pass a .ckpt file inside it "
                                f"(e.g. {ckpt_path / 'checkpoints' / 'last.ckpt'})")
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"ckpt_path={str(cfg.ckpt_path)!r} does not exist; pass a .ckpt file")
    checkpoint = check_readable(ckpt_path)
    trained = saved_config(ckpt_path.parent.parent)  # <run_dir>/checkpoints/x.ckpt
    if trained is None and not (cfg.get("data") and cfg.get("model")):
        raise FileNotFoundError(
            f"no run.json or .hydra/config.yaml in {str(ckpt_path.parent.parent)!r} to rebuild the run from; "
            "pass data=... model=... explicitly"
        )
    data_cfg = cfg.get("data") or trained.data
    model_cfg = cfg.get("model") or trained.model
    seed = cfg.get("seed") if cfg.get("seed") is not None else (trained or {}).get("seed")
    if seed is not None:
        L.seed_everything(seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))

    datamodule, model = build_data_and_model(data_cfg, model_cfg)
    check_matches(checkpoint, model, ckpt_path)
    del checkpoint
    callbacks, loggers = callbacks_and_loggers(cfg, seed)
    callbacks = [c for c in callbacks if not isinstance(c, L.pytorch.callbacks.LearningRateMonitor)]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log.info("evaluating %s", ckpt_path)
    results = trainer.test(model, datamodule=datamodule, ckpt_path=str(ckpt_path), weights_only=True)

    metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if value.numel() == 1}
    for result in results:
        metrics.update({name: float(value) for name, value in result.items()})
    report = {
        "ckpt_path": str(ckpt_path.resolve()),
        "family": model.hparams.get("family"),
        "divergence": model.hparams.get("divergence"),
        "data": getattr(datamodule, "name", None),
        "seed": seed,
        "metrics": dict(sorted(metrics.items())),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "model_config": OmegaConf.to_container(model_cfg, resolve=True),
        "data_config": OmegaConf.to_container(data_cfg, resolve=True),
    }
    if trainer.is_global_zero:
        write_json_atomic(Path(cfg.paths.output_dir) / EVAL_FILE, report)  # strict JSON, as run.json
    return report["metrics"]


def main(argv: list[str] | None = None) -> None:
    """`eval ckpt_path=PATH [overrides]` (default: `sys.argv[1:]`)."""
    run_command_line(evaluate, "eval", argv)


if __name__ == "__main__":
    main()
