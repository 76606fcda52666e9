"""The image study's tables, reading and figure (docs/results/images.md), from its committed record set only.

Blocks (`results_tables.generator`):

- `image-study/<set>`: one row per member (family, divergence and the recipe that sets it apart), its completed
  and failed seeds, and the mean ± SE over completed seeds of every metric; the best mean and every member on par
  with it (two-SE rule) in bold;
- `image-classes/<set>`: each member's share of samples the classifier puts in each class (seed means), beside
  the uniform truth;
- `image-toys/<set>`: each shared-recipe member beside the ring-8 study of the same member (docs/compare), and how
  their rankings agree;
- `image-reading/<set>`: what the tables show, in sentences worded by their statistics;
- `image-floor/<record>`: the metrics of real training images against the test images at each resolution
  (`scripts/image_study_floor.py`): what a perfect model would score, and what pooling to 16×16 costs.
"""
import csv
import math
import re
from pathlib import Path

from divlab.tracking.doc_blocks import markdown_table
from divlab.tracking.runs import run_label
from divlab.tracking.table import higher_is_better
from divlab.tracking.verdict import NO_SPREAD, ON_PAR, Estimate, estimate, from_std, on_par_with_best, verdict

SPACE = "fmnist16"
# (metric, header): quality, coverage, likelihood
METRICS = (
    (f"test/fid_{SPACE}", "FD ↓"), (f"test/kid_{SPACE}", "KID ↓"), (f"test/precision_{SPACE}", "precision ↑"),
    (f"test/recall_{SPACE}", "recall ↑"), (f"test/density_{SPACE}", "density ↑"),
    (f"test/coverage_{SPACE}", "coverage ↑"), (f"test/class_kl_{SPACE}", "class KL ↓"), ("test/bpd", "bits/dim ↓"),
)
FASHION_MNIST_CLASSES = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "boot")
# A study member's overrides that name its recipe (the shared recipe has none of them).
RECIPES = {"model.packing=4": "PacGAN4", "model.n_critic=5": "WGAN-GP recipe", "recipe=sngan_hinge": "SN-GAN recipe",
           "model.least_squares_labels=[0,1,1]": "LSGAN's 0-1 labels"}
TOY_STUDY = Path(__file__).resolve().parents[2] / "docs" / "compare" / "study_ring8" / "table.csv"


def member(run: dict) -> str:
    """`family/divergence`, then the recipe its overrides (its folder's name) choose, if any."""
    overrides = re.split(r",(?![^\[]*\])", run["run"])  # commas inside a list value do not separate overrides
    recipe = next((name for override, name in RECIPES.items() if override in overrides), None)
    label = "ar (pixels)" if run.get("family") == "ar" else run_label(run)
    return f"{label} · {recipe}" if recipe else label


