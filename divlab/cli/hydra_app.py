"""Run a task function as a Hydra app on divlab's configs, from a command line or from Python.

`@hydra.main` reads `sys.argv` and finds configs beside the calling file; divlab's commands run from a
checkout (`python train.py`), from the `divlab` console script and from the Python API, so they pass the
config directory (`divlab.config_dir`) and the arguments explicitly. Hydra names the job (and its
`<job>.log`) after the task function's module: `train`, `eval`.
"""
import sys
from pathlib import Path
from typing import Any, Callable

from divlab.config_dir import config_dir


def run_command_line(task_function: Callable, config_name: str, argv: list[str] | None = None) -> None:
    """What `@hydra.main(config_path=<divlab configs>, config_name=...)` does with `argv` (default:
    `sys.argv[1:]`): overrides, `-m` sweeps, `--help`, `--cfg job`, and Hydra's error reporting."""
    from hydra._internal.utils import _run_hydra, get_args_parser

    parser = get_args_parser()
    _run_hydra(args=parser.parse_args(sys.argv[1:] if argv is None else argv), args_parser=parser,
               task_function=task_function, config_path=str(config_dir()), config_name=config_name)


def run_once(task_function: Callable, config_name: str, overrides: list[str]) -> tuple[Path, Any]:
    """One run of `task_function` as the command line would start it (output directory, `.hydra/`, job log),
    but raising the task's exception instead of exiting. Returns (output directory, the task's return value)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    task_name = task_function.__module__.rsplit(".", 1)[-1]
    hydra = Hydra.create_main_hydra2(task_name=task_name,
                                     config_search_path=create_config_search_path(str(config_dir())))
    try:
        job = hydra.run(config_name=config_name, task_function=task_function, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
    return Path(job.hydra_cfg.hydra.runtime.output_dir), job.return_value
