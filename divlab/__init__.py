"""divlab: train deep generative models and compare them by the divergence they minimise.

The Python API (imported on first use, so `import divlab` stays cheap):
    divlab.train(["experiment=vae_ring8"])      -> TrainedRun(run_dir, metrics)
    divlab.load_run(run_dir)                    -> LoadedRun(config, datamodule, model)
    divlab.compare([run_dir, ...] or "group")   -> the Markdown table `divlab compare` prints
"""
import importlib

_API = {"train": "divlab.api", "compare": "divlab.api", "load_run": "divlab.saved_runs"}
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'divlab' has no attribute {name!r}")
