"""scripts/align_frontier.sh, the reward–KL frontier in one command, end to end on a tiny policy and task."""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # 6 processes (the signal script, 3 training runs, compare): ~40 s on 2 cores
def test_the_one_command_frontier_runs_every_method_and_draws_their_curves(tmp_path):
    from tests.test_alignment_family import TINY_EVALUATION, TINY_OVERRIDES

    overrides = [*TINY_OVERRIDES, TINY_EVALUATION, f"paths.data_dir={tmp_path / 'data'}",  # an empty data directory
                 "++trainer.limit_train_batches=3", "++trainer.val_check_interval=1", "++trainer.limit_val_batches=2"]
    env = {**os.environ, "SEEDS": "0", "FRONTIER_RUNS": str(tmp_path / "runs")}
    result = subprocess.run(["bash", "scripts/align_frontier.sh", str(tmp_path / "out"), *overrides], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=900)
    logs = "".join(f"\n--- {log.name}\n{log.read_text()[-3000:]}" for log in tmp_path.glob("runs.*.log"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs
    assert "accuracy ceiling" in result.stdout and "bag-of-words Bradley–Terry reward model" in result.stdout

    for lane, divergence in (("dpo", "dpo"), ("ppo", "ppo"), ("ppo_gt", "ppo_gt")):
        (record_path,) = (tmp_path / "runs" / lane).glob("*/run.json")
        record = json.loads(record_path.read_text())
        assert (record["status"], record["divergence"]) == ("completed", divergence), lane
    (ppo_config,) = (tmp_path / "runs" / "ppo").glob("*/.hydra/config.yaml")
    assert "reward_model: bag_of_words" in ppo_config.read_text()

    summary = (tmp_path / "out" / "frontier_summary.md").read_text()
    for method in ("align/dpo", "align/ppo ", "align/ppo_gt"):
        assert method in summary, method
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 0
