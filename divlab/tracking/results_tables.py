"""Every generated block of the results pages, computed from committed records only.

Block names (see `doc_blocks`), resolved by `generator(name)`:

- `provenance/<set>`: how the record set `docs/results/records/<set>.json` was made (command, commits, machine,
  threads, seeds, wall time, dates);
- `toy-headline/<data>`: divlab's `best_<data>` runs beside every published row of the toy protocol, mean ± SE,
  and the two-SE verdict of divlab's row against each published one;
- `per-seed/<set>`: a collapsible table of every run's final metrics in a record set;
- `means/<set>`: each experiment preset of a record set, its n and the mean ± SE over seeds of every metric;
- `compare/<folder>`: a `compare.py` table committed as `docs/compare/<folder>/table.csv` (aggregates: mean, std
  and n per row), shown as mean ± SE with the best row and every row on par with it in bold;
- `frontier/<set>`: the reward–KL frontier on measured points (seed means of every validation), each method's
  best measured point within a KL and the two-SE verdict between methods there, with the concave envelope beside
  it, labelled as what it is;
- `benchmark/<record>`: a peer benchmark's committed summary `docs/results/records/benchmarks/<record>.json`:
  its provenance, each arm's medians and divlab against the like-for-like arm (see `benchmark_tables`);
- `pooled/<benchmark>`: every repeat of every record of a peer benchmark pooled, each ratio's mean ± SE against its
  goal by the two-SE rule;
- `image-study/<set>`, `image-classes/<set>`, `image-toys/<set>`, `image-reading/<set>`, `image-floor/<record>`,
  `image-per-seed/<set>`: the image study's tables and reading (`image_study`), its runs named by member;
- `overhead/<record>`: the Trainer's time per step against a plain loop's (`benchmarks/overhead.py --out`);
- `eval-share/<record>`: evaluation's share of each preset's wall time (`benchmarks/eval_share.py --out`);
- `headline`: the README's table of headline results, one row per results page.
"""
import csv
from functools import partial
from pathlib import Path

from divlab.tracking import frontier as fr
from divlab.tracking import image_study
from divlab.tracking.benchmark_tables import benchmark, eval_share, overhead, pooled
from divlab.tracking.doc_blocks import markdown_table as _table
from divlab.tracking.published import TOY_TABLES
from divlab.tracking.result_records import commits, read_record_set
from divlab.tracking.runs import run_label
from divlab.tracking.table import base_name, direction, higher_is_better
from divlab.tracking.verdict import NO_SPREAD, ON_PAR, Estimate, estimate, from_std, on_par_with_best, verdict

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "docs" / "results" / "records"
COMPARE = ROOT / "docs" / "compare"
TOY_METRICS = ("test/modes_covered", "test/high_quality_percent", "test/mode_reverse_kl")
TOY_HEADERS = {"test/modes_covered": "modes", "test/high_quality_percent": "high-quality %",
               "test/mode_reverse_kl": "mode reverse KL"}
HEADLINE_FRONTIER = "frontier_5seed"
FRONTIER_KLS = (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22)


def record_set(name: str) -> dict:
    path = RECORDS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no record set {path}; make it with `divlab results record {path} RUN_DIRS ...`")
    return read_record_set(path)


def _values(runs: list[dict], metric: str) -> list[float]:
    return [run["metrics"][metric] for run in runs if metric in run["metrics"]]


def _estimates(runs: list[dict], metrics) -> dict[str, Estimate]:
    values = {metric: _values(runs, metric) for metric in metrics}
    return {metric: estimate(v) for metric, v in values.items() if v}


