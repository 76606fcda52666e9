"""The reward–KL frontier as a measured object: best reward within a KL budget, and points from every validation."""
import json

import pytest

from divlab.tracking.frontier import FrontierMean, frontier_points, reward_at_kl, seed_means, upper_envelope


def mean(kl, reward, beta=0.1, step=None):
    return FrontierMean("align/dpo", beta, 1, kl, 0.0, reward, 0.0, step)


def test_reward_at_kl_is_the_best_reward_within_the_kl_budget_by_hand():
    # π_ref at (0, 0); points (2, 0.5), (4, 0.3), (6, 0.6): the path goes down between 2 and 4.
    curve = [mean(4.0, 0.3), mean(2.0, 0.5), mean(6.0, 0.6)]
    assert reward_at_kl(curve, 1.0, reference=0.0) == pytest.approx(0.25)  # on the line from π_ref
    # Between 2 and 6 the line from (2, 0.5) to (6, 0.6), a mix of those two policies, passes over the dip at 4
    # (through it: 0.4 at KL 3, 0.45 at 5, 0.525 at 5.5).
    assert reward_at_kl(curve, 3.0, reference=0.0) == pytest.approx(0.525)
    assert reward_at_kl(curve, 5.0, reference=0.0) == pytest.approx(0.575)
    assert reward_at_kl(curve, 5.5, reference=0.0) == pytest.approx(0.5875)
    assert reward_at_kl(curve, 6.5, reference=0.0) is None
    assert upper_envelope(curve) == [mean(2.0, 0.5), mean(6.0, 0.6)]
    # π_ref at (0, 0.3): the chord from it to (6, 0.6) passes 0.3 + 0.3 · 2/6 = 0.4 at KL 2, under (2, 0.5), which
    # stays a corner; π_ref at (0, 0.45): the chord passes 0.5 there, and (2, 0.5), on it, is no corner
    assert upper_envelope(curve, reference=0.3) == [mean(2.0, 0.5), mean(6.0, 0.6)]
    assert upper_envelope(curve, reference=0.45) == [mean(6.0, 0.6)]
    assert reward_at_kl(curve, 2.0, reference=0.45) == pytest.approx(0.5)
    # a point past the highest, (8, 0.55): the frontier stays at 0.6 (reached within KL 7), not the line's 0.575
    assert reward_at_kl([*curve, mean(8.0, 0.55)], 7.0, reference=0.0) == pytest.approx(0.6)
    assert upper_envelope([*curve, mean(8.0, 0.55)]) == [mean(2.0, 0.5), mean(6.0, 0.6)]


def fake_run(seed, kls, rewards, beta=0.1, final=None):
    """A run record whose history holds validations [(step, value), ...] of both frontier metrics."""
    final = final or {"val/kl_to_ref": kls[-1][1], "val/true_reward": rewards[-1][1]}
    return {"family": "align", "divergence": "dpo", "data": "controlled_sentiment", "seed": seed, "status": "completed",
            "metrics": {**final, "val/ref_true_reward": 0.02}, "config": {"align_beta": beta},
            "history": {"val/kl_to_ref": [list(p) for p in kls], "val/true_reward": [list(p) for p in rewards]}}


def test_every_validation_gives_one_point_per_step_and_seeds_average_per_step():
    runs = [fake_run(0, [(100, 1.0), (200, 3.0)], [(100, 0.1), (200, 0.3), (300, 0.9)]),  # 300: no KL, no point
            fake_run(1, [(100, 2.0), (200, 5.0)], [(100, 0.2), (200, 0.5)])]
    points = frontier_points(runs, every_validation=True)
    assert sorted((p.seed, p.step, p.kl, p.reward) for p in points) == [
        (0, 100, 1.0, 0.1), (0, 200, 3.0, 0.3), (1, 100, 2.0, 0.2), (1, 200, 5.0, 0.5)]
    means = seed_means(points)
    assert [(m.step, m.n) for m in means] == [(100, 2), (200, 2)]
    assert (means[0].kl, means[0].reward, means[1].kl, means[1].reward) == pytest.approx((1.5, 0.15, 4.0, 0.4))
    # Without it, a run is its final point only.
    assert [(p.seed, p.step, p.kl) for p in frontier_points(runs)] == [(0, None, 3.0), (1, None, 5.0)]


def test_compare_every_validation_writes_each_steps_point_and_draws_the_paths(tmp_path):
    from divlab.cli.compare import main

    for seed in (0, 1):
        run_dir = tmp_path / f"run{seed}"
        run_dir.mkdir()
        record = fake_run(seed, [(100, 1.0 + seed), (200, 4.0 + seed)], [(100, 0.2), (200, 0.4)])
        (run_dir / "run.json").write_text(json.dumps({**record, "run_dir": str(run_dir)}))
    out = tmp_path / "out"
    assert main([str(tmp_path / "run0"), str(tmp_path / "run1"), "--out", str(out),
                 "--frontier-points", "every-validation", "--frontier-at-kl", "2"]) == 0
    rows = (out / "frontier.md").read_text().splitlines()
    assert rows[0] == "| method | β | step | KL(π‖π_ref) (nats/seq) | true reward | seed |"
    assert "| align/dpo | 0.1 | 100 | 2.000 | 0.2000 | 1 |" in rows
    summary = (out / "frontier_summary.md").read_text()
    assert "| align/dpo | 0.1 | 200 | 2 | 4.500 ± 0.707 | 0.4000 ± 0.0000 |" in summary
    assert "| 2 | 0.2333 |" in summary  # between the step means (1.5, 0.2) and (4.5, 0.4): 0.2 + 0.2 · 0.5/3
    assert (out / "frontier.png").stat().st_size > 0


def test_frontier_at_chosen_kls_and_as_a_share_of_the_last_method_by_hand():
    from divlab.tracking.frontier import rewards_at_kls_markdown

    means = [
        FrontierMean("align/dpo", 0.1, 1, 4.0, 0.0, 0.4, 0.0),
        FrontierMean("align/ppo_gt", 0.1, 1, 2.0, 0.0, 0.6, 0.0),
    ]
    rows = rewards_at_kls_markdown(means, 0.0, (1.0, 2.0, 3.0)).splitlines()
    assert rows[2] == "| KL | align/dpo | align/ppo_gt | align/dpo / align/ppo_gt |"
    # π_ref at (0, 0). DPO at KL 1: 0.1, at 2: 0.2; PPO-GT at 1: 0.3, at 2: 0.6, and its curve ends at 2.
    assert rows[4:] == ["| 1 | 0.1000 | 0.3000 | 33 % |", "| 2 | 0.2000 | 0.6000 | 33 % |", "| 3 | 0.3000 | – | – |"]
