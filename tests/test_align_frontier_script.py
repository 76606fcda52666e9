"""scripts/align_frontier.sh, the reward–KL frontier in one command, end to end on a tiny policy and task."""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # 8 processes (the signal script, 4 sweeps of 8 tiny runs, compare): ~1 min on 2 cores
def test_the_one_command_frontier_runs_every_method_and_draws_their_curves(tmp_path):
    from tests.test_alignment_family import TINY_EVALUATION, TINY_OVERRIDES

    overrides = [*TINY_OVERRIDES, TINY_EVALUATION, f"paths.data_dir={tmp_path / 'data'}",  # an empty data directory
                 "++trainer.limit_train_batches=3", "++trainer.val_check_interval=1", "++trainer.limit_val_batches=2"]
    env = {**os.environ, "SEEDS": "0", "FRONTIER_RUNS": str(tmp_path / "runs")}
    result = subprocess.run(["bash", "scripts/align_frontier.sh", str(tmp_path / "out"), *overrides], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=900)
    logs = "".join(f"\n--- {log.name}\n{log.read_text()[-3000:]}" for log in tmp_path.glob("runs.lane*.log"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs
    assert "accuracy ceiling" in result.stdout and "bag-of-words Bradley–Terry reward model" in result.stdout

    for sweep, divergence, betas in (("dpo_1", "dpo", {0.1, 0.3}), ("dpo_2", "dpo", {0.05}),
                                     ("ppo", "ppo", {0.03, 0.1, 0.3}), ("ppo_gt", "ppo_gt", {0.01})):
        records = [json.loads(path.read_text()) for path in (tmp_path / "runs" / sweep).glob("*/run.json")]
        assert {(r["status"], r["divergence"]) for r in records} == {("completed", divergence)}, sweep
        beta = "kl_coef" if divergence.startswith("ppo") else "beta"  # the KL coefficient of the method's model
        assert {r["config"]["model"][beta] for r in records} == betas, sweep
    for ppo_config in (tmp_path / "runs" / "ppo").glob("*/.hydra/config.yaml"):
        assert "reward_model: bag_of_words" in ppo_config.read_text()

    summary = (tmp_path / "out" / "frontier_summary.md").read_text()
    for method in ("align/dpo", "align/ppo ", "align/ppo_gt"):
        assert method in summary, method
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 0