def provenance(name: str) -> str:
    records = record_set(name)
    if "frontier_points" in records:
        return _points_provenance(name, records)
    runs = records["runs"]
    walls = [run["wall_seconds"] for run in runs if run.get("wall_seconds") is not None]
    dates = sorted(run.get("finished_at") or "" for run in runs if run.get("finished_at"))
    seeds = sorted({run.get("seed") for run in runs if run.get("seed") is not None})
    wall = (f"{sum(walls) / 60:.0f} min in all, {min(walls) / 60:.1f}–{max(walls) / 60:.1f} min a run"
            if walls else "not recorded")
    lines = [f"- **Command:** `{records['command']}`",
             f"- **Records:** [`records/{name}.json`](records/{name}.json) ({len(runs)} runs, seeds "
             f"{', '.join(map(str, seeds))})",
             f"- **Commit:** {', '.join(f'`{c}`' for c in commits(records))}",
             f"- **Machine:** {records['machine']}"
             + (f"; {records['threads']} thread(s) a run" if records.get("threads") else ""),
             f"- **Wall time:** {wall}" + (f"; finished {_date_range(dates)}" if dates else "")]
    if records.get("notes"):
        lines.append(f"- **Notes:** {records['notes']}")
    return "\n".join(lines)


def _date_range(dates: list[str]) -> str:
    first, last = dates[0][:10], dates[-1][:10]
    return first if first == last else f"{first} – {last}"


def _points_provenance(name: str, records: dict) -> str:
    points, _ = frontier_data(name)
    seeds = sorted({p.seed for p in points if p.seed is not None})
    lines = [f"- **Command:** `{records['command']}`",
             f"- **Records:** [`{records['frontier_points']}`](../{records['frontier_points'][5:]}) (every "
             f"validation of every run, {len(points)} points, seeds {', '.join(map(str, seeds))}), written by "
             f"`compare.py` from the runs' records; [`records/{name}.json`](records/{name}.json) says how they ran",
             f"- **Commit:** `{records['commit']}`",
             f"- **Machine:** {records['machine']}",
             f"- **Wall time:** {records['wall']}"]
    if records.get("notes"):
        lines.append(f"- **Notes:** {records['notes']}")
    return "\n".join(lines)


def toy_headline(data: str) -> str:
    """divlab's `best_<data>` beside every published row, and its verdicts against each."""
    runs = record_set(f"best_{data}")["runs"]
    ours = _estimates(runs, TOY_METRICS)
    published = TOY_TABLES[data]
    header = ["method", "source", "n", *(f"{TOY_HEADERS[m]} {direction(m)}" for m in TOY_METRICS)]
    rows = [[row.method, row.source, row.modes.n or "–", row.modes.text(), row.high_quality_percent.text(),
             row.mode_reverse_kl.text() if row.mode_reverse_kl else "–"] for row in published]
    rows.append([f"**divlab `best_{data}`**", "this page (mean ± SE)", len(runs),
                 *(ours[m].text() if m in ours else "–" for m in TOY_METRICS)])
    table = _table(header, rows)
    verdict_header = ["divlab against", *(TOY_HEADERS[m] for m in TOY_METRICS)]
    verdict_rows = []
    for row in published:
        theirs = dict(zip(TOY_METRICS, (row.modes, row.high_quality_percent, row.mode_reverse_kl)))
        verdict_rows.append([row.method, *(_verdict_text(ours.get(m), theirs[m], higher_is_better(m))
                                           for m in TOY_METRICS)])
    return table + "\n\nVerdicts (two-SE rule; divlab's row first):\n\n" + _table(verdict_header, verdict_rows)


def toy_reading(data: str) -> str:
    """The headline's verdicts in words, one sentence per metric: which published rows divlab's row is better
    than, on par with and worse than, by the two-SE rule."""
    runs = record_set(f"best_{data}")["runs"]
    ours = _estimates(runs, TOY_METRICS)
    sentences = []
    for index, metric in enumerate(TOY_METRICS):
        groups: dict[str, list[str]] = {}
        for row in TOY_TABLES[data]:
            theirs = (row.modes, row.high_quality_percent, row.mode_reverse_kl)[index]
            if theirs is not None and metric in ours:
                groups.setdefault(verdict(ours[metric], theirs, higher_is_better(metric)), []).append(row.method)
        parts = [f"{word} than {', '.join(groups[word])}" if word in ("better", "worse") else
                 f"{word} with {', '.join(groups[word])}" for word in ("better", ON_PAR, "worse") if groups.get(word)]
        unjudged = groups.get(NO_SPREAD)
        sentences.append(f"- **{TOY_HEADERS[metric]}** ({ours[metric].text()} over {len(runs)} seeds): "
                         + ("; ".join(parts) or "no verdict")
                         + (f" (no verdict against {', '.join(unjudged)}: no spread published)" if unjudged else "")
                         + ".")
    return "\n".join(sentences)


