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

# Config groups that were renamed: the old name on a command line is refused with the new one.
RENAMED_GROUPS = {"model/backbone": "networks"}


def refuse_renamed_groups(overrides: list[str]) -> None:
    """Refuse an override of a group by its old name (Hydra would only say it matches nothing), naming the new one."""
    for override in overrides:
        key, _, value = override.partition("=")
        new = RENAMED_GROUPS.get(key.lstrip("+~"))
        if new:
            raise ValueError(f"{override!r}: the group {key.lstrip('+~')} is now {new}; use {new}={value}")


def run_command_line(task_function: Callable, config_name: str, argv: list[str] | None = None) -> None:
    """What `@hydra.main(config_path=<divlab configs>, config_name=...)` does with `argv` (default:
    `sys.argv[1:]`): overrides, `-m` sweeps, `--help`, `--cfg job`, and Hydra's error reporting."""
    from hydra._internal.utils import _run_hydra, get_args_parser

    parser = get_args_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        refuse_renamed_groups(args.overrides)
    except ValueError as error:
        sys.exit(f"Error: {error}")
    _run_hydra(args=args, args_parser=parser,
               task_function=task_function, config_path=str(config_dir()), config_name=config_name)


def run_once(task_function: Callable, config_name: str, overrides: list[str]) -> tuple[Path, Any]:
    """One run of `task_function` as the command line would start it (output directory, `.hydra/`, job log),
    but raising the task's exception instead of exiting. Returns (output directory, the task's return value)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    refuse_renamed_groups(overrides)
    task_name = task_function.__module__.rsplit(".", 1)[-1]
    hydra = Hydra.create_main_hydra2(task_name=task_name,
                                     config_search_path=create_config_search_path(str(config_dir())))
    try:
        job = hydra.run(config_name=config_name, task_function=task_function, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
    return Path(job.hydra_cfg.hydra.runtime.output_dir), job.return_value
