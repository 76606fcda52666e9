"""The performance page's blocks, `benchmark/<name>`: a committed benchmark summary as provenance and tables.

`<name>` is a file `docs/results/records/benchmarks/<name>.json` written by a peer benchmark's `--out` (its
kind, the part of the name before any suffix such as `_1thread`, says which benchmark wrote it). Shown: how it
was made (command, commit, machine, date, wall time), each arm's medians over repeats, divlab against the
like-for-like arm (throughput as the peer's ms/step ÷ divlab's, so > 1 means divlab is faster; the median and
range of the per-repeat ratios, each repeat running the arms back to back) with a ✓ only where the median meets
its goal, and every repeat's values. A planned record not yet committed renders as the command that makes it.
"""
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from divlab.tracking.doc_blocks import markdown_table
from divlab.tracking.verdict import Estimate, against_goal, estimate

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK_RECORDS = ROOT / "docs" / "results" / "records" / "benchmarks"


@dataclass(frozen=True)
class Benchmark:
    arms: dict[str, str]  # arm key in the summary's rows → its name on the page, in table order
    peer: str  # the like-for-like arm divlab is judged against
    throughput_goal: float  # peer ms/step ÷ divlab ms/step, at least
    losses: dict[str, str]  # loss key → its name on the page
    wall_goal: float | None = None  # peer whole run ÷ divlab's, at least (None: shown without a goal)
    wall_goal_steps: int | None = None  # the run length the whole-run goal is set for (None: every length)
    loss_goals: dict[str, float] = field(default_factory=dict)  # divlab − peer, at most
    tokens_per_s: bool = False  # also show tokens/s (the summary's `tokens_per_step`)


BENCHMARKS = {
    "char_gpt_vs_nanogpt": Benchmark(
        arms={"nanogpt": "nanoGPT", "divlab": "divlab"}, peer="nanogpt", throughput_goal=1.10,
        wall_goal=1.0, wall_goal_steps=2000, losses={"heldout_loss": "held-out loss (nats/char)"},
        loss_goals={"heldout_loss": 0.01}, tokens_per_s=True),
    "dpo_vs_trl": Benchmark(
        arms={"divlab": "divlab", "trl_precomputed": "TRL, π_ref precomputed", "trl_default": "TRL default"},
        peer="trl_precomputed", throughput_goal=1.0,
        losses={"heldout_loss": "held-out DPO loss", "train_loss": "training-pairs DPO loss"}),
}
# The records the pages show, and the command that makes each (its `--out` is the record's path).
PLANNED = {
    "char_gpt_vs_nanogpt_1thread":
        "python benchmarks/char_gpt_vs_nanogpt.py --nanogpt ../nanoGPT --steps 400 --repeats 2 --threads 1",
    "char_gpt_vs_nanogpt_2threads":
        "python benchmarks/char_gpt_vs_nanogpt.py --nanogpt ../nanoGPT --steps 400 --repeats 2 --threads 2",
    "dpo_vs_trl": "OMP_NUM_THREADS=1 python benchmarks/dpo_vs_trl.py --steps 30 --repeats 3",
}


def kind(name: str) -> str:
    """The benchmark that writes record `name`: the longest kind its name starts with."""
    kinds = [k for k in BENCHMARKS if name == k or name.startswith(k + "_")]
    if not kinds:
        raise KeyError(f"benchmark record {name!r} names no known benchmark ({', '.join(BENCHMARKS)})")
    return max(kinds, key=len)


def benchmark(name: str) -> str:
    """Block `benchmark/<name>`: the record's provenance and tables, or how to make a planned record."""
    benchmark_kind = kind(name)  # an unknown kind is refused before any file is read
    path = BENCHMARK_RECORDS / f"{name}.json"
    shown = f"docs/results/records/benchmarks/{name}.json"
    if not path.exists():
        if name not in PLANNED:
            raise FileNotFoundError(f"no benchmark record {path}; write it with the benchmark's --out {shown}")
        return f"Not measured yet: run `{PLANNED[name]} --out {shown}` and commit its JSON to {shown}."
    summary = json.loads(path.read_text())
    return provenance(name, summary) + "\n\n" + tables(benchmark_kind, summary)