def _verdict_text(ours: Estimate | None, theirs: Estimate | None, higher: bool) -> str:
    if ours is None or theirs is None:
        return "–"
    word = verdict(ours, theirs, higher)
    if word == NO_SPREAD:
        return "no spread published"
    gap = ours.mean - theirs.mean
    return f"{word} ({gap:+.3g})" if word == ON_PAR else f"**{word}** ({gap:+.3g})"


def per_seed(name: str, metrics=None, label=None) -> str:
    """Every run's final metrics, each run named by `label(run)` (default: its family and divergence, and its
    preset too where the set holds several presets)."""
    runs = record_set(name)["runs"]
    metrics = list(metrics or dict.fromkeys(m for run in runs for m in run["metrics"]))
    header = ["run", "seed", *(base_name(m) if m.startswith("test/") else m for m in metrics), "wall (min)"]
    presets = {run["config"].get("experiment_name") for run in runs}
    if label is None:
        label = ((lambda run: f"`{run['config'].get('experiment_name')}` ({run_label(run)})") if len(presets) > 1
                 else run_label)
    rows = [[label(run), run.get("seed"), *(_number(run["metrics"].get(m)) for m in metrics),
             "–" if run.get("wall_seconds") is None else f"{run['wall_seconds'] / 60:.1f}"] for run in runs]
    return ("<details><summary>Per seed</summary>\n\n" + _table(header, rows) + "\n\n</details>")


def means(name: str) -> str:
    """One row per experiment preset of a record set (runs grouped by `experiment_name`): n and the mean ± SE over
    its seeds of every recorded metric ("–" where a preset does not report it)."""
    runs = record_set(name)["runs"]
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["config"].get("experiment_name") or run_label(run), []).append(run)
    metrics = list(dict.fromkeys(m for run in runs for m in run["metrics"]))
    header = ["experiment", "n", *(f"{base_name(m) if m.startswith('test/') else m} {direction(m)}".rstrip()
                                   for m in metrics)]
    rows = [[f"`{group}`", len(members), *(estimate(v).text() if (v := _values(members, m)) else "–"
                                           for m in metrics)] for group, members in groups.items()]
    return _table(header, rows)


def _number(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}"


def compare_csv(folder: str) -> str:
    """A committed compare.py table as mean ± SE; the best row and every row on par with it in bold."""
    path = COMPARE / folder / "table.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    metrics = [name[:-5] for name in fields if name.endswith("_mean")]
    settings = [name for name in fields[1:fields.index("n")]]
    cells = {i: {m: from_std(float(r[f"{m}_mean"]), _float(r[f"{m}_std"]), int(r["n"]))
                 for m in metrics if r[f"{m}_mean"] not in ("", "nan")} for i, r in enumerate(rows)}
    bold = {m: on_par_with_best({i: c[m] for i, c in cells.items() if m in c}, higher_is_better(m))
            for m in metrics if direction(m)}
    header = ["run", *settings, "n", *(f"{_metric_header(m)} {direction(m)}".strip() for m in metrics)]
    body = []
    for i, r in enumerate(rows):
        texts = []
        for m in metrics:
            text = cells[i][m].text() if m in cells[i] else "–"
            texts.append(f"**{text}**" if i in bold.get(m, ()) else text)
        body.append([r["run"], *(r[s] for s in settings), r["n"], *texts])
    note = (
        f"From [`compare/{folder}/table.csv`](../compare/{folder}/table.csv) (mean and std over seeds, as "
        f"`compare.py` wrote them; per-seed values were not kept for these runs; `git log -- docs/compare/{folder}` "
        "names the commit and date it was made). Bold: the best mean and every row on par with it by the two-SE "
        "rule; unranked metrics are never bold."
    )
    return _table(header, body) + "\n\n" + note


