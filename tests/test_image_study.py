"""The image study's page blocks on a planted record set: member labels, bold best and ties, failures, the reading's
verdicts, class shares, and Spearman's ρ against scipy."""
import math

import pytest

from divlab.tracking import image_study

FD, KL = "test/fid_fmnist16", "test/class_kl_fmnist16"


def run(folder: str, family: str, divergence: str, seed: int, fd: float | None, class_kl: float = 0.5,
        status: str = "completed", counts=None) -> dict:
    metrics = {} if fd is None else {FD: fd, KL: class_kl}
    return {"run": f"{folder},seed={seed}", "family": family, "divergence": divergence, "seed": seed,
            "status": status, "metrics": metrics, "config": {},
            "mode_histogram": {"test": {"step": 1, "counts": counts}} if counts else {}}


@pytest.fixture
def records():
    runs = []
    for seed, (a, b, c, pac) in enumerate([(10.0, 10.5, 30.0, 5.0), (11.0, 11.5, 31.0, 6.0), (12.0, 12.5, 32.0, 7.0)]):
        runs += [run("model=vae", "vae", "elbo", seed, a, counts=[100] * 10),
                 run("divergence=js,model=gan", "gan", "js", seed, b,
                     counts=[50] * 10 if seed else [0, 200, 100, 100, 100, 100, 100, 100, 100, 100]),
                 run("divergence=kl,model=gan", "gan", "kl", seed, c),
                 run("divergence=js,model.packing=4,model=gan", "gan", "js", seed, pac),
                 run("divergence=least_squares,model.least_squares_labels=[0,1,1],model=gan", "gan", "least_squares",
                     seed, None, status="failed")]
    runs.append(run("divergence=kl,model=gan", "gan", "kl", 3, None, status="failed"))
    return {"runs": runs}


def test_members_are_labelled_by_family_divergence_and_recipe(records):
    assert list(image_study.members(records["runs"])) == ["vae", "gan/js", "gan/kl", "gan/js · PacGAN4",
                                                          "gan/least_squares · LSGAN's 0-1 labels"]


def test_the_table_bolds_the_best_and_its_ties_and_counts_failed_seeds(records):
    table = image_study.study_table(records).splitlines()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table[2:]}
    # FD means 11, 11.5, 31, 6 (SE 0.577 each): PacGAN4 best; 11 and 11.5 are 0.5 apart, far more than 2 SE from 6
    assert rows["gan/js · PacGAN4"][3] == "**6.00 ± 0.58**" and rows["vae"][3] == "11.00 ± 0.58"
    assert rows["gan/kl"][1:3] == ["3", "1"]  # three completed seeds, one failed
    # class KL: every member 0.5 exactly, no spread at all: every one on par with the best
    assert all(row[9].startswith("**0.5") for name, row in rows.items() if "LSGAN" not in name)
    assert rows["gan/least_squares · LSGAN's 0-1 labels"][1:4] == ["0", "3", "–"]  # every seed failed: no values


def test_the_reading_words_each_comparison_by_the_two_se_rule(records):
    lines = image_study.reading(records).splitlines()
    fd = next(line for line in lines if line.startswith("- **FD**"))
    assert fd == "- **FD**: best mean gan/js · PacGAN4 (6.00 ± 0.58); ahead of every other member beyond two SEs."
    gans = next(line for line in lines if line.startswith("- **FD, GANs only**"))
    assert "best mean gan/js · PacGAN4" in gans and "vae" not in gans
    assert ("- **Stability**: runs stopped by non-finite losses: gan/kl (1 of 4 seeds), gan/least_squares · LSGAN's "
            "0-1 labels (3 of 3 seeds). Widest spread over seeds (SE of FD): vae (0.58), gan/js (0.58), gan/kl "
            "(0.58).") in lines
    assert "- **Classes dropped** (under half their 10 % share, seed means): vae 0, gan/js 0 of 10." in lines
    assert "- **gan/js · PacGAN4** against the shared recipe: FD better." in lines
    class_kl = next(line for line in lines if line.startswith("- **class KL**"))  # every member at 0.5 exactly
    assert "on par with it: gan/js (0.5 ± 0), gan/kl (0.5 ± 0)" in class_kl


def test_class_shares_are_seed_means_of_each_runs_histogram(records):
    js = image_study.members(records["runs"])["gan/js"]
    shares = image_study.class_shares(js)
    # seed 0: 0 % T-shirt, 20 % trouser, 10 % the rest; seeds 1, 2: 10 % everywhere
    assert shares[:3] == pytest.approx([2 / 30, 0.4 / 3, 0.1])
    assert "| gan/js | 6.7 | 13.3 | 10.0 |" in image_study.classes_table(records)
    assert image_study._share_text(0.049) == "**4.9**" and image_study._share_text(0.05) == "5.0"  # under half of 10 %


def test_spearman_matches_scipy_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [3.0, 1.0, 2.0, 2.0, 5.0, 0.5], [10.0, 2.0, 2.0, 7.0, 9.0, 1.0]
    assert image_study.spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic, rel=1e-12)
    assert image_study.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert not math.isnan(image_study.spearman(a, b))


def test_the_floor_table_gives_each_resolution_its_own_feature_space():
    names = ("fid", "kid", "precision", "recall", "density", "coverage", "class_kl")
    rows = [{"resolution": r, "seed": s, "metrics": {f"{name}_{'fmnist16' if r == 16 else 'fmnist'}": value + s
                                                     for name in names}}
            for r, value in ((16, 1.0), (28, 5.0)) for s in (0, 1, 2)]
    table = image_study.floor_table({"rows": rows, "command": "cmd", "commit": "abcdef0123", "machine": "m"})
    assert "| 16×16 (`fmnist16` space) | 3 | 2.00 ± 0.58 |" in table
    assert "| 28×28 (`fmnist` space) | 3 | 6.00 ± 0.58 |" in table
    assert "`cmd` at `abcdef0` on m" in table