def provenance(name: str, summary: dict) -> str:
    """How a peer benchmark's record (its arms alternated in each repeat) was made."""
    detail = f" ({len(summary['rows'])} repeat(s) of {summary['steps']} steps, the arms alternated in each)"
    return record_provenance(name, summary, detail, threads="thread(s) a process")


def pooled(kind_name: str) -> str:
    """Block `pooled/<kind>`: every repeat of every committed record of a peer benchmark, pooled (each repeat is one
    alternated pair, so repeats of several records are independent estimates of one ratio): the throughput ratio by
    thread count and the whole-run ratio by thread count and steps, as mean ± SE against the goal by the two-SE
    rule. One record's ✓ or "not met" is one draw; this is the verdict."""
    spec = BENCHMARKS[kind_name]
    records = {path.stem: json.loads(path.read_text()) for path in sorted(BENCHMARK_RECORDS.glob(f"{kind_name}*.json"))
               if kind(path.stem) == kind_name}
    throughput, wall = {}, {}
    for name, summary in records.items():
        setting = record_setting(summary)
        for row in summary["rows"]:
            throughput.setdefault((setting, summary["threads"]), []).append((name, throughput_ratio(spec, row)))
            if spec.wall_goal is not None:
                wall.setdefault((setting, summary["threads"], summary["steps"]), []).append(
                    (name, wall_ratio(spec, row)))
    peer_name = spec.arms[spec.peer]
    rows = [[f"throughput: {peer_name} ms/step ÷ divlab's", threads, setting, "all",
             *pooled_cells(ratios, throughput_goal(spec, setting))]
            for (setting, threads), ratios in sorted(throughput.items(), key=setting_first)]
    rows += [[f"whole run: {peer_name} ÷ divlab", threads, setting, steps,
              *pooled_cells(ratios, wall_goal(spec, steps, setting))]
             for (setting, threads, steps), ratios in sorted(wall.items(), key=setting_first)]
    return markdown_table(["ratio", "threads", "both arms", "steps", "repeats (records)", "mean ± SE", "goal",
                           "verdict"], rows)


GOAL_SETTING = "cpu, float32, eager"  # the setting the speed goals are set for; others are shown without them


def record_setting(summary: dict) -> str:
    """Where and how both arms of a record ran: device, precision, eager or compiled (`torch.compile`)."""
    return ", ".join([summary.get("device", "cpu"), summary.get("precision", "float32"),
                      "compiled" if summary.get("compile", False) else "eager"])


def setting_first(item: tuple) -> tuple:
    """Pooled rows in order: the goals' setting first, then the others by name, each by threads (and steps)."""
    setting, *rest = item[0]
    return (setting != GOAL_SETTING, setting, *rest)


def pooled_cells(ratios: list[tuple[str, float]], goal: float | None) -> list[str]:
    e = estimate([ratio for _, ratio in ratios])
    names = sorted({name for name, _ in ratios})
    judged = ["–", "–"] if goal is None else [f"≥ {goal:.2f}×", against_goal(e, goal)]
    return [f"{len(ratios)} ({', '.join(f'`{n}`' for n in names)})", f"{e.text()}×", *judged]


def throughput_ratio(spec: Benchmark, row: dict) -> float:
    """One repeat's peer ms/step ÷ divlab's (above 1: divlab is faster)."""
    return ms_per_step(row[spec.peer]) / ms_per_step(row["divlab"])


def wall_ratio(spec: Benchmark, row: dict) -> float:
    """One repeat's peer whole-run wall time ÷ divlab's (above 1: divlab's run is shorter)."""
    return row[spec.peer]["wall_s"] / row["divlab"]["wall_s"]


def ms_per_step(result: dict) -> float:
    """One arm's milliseconds per step in one repeat (the benchmarks record ms or s)."""
    return result["ms_per_step"] if "ms_per_step" in result else 1e3 * result["s_per_step"]