def _float(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def _metric_header(metric: str) -> str:
    return TOY_HEADERS.get(metric, metric[5:] if metric.startswith("test/") else metric)


def frontier_data(name: str) -> tuple[list[fr.FrontierPoint], float | None]:
    """Every (method, β, seed, step) point of a frontier record set and π_ref's reward: from its trimmed runs, or
    from the per-seed table `compare.py` committed (`frontier.md`, named by the set's `frontier_points`)."""
    records = record_set(name)
    if "frontier_points" in records:
        return fr.points_from_markdown((ROOT / records["frontier_points"]).read_text())
    runs = records["runs"]
    return fr.frontier_points(runs, every_validation=True, ignore=("trainer",)), fr.reference_reward(runs)


def frontier_points(name: str) -> list[fr.FrontierMean]:
    return fr.seed_means(frontier_data(name)[0])


def frontier_comparison(name: str) -> tuple[list[str], list[list], dict[str, list[str]]]:
    """(methods, rows, budgets by verdict): each method's best measured point within each KL budget (no mixing
    of policies), the two-SE verdict of the first method against the second there, and the envelope's values."""
    points, reference = frontier_data(name)
    curves = fr.curves_by_method(fr.seed_means(points))
    methods = list(curves)
    rows = []
    for kl in FRONTIER_KLS:
        best = {m: fr.best_measured_within(curves[m], kl) for m in methods}
        cells = [f"{p.kl:.2f}, {_reward_estimate(p).text()}" if p else "–" for p in best.values()]
        a, b = best[methods[0]], best[methods[1]]
        word = verdict(_reward_estimate(a), _reward_estimate(b)) if a and b else "–"
        envelope = [fr.reward_at_kl(curves[m], kl, reference) for m in methods]
        rows.append([kl, *cells, word, *("–" if e is None else f"{e:.3f}" for e in envelope)])
    by_word = {w: [str(r[0]) for r in rows if r[len(methods) + 1] == w] for w in ("better", ON_PAR, "worse")}
    return methods, rows, by_word


def _budgets_text(by_word: dict[str, list[str]]) -> str:
    return ("better at KL ≤ " + (", ".join(by_word["better"]) or "none") + "; on par at "
            + (", ".join(by_word[ON_PAR]) or "none") + "; worse at " + (", ".join(by_word["worse"]) or "none"))


def frontier_verdicts(name: str) -> str:
    """The measured-point comparison as a table, with the concave envelope beside it, and its summary line."""
    methods, rows, by_word = frontier_comparison(name)
    header = ["KL ≤", *(f"{m}: best measured (KL, reward ± SE)" for m in methods),
              f"{methods[0]} against {methods[1]}", *(f"{m}: envelope" for m in methods)]
    return (_table(header, rows) + f"\n\n{methods[0]} against {methods[1]} on measured points, by KL budget: "
            + _budgets_text(by_word) + ".")


def _reward_estimate(point: fr.FrontierMean) -> Estimate:
    return from_std(point.reward, point.reward_std, point.n)


def frontier_points_table(name: str) -> str:
    header = ["method", "β", "step", "seeds", "KL (nats/seq) ± SE", "true reward ± SE"]
    rows = [[m.method, f"{m.beta:g}" if m.beta is not None else "–", m.step, m.n,
             from_std(m.kl, m.kl_std, m.n).text(), _reward_estimate(m).text()] for m in frontier_points(name)]
    return "<details><summary>Every measured point</summary>\n\n" + _table(header, rows) + "\n\n</details>"


def headline() -> str:
    rows = []
    for data, page in (("ring8", "toys.md#ring-of-8"), ("grid25", "toys.md#grid-of-25")):
        runs = record_set(f"best_{data}")["runs"]
        ours = _estimates(runs, TOY_METRICS)
        pacgan4 = next(r for r in TOY_TABLES[data] if r.method == "PacGAN4")
        words = [verdict(ours[m], theirs, higher_is_better(m)) for m, theirs in
                 zip(TOY_METRICS, (pacgan4.modes, pacgan4.high_quality_percent, pacgan4.mode_reverse_kl))]
        rows.append([f"GAN on the {'ring of 8' if data == 'ring8' else 'grid of 25'} (PacGAN's protocol, 1/8 of "
                     "its steps)",
                     f"`best_{data}`, {len(runs)} seeds: " + ", ".join(
                         f"{TOY_HEADERS[m]} {ours[m].text()}" for m in TOY_METRICS),
                     "against PacGAN4: " + ", ".join(f"{TOY_HEADERS[m]} {w}" for m, w in zip(TOY_METRICS, words)),
                     f"[toy GANs](docs/results/{page})"])
    if (RECORDS / "image_study.json").exists():
        ours, ties = image_study.headline(record_set("image_study"))
        rows.append(["Every family and GAN divergence on one image protocol (16×16 Fashion-MNIST, 22 members)", ours,
                     ties, "[images](docs/results/images.md)"])
    methods, _, by_word = frontier_comparison(HEADLINE_FRONTIER)
    seeds = {p.seed for p in frontier_data(HEADLINE_FRONTIER)[0]}
    rows.append(["DPO against PPO on one reward–KL frontier (controlled sentiment)",
                 f"best measured point within each KL budget, {len(seeds)} seeds",
                 f"{methods[0]} against {methods[1]}: " + _budgets_text(by_word),
                 "[alignment](docs/results/alignment.md)"])
    return _table(["result", "divlab (mean ± SE)", "verdict (two-SE rule)", "page"], rows)


FIGURES = ROOT / "docs" / "results" / "figures"
FRONTIER_FIGURES = {"frontier_5seed": "alignment_frontier.png"}
IMAGE_FIGURES = {"image_study": "images_quality_coverage.png"}


def write_figures() -> list[Path]:
    """Draw the pages' figures from the same records (not compared by `check`: PNG bytes vary by library)."""
    from divlab.tracking.plots import plot_reward_kl_frontier

    FIGURES.mkdir(parents=True, exist_ok=True)
    written = []
    for name, file in FRONTIER_FIGURES.items():
        points, reference = frontier_data(name)
        plot_reward_kl_frontier(fr.seed_means(points), reference, FIGURES / file)
        written.append(FIGURES / file)
    for name, file in IMAGE_FIGURES.items():
        if (RECORDS / f"{name}.json").exists():
            written.append(image_study.plot_quality_coverage(record_set(name), FIGURES / file))
    return written


FIXED = {"headline": headline}
PREFIXED = {
    "provenance": provenance,
    "toy-headline": toy_headline,
    "toy-reading": toy_reading,
    "per-seed": per_seed,
    "means": means,
    "compare": compare_csv,
    "frontier": frontier_verdicts,
    "frontier-points": frontier_points_table,
    "benchmark": benchmark,
    "pooled": pooled,
    "eval-share": eval_share,
    "overhead": overhead,
    "image-study": lambda name: image_study.study_table(record_set(name)),
    "image-classes": lambda name: image_study.classes_table(record_set(name)),
    "image-toys": lambda name: image_study.toys_table(record_set(name)),
    "image-reading": lambda name: image_study.reading(record_set(name)),
    "image-floor": lambda name: image_study.floor_table(record_set(name)),
    "image-per-seed": lambda name: per_seed(name, label=image_study.member),
}


def generator(name: str):
    """The function that makes block `name` (see the module docstring)."""
    if name in FIXED:
        return FIXED[name]
    prefix, _, argument = name.partition("/")
    if prefix in PREFIXED and argument:
        return partial(PREFIXED[prefix], argument)
    raise KeyError(name)
