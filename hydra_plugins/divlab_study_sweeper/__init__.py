"""Hydra's basic sweeper plus `members`: a study runs the union of its members' sweeps, each crossed with `params`.

A study pairs choices that are no cross product (the VAE takes no divergence; a GAN divergence runs at its own
paper's recipe), so each member lists the overrides of its rows, and each value may itself sweep
(`{model: gan, recipe: fgan, divergence: "kl,pearson"}` is two rows). configs/hydra/sweeper/study.yaml:

    members:
      - {model: vae}
      - {model: gan, divergence: "js,kl"}
    params:
      seed: 0,1,2

runs vae, gan-js and gan-kl at seeds 0, 1 and 2, in that order (member by member, seeds innermost). A command line
that chooses a key the members set (`model=gan divergence=hinge recipe=sngan_hinge`) runs its own choice instead of
the members, at the study's other settings and `params`. A job that fails (a divergence whose losses stop being
finite) does not stop the study: the others run, its run record keeps the failure, and the sweep ends with an error
naming every failed job. Plugins must live under `hydra_plugins` for Hydra to
find them; Hydra's own BasicSweeper is not subclassed because its plugin scan re-imports that module.
"""
import itertools
import logging
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def study_jobs(members: list[dict], params: dict, command_line: list[str]) -> list[list[str]]:
    """The overrides of every job: each member's rows × `params` × the command line's sweeps, or, when the command
    line chooses a key some member sets, `params` × the command line alone."""
    parser = OverridesParser.create()
    given = parser.parse_overrides(command_line)
    member_keys = {key for member in members for key in member}
    if any(o.key_or_group in member_keys for o in given):
        members = []
    jobs = []
    for member in members or [{}]:
        rows = [f"{key}={value}" for key, value in member.items()]
        overrides = parser.parse_overrides([*rows, *(f"{key}={value}" for key, value in params.items()),
                                            *command_line])
        choices: dict[str, list[str]] = {}
        for override in overrides:
            key = override.get_key_element()
            if override.is_sweep_override():
                if not override.is_discrete_sweep():
                    raise HydraException(f"the study sweeper sweeps lists of values, not {override.value_type.name}"
                                         f" ({key})")
                choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
            else:
                choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        jobs += [list(job) for job in itertools.product(*choices.values())]
    return jobs


class StudySweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict | None = None,
                 members: list[dict] | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.members = [dict(member) for member in members or []]
        self.batches: list[list[list[str]]] = []
        self.batch_index = 0

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]):
        jobs = study_jobs(self.members, self.params, list(arguments))
        size = self.max_batch_size if self.max_batch_size not in (None, -1) else max(len(jobs), 1)
        self.batches = [jobs[i:i + size] for i in range(0, len(jobs), size)]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, failed, initial_job_idx = [], [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            failed += [(job, result) for job, result in zip(batch, results) if result.status != JobStatus.COMPLETED]
            initial_job_idx += len(batch)
            returns.append(results)
        if failed:
            listing = "\n".join(f"  {' '.join(job)}: {type(result._return_value).__name__}: {result._return_value}"
                                 for job, result in failed)
            raise HydraException(f"{len(failed)} of {initial_job_idx} study jobs failed (the others ran; each failed "
                                 f"job's run.json keeps its reason):\n{listing}")
        return returns

    def get_job_batch(self) -> list[list[str]]:
        self.batch_index += 1
        return self.batches[self.batch_index - 1]

    def is_done(self) -> bool:
        return self.batch_index >= len(self.batches)
