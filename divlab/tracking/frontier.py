"""The alignment family's reward–KL frontier from run records: one point per run, one curve per method.

A run is on the frontier when it logged both `val/true_reward` and `val/kl_to_ref` (the true reward
of fresh samples and KL(π‖π_ref) per sequence on them); `val/ref_true_reward` is the reference
policy's reward on the same prompts, the frontier's point at KL = 0.
"""
from typing import NamedTuple

from divlab.tracking.runs import run_label

REWARD, KL, REFERENCE = "val/true_reward", "val/kl_to_ref", "val/ref_true_reward"


class FrontierPoint(NamedTuple):
    method: str  # run label, e.g. align/dpo
    beta: float | None  # the KL coefficient: align_beta, else the model's beta (DPO) or kl_coef (PPO)
    kl: float
    reward: float
    seed: int | None


def run_beta(run: dict) -> float | None:
    config = run.get("config") or {}
    model = config.get("model") or {}
    return next((v for v in (config.get("align_beta"), model.get("beta"), model.get("kl_coef")) if v is not None), None)


def frontier_points(runs: list[dict]) -> list[FrontierPoint]:
    """Points of the runs that have both frontier metrics, sorted by method and KL."""
    points = [FrontierPoint(run_label(run), run_beta(run), run["metrics"][KL], run["metrics"][REWARD], run.get("seed"))
              for run in runs if {KL, REWARD} <= set(run.get("metrics", {}))]
    return sorted(points, key=lambda p: (p.method, p.kl))


def reference_reward(runs: list[dict]) -> float | None:
    """Mean reference reward over the runs that logged it (one value when they share π_ref and prompts)."""
    values = [run["metrics"][REFERENCE] for run in runs if REFERENCE in run.get("metrics", {})]
    return sum(values) / len(values) if values else None


def frontier_markdown(points: list[FrontierPoint], reference: float | None) -> str:
    lines = ["| method | β | KL(π‖π_ref) (nats/seq) | true reward | seed |", "|---|---|---|---|---|"]
    if reference is not None:
        lines.append(f"| reference π_ref | – | 0 | {reference:.4f} | – |")
    lines += [f"| {p.method} | {'' if p.beta is None else f'{p.beta:g}'} | {p.kl:.3f} | {p.reward:.4f} | {p.seed} |"
              for p in points]
    return "\n".join(lines) + "\n"