def members(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs by member, likelihood families first, then the GANs at the shared recipe, then at their own."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(member(run), []).append(run)
    order = {"vae": 0, "ddpm": 1, "score": 2, "ar": 3}
    return dict(sorted(groups.items(), key=lambda item: (order.get(item[1][0].get("family"), 4), "·" in item[0],
                                                         item[0])))


def completed(runs: list[dict]) -> list[dict]:
    return [run for run in runs if run.get("status") == "completed"]


def estimates(runs: list[dict]) -> dict[str, Estimate]:
    """Mean ± SE over the completed seeds of every study metric a member reports."""
    values = {metric: [run["metrics"][metric] for run in completed(runs) if metric in run["metrics"]]
              for metric, _ in METRICS}
    return {metric: estimate(v) for metric, v in values.items() if v}


def study_table(record_set: dict) -> str:
    groups = members(record_set["runs"])
    cells = {name: estimates(runs) for name, runs in groups.items()}
    bold = {metric: on_par_with_best({n: c[metric] for n, c in cells.items() if metric in c},
                                     higher_is_better(metric)) for metric, _ in METRICS}
    rows = []
    for name, runs in groups.items():
        failed = len(runs) - len(completed(runs))
        texts = [(f"**{cells[name][m].text()}**" if name in bold[m] else cells[name][m].text())
                 if m in cells[name] else "–" for m, _ in METRICS]
        rows.append([name, len(completed(runs)), failed or "", *texts])
    return markdown_table(["member", "seeds", "failed", *(header for _, header in METRICS)], rows)


def class_shares(runs: list[dict]) -> list[float] | None:
    """The mean over completed seeds of the share of samples in each class (from each run's test histogram)."""
    histograms = [run["mode_histogram"]["test"]["counts"] for run in completed(runs)
                  if (run.get("mode_histogram") or {}).get("test")]
    if not histograms:
        return None
    shares = [[count / sum(counts) for count in counts] for counts in histograms]
    return [sum(column) / len(shares) for column in zip(*shares)]


def classes_table(record_set: dict) -> str:
    rows = [["uniform (the data)", *("10" for _ in FASHION_MNIST_CLASSES)]]
    for name, runs in members(record_set["runs"]).items():
        shares = class_shares(runs)
        if shares:
            rows.append([name, *(_share_text(share) for share in shares)])
    return markdown_table(["member", *FASHION_MNIST_CLASSES], rows) + (
        "\n\nPer cent of each member's 1,000 test samples that the classifier puts in each class (mean over seeds); "
        "**bold**: under half the uniform 10 %.")


def _share_text(share: float) -> str:
    text = f"{100 * share:.1f}"
    return f"**{text}**" if share < 0.05 else text


def toy_rows() -> dict[str, dict[str, Estimate]]:
    """The ring-8 study's rows (docs/compare/study_ring8/table.csv) as estimates, by member label."""
    with TOY_STUDY.open() as f:
        rows = list(csv.DictReader(f))
    out = {}
    for row in rows:
        out[_toy_key(row["run"])] = {
            metric: from_std(float(row[f"test/{metric}_mean"]), float(row[f"test/{metric}_std"] or "nan"),
                             int(row["n"])) for metric in ("modes_covered", "reverse_kl")}
    return out


def _toy_key(label: str) -> str:
    """A row's key across the two studies: the likelihood families by family (their targets differ), GANs by
    divergence."""
    family = label.split("/")[0]
    return family if family in ("vae", "ddpm", "score") else label


def toys_table(record_set: dict) -> str:
    toys = toy_rows()
    groups = members(record_set["runs"])
    rows, pairs = [], []
    for name, runs in groups.items():
        key = _toy_key(name)
        if " · " in name or key not in toys:
            continue
        ours = estimates(runs)
        class_kl = ours.get(f"test/class_kl_{SPACE}")
        rows.append([name, class_kl.text() if class_kl else "–", toys[key]["modes_covered"].text()])
        if class_kl:
            pairs.append((class_kl.mean, toys[key]["modes_covered"].mean))
    rho = spearman([-a for a, _ in pairs], [b for _, b in pairs])
    return markdown_table(["member (shared recipe)", "images: class KL ↓", "ring of 8: modes covered ↑ (of 8)"],
                          rows) + (f"\n\nSpearman's rank correlation between covering more classes here (lower class "
                                   f"KL) and covering more modes on the ring: ρ = {rho:+.2f} over {len(pairs)} "
                                   "members.")


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's ρ: Pearson's correlation of the ranks (ties share their mean rank)."""
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def best_and_on_par(scored: dict[str, Estimate], metric: str) -> tuple[str, list[str], list[str]]:
    """The member with the best mean of `metric`, those on par with it by the two-SE rule, and those with no
    verdict (one seed: spread unknown)."""
    higher = higher_is_better(metric)
    best = (max if higher else min)(scored, key=lambda n: scored[n].mean)
    words = {n: verdict(e, scored[best], higher) for n, e in scored.items() if n != best}
    return (best, [n for n, word in words.items() if word == ON_PAR],
            [n for n, word in words.items() if word == NO_SPREAD])


def best_line(scored: dict[str, Estimate], metric: str, title: str) -> str:
    """`title`: the best mean among `scored`, the members on par with it, and those with no verdict."""
    best, tied, unjudged = best_and_on_par(scored, metric)
    text = f"- **{title}**: best mean {best} ({scored[best].text()})"
    if tied:  # with their estimates: a wide spread is on par by the rule without being close
        text += "; on par with it: " + ", ".join(f"{n} ({scored[n].text()})" for n in tied)
    if unjudged:
        text += f"; no verdict against {', '.join(unjudged)} (one seed: spread unknown)"
    if not tied and not unjudged:
        text += "; ahead of every other member beyond two SEs"
    return text + "."


def headline(record_set: dict) -> tuple[str, str]:
    """The README's row: (the best member by FD and by class KL, with their n and mean ± SE; who is on par)."""
    cells = {name: estimates(runs) for name, runs in members(record_set["runs"]).items()}
    found, ties = [], []
    for metric, header in ((f"test/fid_{SPACE}", "FD"), (f"test/class_kl_{SPACE}", "class KL")):
        scored = {n: c[metric] for n, c in cells.items() if metric in c}
        best, tied, _ = best_and_on_par(scored, metric)
        found.append(f"best {header}: {best} {scored[best].text()} (n = {scored[best].n})")
        ties.append(f"{header}: " + ("on par with it: " + ", ".join(f"{n} {scored[n].text()}" for n in tied)
                                     if tied else "ahead of every other member"))
    return "; ".join(found), "; ".join(ties)


def reading(record_set: dict) -> str:
    """For each metric, the best member and those on par with it (all members, then the GANs alone on the sample
    metrics that tell divergences apart); the members that failed on some seed; each GAN divergence at its own
    recipe against the shared one."""
    groups = members(record_set["runs"])
    cells = {name: estimates(runs) for name, runs in groups.items()}
    gans = {name for name, runs in groups.items() if runs[0].get("family") == "gan"}
    lines = []
    for metric, header in METRICS:
        scored = {n: c[metric] for n, c in cells.items() if metric in c}
        if len(scored) >= 2:
            lines.append(best_line(scored, metric, header[:-2]))
    for metric, header in METRICS:
        if metric in (f"test/fid_{SPACE}", f"test/recall_{SPACE}", f"test/class_kl_{SPACE}"):
            scored = {n: c[metric] for n, c in cells.items() if metric in c and n in gans}
            if len(scored) >= 2:
                lines.append(best_line(scored, metric, f"{header[:-2]}, GANs only"))
    failed = {name: len(runs) - len(completed(runs)) for name, runs in groups.items()}
    unstable = [f"{name} ({n} of {len(groups[name])} seeds)" for name, n in failed.items() if n]
    spreads = {name: c[f"test/fid_{SPACE}"].se for name, c in cells.items()
               if f"test/fid_{SPACE}" in c and c[f"test/fid_{SPACE}"].se is not None}
    widest = sorted(spreads, key=spreads.get, reverse=True)[:3]
    lines.append("- **Stability**: " + (f"runs stopped by non-finite losses: {', '.join(unstable)}."
                                         if unstable else "every run of every member finished with finite losses.")
                 + (" Widest spread over seeds (SE of FD): " + ", ".join(f"{n} ({spreads[n]:.2g})" for n in widest)
                    + "." if widest else ""))
    dropped = {name: sum(share < 0.05 for share in shares) for name, runs in groups.items()
               if (shares := class_shares(runs))}
    lines.append("- **Classes dropped** (under half their 10 % share, seed means): "
                 + ", ".join(f"{name} {n}" for name, n in dropped.items()) + " of 10.")
    for name, runs in groups.items():
        if " · " not in name:
            continue
        shared = cells.get(name.split(" · ")[0])
        if not shared:
            continue
        words = []
        for metric, header in METRICS[:7]:
            if metric in cells[name] and metric in shared:
                word = verdict(cells[name][metric], shared[metric], higher_is_better(metric))
                if word != ON_PAR:
                    words.append(f"{header[:-2]} {word}")
        lines.append(f"- **{name}** against the shared recipe: "
                     + (", ".join(words) if words else "on par on every sample metric") + ".")
    return "\n".join(lines)


def plot_sample_grids(record_set: dict, sweep_dir: Path, path: Path, seed: int = 0) -> int:
    """One tile per member: the test-time sample grid of its run at `seed`, read from the sweep folder the record
    set was made from (`run` is each run's folder name there); returns the tile count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiles = []
    for name, runs in members(record_set["runs"]).items():
        run = next((r for r in completed(runs) if r.get("seed") == seed), None)
        images = sorted((Path(sweep_dir) / run["run"]).glob("samples/*.png")) if run else []
        if images:
            tiles.append((name, images[-1]))
    columns = 6
    rows = -(-len(tiles) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), layout="constrained", squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, image) in zip(axes.flat, tiles):
        ax.imshow(plt.imread(image))
        ax.set_title(name, fontsize=7)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return len(tiles)


def plot_quality_coverage(record_set: dict, path: Path) -> Path:
    """Precision against recall and FD against class KL, one point per member (mean ± SE over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = members(record_set["runs"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), layout="constrained")
    pairs = ((f"test/recall_{SPACE}", f"test/precision_{SPACE}"), (f"test/class_kl_{SPACE}", f"test/fid_{SPACE}"))
    colours = [*plt.colormaps["tab20"].colors, *plt.colormaps["Dark2"].colors]  # 28 distinct colours
    for ax, (x_metric, y_metric) in zip(axes, pairs):
        for index, (name, runs) in enumerate(groups.items()):
            cells = estimates(runs)
            if x_metric in cells and y_metric in cells:
                x, y = cells[x_metric], cells[y_metric]
                ax.errorbar(x.mean, y.mean, xerr=x.se or 0, yerr=y.se or 0, fmt="o" if "·" not in name else "s",
                            color=colours[index % len(colours)], capsize=3, label=name)
        ax.set_xlabel(x_metric.removeprefix("test/"))
        ax.set_ylabel(y_metric.removeprefix("test/"))
        ax.grid(alpha=0.3)
    axes[0].set_title("quality (precision) against coverage (recall)")
    axes[1].set_title("FD against per-class coverage (class KL; lower is better on both)")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def floor_table(record: dict) -> str:
    """Real training images against the test images, per resolution: n draws and mean ± SE of every metric."""
    by_resolution: dict[int, list[dict]] = {}
    for row in record["rows"]:
        by_resolution.setdefault(row["resolution"], []).append(row["metrics"])
    names = ("fid", "kid", "precision", "recall", "density", "coverage", "class_kl")
    rows = []
    for resolution, draws in sorted(by_resolution.items()):
        suffix = "fmnist16" if resolution == 16 else "fmnist"
        rows.append([f"{resolution}×{resolution} (`{suffix}` space)", len(draws),
                     *(estimate([d[f"{name}_{suffix}"] for d in draws]).text() for name in names)])
    return (markdown_table(["real train against test", "draws", "FD", "KID", "precision", "recall", "density",
                            "coverage", "class KL"], rows)
            + f"\n\n`{record['command']}` at `{(record.get('commit') or 'unknown')[:7]}` on {record['machine']}; each "
              "draw is 1,000 other training images against the first 1,000 test images.")