def tables(kind_name: str, summary: dict) -> str:
    """The arms' medians, divlab against the like-for-like arm, and every repeat (the benchmarks print this too)."""
    spec = BENCHMARKS[kind_name]
    rows = summary["rows"]
    arms = [arm for arm in spec.arms if arm in rows[0]]
    setting = record_setting(summary)
    parts = [f"Medians over {len(rows)} repeat(s) of {summary['steps']} steps, "
             + (f"{summary.get('precision', 'float32')}:" if setting == GOAL_SETTING else
                f"both arms {setting} (the goals are set for {GOAL_SETTING}):"),
             markdown_table(_arm_header(spec), [[spec.arms[arm], *_arm_cells(spec, summary, [r[arm] for r in rows])]
                                                for arm in arms])]
    if "divlab" in arms and spec.peer in arms:
        parts += [comparison(spec, rows, summary["steps"], setting),
                  "Repeats rerun one seed, so their spread is timing noise, not a seed's: no two-SE verdict is "
                  "drawn; the range shows the lowest and highest repeat."]
    if "step0_loss" in summary:
        parts.append(f"Every arm starts from the same π = π_ref: held-out DPO loss at step 0 "
                     f"{summary['step0_loss']:.4f} (log 2 = 0.6931).")
    repeats = [[r.get("repeat", i), spec.arms[arm], *_arm_cells(spec, summary, [r[arm]])]
               for i, r in enumerate(rows) for arm in arms]
    parts.append("<details><summary>Per repeat</summary>\n\n" + markdown_table(["repeat", *_arm_header(spec)],
                                                                                repeats) + "\n\n</details>")
    return "\n\n".join(parts)


def _arm_header(spec: Benchmark) -> list[str]:
    return ["arm", "ms per step", *["tokens/s"] * spec.tokens_per_s, "whole run (s)", *spec.losses.values()]


def _arm_cells(spec: Benchmark, summary: dict, results: list[dict]) -> list[str]:
    """One arm's medians over `results` (its repeats)."""
    ms = statistics.median(ms_per_step(r) for r in results)
    tokens = [f"{1e3 * summary['tokens_per_step'] / ms:,.0f}"] if spec.tokens_per_s else []
    return [f"{ms:.1f}", *tokens, f"{statistics.median(r['wall_s'] for r in results):.1f}",
            *(f"{statistics.median(r[key] for r in results):.4f}" for key in spec.losses)]


def throughput_goal(spec: Benchmark, setting: str = GOAL_SETTING) -> float | None:
    """The throughput goal at a record's setting: none but at the one the goals are set for."""
    return spec.throughput_goal if setting == GOAL_SETTING else None


def wall_goal(spec: Benchmark, steps: int, setting: str = GOAL_SETTING) -> float | None:
    """The whole-run goal for runs of `steps` steps: none where it is set for another length or setting."""
    return spec.wall_goal if spec.wall_goal_steps in (None, steps) and setting == GOAL_SETTING else None


def comparison(spec: Benchmark, rows: list[dict], steps: int, setting: str = GOAL_SETTING) -> str:
    """divlab against the peer: the median and range of each per-repeat ratio or gap, its goal, ✓ where met (the
    speed goals are set for `GOAL_SETTING`: none for a record at another)."""
    peer = spec.arms[spec.peer]
    lines = [[f"throughput: {peer} ms/step ÷ divlab's",
              *_judged([throughput_ratio(spec, r) for r in rows], RATIO, throughput_goal(spec, setting))],
             [f"whole run: {peer} ÷ divlab",
              *_judged([wall_ratio(spec, r) for r in rows], RATIO, wall_goal(spec, steps, setting))]]
    for key, label in spec.losses.items():
        gaps = [r["divlab"][key] - r[spec.peer][key] for r in rows]
        lines.append([f"{label}: divlab − {peer}", *_judged(gaps, GAP, spec.loss_goals.get(key), at_most=True)])
    return markdown_table([f"divlab against {peer}", "median", "range over repeats", "goal", "met"], lines)


RATIO, GAP = ("{:.3f}×", "{:.2f}×"), ("{:+.4f}", "{:+.2f}")  # (a value's format, a goal's)


def _judged(values: list[float], formats: tuple[str, str], goal: float | None, at_most: bool = False) -> list[str]:
    """[median, range, goal, ✓ or `not met`] of per-repeat values against a goal (at least it, or at most)."""
    fmt, goal_fmt = formats
    median = statistics.median(values)
    low, high = min(values), max(values)
    spread = fmt.format(low) if low == high else f"{fmt.format(low)} – {fmt.format(high)}"
    if goal is None:
        return [fmt.format(median), spread, "–", "–"]
    met = median <= goal if at_most else median >= goal
    return [fmt.format(median), spread, ("≤ " if at_most else "≥ ") + goal_fmt.format(goal), "✓" if met else "not met"]


