"""A sweep job that fails says so in its own log, and names that log in the error the submitting command prints.

Under Hydra's submitit launcher (`hydra/launcher=slurm` or `submitit_local`) Hydra catches the job's exception and
hands it back to `python train.py -m ...`, which prints it: the job itself ends as a success for SLURM and submitit
("Job completed successfully"), and its log files (`<submitit_folder>/<job id>_<task>_log.err|out`) held no trace
of the error, so a user whose submitting shell had gone found nothing there.
"""
import os
import sys
import traceback


def report_job_failure(error: BaseException) -> None:
    """Inside a submitit job: print `error`'s traceback to this task's log and add a note naming the log files to
    `error` (shown where the submitting command prints it). Outside one: nothing."""
    if "SUBMITIT_FOLDER" not in os.environ:  # set by submitit in the job's process only
        return
    traceback.print_exception(error, file=sys.stderr)
    try:
        import submitit

        environment = submitit.JobEnvironment()
        paths = environment.paths
    except Exception:  # noqa: BLE001 -- a note is a courtesy: never hide the job's own error behind another
        return
    error.add_note(f"submitit job {environment.job_id}, task {environment.global_rank}: its logs are "
                   f"{paths.stderr} and {paths.stdout}")