def eval_share(name: str) -> str:
    """Block `eval-share/<name>`: `benchmarks/eval_share.py --out`'s record, each preset's evaluation share of its
    wall time against the goal, with how the record was made."""
    summary = json.loads((BENCHMARK_RECORDS / f"{name}.json").read_text())
    goal = summary["goal"]
    rows = [[f"`{row['experiment']}`", row["status"], f"{row['wall']:.0f}",
             "–" if row["evaluation"] is None else f"{row['evaluation']:.0f}",
             "–" if row["share"] is None else f"{row['share']:.1%}",
             "–" if row["share"] is None else ("✓" if row["share"] <= goal else "not met"), row["costliest"],
             f"`{row['commit']}`" if row.get("commit") else "–"]
            for row in summary["rows"]]
    return record_provenance(name, summary, threads="thread(s) a run") + "\n\n" + markdown_table(
        ["preset", "status", "wall (s)", "evaluation (s)", "share", f"≤ {goal:.0%}",
         "costliest timed step (a sweep: its runs' lowest – highest share)", "run's commit"], rows)


def overhead(name: str) -> str:
    """Block `overhead/<name>`: `benchmarks/overhead.py --out`'s record, the Trainer's time per step against a plain
    loop's over the same module and batch, with how the record was made. Each case's ratio is the mean ± SE of its
    alternated repeats' ratios, judged against the case's goal (an upper bound) by the two-SE rule."""
    summary = json.loads((BENCHMARK_RECORDS / f"{name}.json").read_text())
    rows = []
    for row in summary["rows"]:
        ratio = overhead_ratio(row)
        rows.append([row["case"], f"{row['plain_ms']:.2f}", f"{row['lightning_ms']:.2f}", ratio.text(),
                     f"≤ {row['goal']:g}", against_goal(ratio, row["goal"], at_least=False),
                     "–" if row["loader_ms"] is None else f"{row['loader_ms']:.2f}"])
    detail = (f" (medians of {summary['repeats']} alternated repeats of {summary['steps']} steps after "
              f"{summary['warmup']} warm-up; the ratio: mean ± SE of the repeats' ratios)")
    return record_provenance(name, summary, detail) + "\n\n" + markdown_table(
        ["case", "plain loop (ms/step)", "Trainer (ms/step)", "Trainer ÷ plain", "goal", "verdict",
         "loader alone (ms/batch)"], rows)


def overhead_ratio(row: dict) -> Estimate:
    """One case's Trainer ÷ plain-loop time per step: the mean ± SE of its repeats' ratios, each repeat one
    alternated pair (a record from before the repeats were kept: its median ratio, spread unknown)."""
    if "lightning_ms_repeats" not in row:
        return Estimate(row["ratio"], None, None)
    return estimate([trainer / plain for trainer, plain in zip(row["lightning_ms_repeats"], row["plain_ms_repeats"])])


def record_provenance(name: str, summary: dict, detail: str = "", threads: str = "thread(s)") -> str:
    """How a benchmark record was made: command, record, commit, machine and versions, date and the whole
    benchmark's wall time (each "not recorded" where an older record lacks it)."""
    missing = "not recorded"
    versions = ", ".join(f"{tool} {summary[key]}" for tool, key in (("torch", "torch"), ("TRL", "trl"))
                         if summary.get(key))
    date, wall = summary.get("date"), summary.get("wall_s")
    return "\n".join([
        f"- **Command:** `{summary.get('command', missing)}`",
        f"- **Record:** [`records/benchmarks/{name}.json`](records/benchmarks/{name}.json)" + detail,
        f"- **Commit:** `{summary.get('commit', missing)}`",
        f"- **Machine:** {summary.get('machine', missing)}; {versions}; {summary.get('threads') or 'unrecorded'} "
        f"{threads}",
        f"- **Date:** {date[:16].replace('T', ' ') + ' UTC' if date else missing}; **wall time:** "
        + (f"{wall / 60:.1f} min, the whole benchmark" if wall is not None else missing),
    ])
