"""The performance page's benchmark blocks: hand-made summaries with known numbers give known cells, a goal is
met only at or past its boundary, a missing record says how to make it, and a committed record's changed digit
makes the page stale."""
import json
import shutil
import subprocess

import pytest

from benchmarks.provenance import ROOT as BENCHMARKS_ROOT
from benchmarks.provenance import command_line, git_commit
from divlab.cli import results
from divlab.tracking import benchmark_tables as bt
from divlab.tracking.doc_blocks import rebuild
from divlab.tracking.results_tables import generator

PROVENANCE = {"command": "python benchmarks/x.py --threads 1", "commit": "abc1234", "date": "2026-12-06T13:48:40+00:00",
              "machine": "Some CPU, 2 CPUs", "torch": "2.14.1", "threads": 1, "wall_s": 330.0}
ROOT_PAGE = bt.ROOT / "docs" / "results" / "performance.md"


def char_summary(nanogpt_ms=(12.0, 12.6), divlab_ms=(10.0, 10.0), steps=2000, threads=1) -> dict:
    walls = ((60.0, 55.0), (62.0, 57.0))
    rows = [{"repeat": i, "nanogpt": {"wall_s": walls[i][0], "ms_per_step": nanogpt_ms[i], "heldout_loss": 1.9},
             "divlab": {"wall_s": walls[i][1], "ms_per_step": divlab_ms[i], "heldout_loss": 1.905}}
            for i in range(len(nanogpt_ms))]
    return {**PROVENANCE, "steps": steps, "threads": threads, "repeats": len(rows), "precision": "float32",
            "tokens_per_step": 768, "rows": rows}


def dpo_summary() -> dict:
    seconds = {"divlab": (0.020, 0.022, 0.021), "trl_precomputed": (0.024, 0.024, 0.024),
               "trl_default": (0.040, 0.041, 0.039)}
    rows = [{"repeat": i, **{arm: {"wall_s": 30.0 + i, "s_per_step": s[i], "heldout_loss": 0.6, "train_loss": 0.5}
                             for arm, s in seconds.items()}} for i in range(3)]
    return {**PROVENANCE, "trl": "0.20.0", "steps": 30, "batch_size": 8, "repeats": 3, "precision": "float32",
            "arms": list(seconds), "step0_loss": 0.6931, "rows": rows}


COMMITTED_RECORDS = bt.BENCHMARK_RECORDS


@pytest.fixture
def records(tmp_path, monkeypatch):
    monkeypatch.setattr(bt, "BENCHMARK_RECORDS", tmp_path)
    return tmp_path


def write(folder, name: str, summary: dict) -> None:
    (folder / f"{name}.json").write_text(json.dumps(summary))


def lines_of(text: str) -> set[str]:
    return set(text.splitlines())


def test_char_gpt_cells_are_medians_and_per_repeat_ratios(records):
    write(records, "char_gpt_vs_nanogpt_1thread", char_summary())
    text = generator("benchmark/char_gpt_vs_nanogpt_1thread")()
    # medians: nanoGPT (12.0 + 12.6) / 2 ms, 768 tokens a step; walls (60 + 62) / 2 and (55 + 57) / 2
    assert "| nanoGPT | 12.3 | 62,439 | 61.0 | 1.9000 |" in lines_of(text)
    assert "| divlab | 10.0 | 76,800 | 56.0 | 1.9050 |" in lines_of(text)
    # per-repeat throughput 12.0/10 and 12.6/10: median 1.23, range 1.20–1.26, past the 1.10 goal
    assert ("| throughput: nanoGPT ms/step ÷ divlab's | 1.230× | 1.200× – 1.260× | ≥ 1.10× | ✓ |"
            in lines_of(text))
    # whole run 60/55 = 1.0909 and 62/57 = 1.0877
    assert "| whole run: nanoGPT ÷ divlab | 1.089× | 1.088× – 1.091× | ≥ 1.00× | ✓ |" in lines_of(text)
    assert ("| held-out loss (nats/char): divlab − nanoGPT | +0.0050 | +0.0050 | ≤ +0.01 | ✓ |"
            in lines_of(text))
    assert "| 1 | nanoGPT | 12.6 | 60,952 | 62.0 | 1.9000 |" in lines_of(text)  # every repeat


def test_provenance_names_command_commit_machine_date_and_wall_time(records):
    write(records, "dpo_vs_trl", dpo_summary())
    text = bt.benchmark("dpo_vs_trl")
    for line in ("- **Command:** `python benchmarks/x.py --threads 1`", "- **Commit:** `abc1234`",
                 "- **Machine:** Some CPU, 2 CPUs; torch 2.14.1, TRL 0.20.0; 1 thread(s) a process",
                 "- **Date:** 2026-12-06 13:48 UTC; **wall time:** 5.5 min, the whole benchmark",
                 "- **Record:** [`records/benchmarks/dpo_vs_trl.json`](records/benchmarks/dpo_vs_trl.json) "
                 "(3 repeat(s) of 30 steps, the arms alternated in each)"):
        assert line in lines_of(text)


def test_dpo_is_judged_against_trl_precomputed_with_trl_default_its_own_row(records):
    write(records, "dpo_vs_trl", dpo_summary())
    text = bt.benchmark("dpo_vs_trl")
    assert "| divlab | 21.0 | 31.0 | 0.6000 | 0.5000 |" in lines_of(text)
    assert "| TRL default | 40.0 | 31.0 | 0.6000 | 0.5000 |" in lines_of(text)
    # 24/20, 24/22, 24/21: median 1.143
    assert ("| throughput: TRL, π_ref precomputed ms/step ÷ divlab's | 1.143× | 1.091× – 1.200× | ≥ 1.00× | ✓ |"
            in lines_of(text))
    assert "| held-out DPO loss: divlab − TRL, π_ref precomputed | +0.0000 | +0.0000 | – | – |" in lines_of(text)
    assert "held-out DPO loss at step 0 0.6931" in text
    assert "TRL default ms/step" not in text  # the like-for-like arm only


@pytest.mark.parametrize("nanogpt_ms, met", [(11.0, "✓"), (10.99, "not met")])
def test_a_tick_only_at_or_past_the_goal(records, nanogpt_ms, met):
    write(records, "char_gpt_vs_nanogpt_2threads", char_summary((nanogpt_ms,) * 2, (10.0, 10.0)))
    table = bt.benchmark("char_gpt_vs_nanogpt_2threads")
    throughput = next(line for line in table.splitlines() if line.startswith("| throughput"))
    assert throughput.endswith(f"| ≥ 1.10× | {met} |")


def test_a_missing_planned_record_says_how_to_make_it(records):
    assert bt.benchmark("dpo_vs_trl") == (
        "Not measured yet: run `OMP_NUM_THREADS=1 python benchmarks/dpo_vs_trl.py --steps 30 --repeats 3 --out "
        "docs/results/records/benchmarks/dpo_vs_trl.json` and commit its JSON to "
        "docs/results/records/benchmarks/dpo_vs_trl.json.")
    with pytest.raises(FileNotFoundError):
        bt.benchmark("dpo_vs_trl_unplanned")
    with pytest.raises(KeyError):
        bt.benchmark("resnet_vs_timm")


def test_a_changed_record_makes_the_page_stale_until_rebuilt_and_a_changed_digit_is_caught(records):
    for committed in COMMITTED_RECORDS.glob("*.json"):  # the records the page was built from
        shutil.copy(committed, records)
    page = ROOT_PAGE.read_text()
    assert "<!-- results:benchmark/dpo_vs_trl -->" in page
    assert ROOT_PAGE not in results.stale_pages()
    summary = dpo_summary()
    write(records, "dpo_vs_trl", summary)
    filled = results.stale_pages()[ROOT_PAGE]  # a record changed without `divlab results build`: stale
    assert "| throughput: TRL, π_ref precomputed ms/step ÷ divlab's | 1.143×" in filled
    assert rebuild(filled, generator) == filled
    summary["rows"][0]["divlab"]["s_per_step"] = 0.030  # one changed digit in the record
    write(records, "dpo_vs_trl", summary)
    assert rebuild(filled, generator) != filled


def test_the_command_is_the_script_relative_to_the_root_with_its_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    script = BENCHMARKS_ROOT / "benchmarks" / "dpo_vs_trl.py"
    assert command_line(script, ["--steps", "30", "--note", "a b"]) == (
        "OMP_NUM_THREADS=2 python benchmarks/dpo_vs_trl.py --steps 30 --note 'a b'")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert command_line(script, []) == "python benchmarks/dpo_vs_trl.py"
    commit = git_commit()
    assert commit == "unknown" or len(commit.removesuffix("+dirty")) >= 7


def test_the_commit_is_dirty_for_changed_code_not_for_changed_results(tmp_path):
    # A batch of benchmarks writes its records one after another: the earlier ones, uncommitted, are not code.
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "docs/results/records").mkdir(parents=True)
    (tmp_path / "docs/results/records/a.json").write_text("{}")
    (tmp_path / "model.py").write_text("x = 1\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    (tmp_path / "docs/results/records/a.json").write_text('{"ratio": 1.1}')
    assert not git_commit(tmp_path).endswith("+dirty")
    (tmp_path / "model.py").write_text("x = 2\n")
    assert git_commit(tmp_path).endswith("+dirty")


def test_the_whole_run_goal_is_judged_only_at_the_run_length_it_is_set_for(records):
    write(records, "char_gpt_vs_nanogpt_1thread", char_summary(steps=400))
    assert "| whole run: nanoGPT ÷ divlab | 1.089× | 1.088× – 1.091× | – | – |" in lines_of(
        bt.benchmark("char_gpt_vs_nanogpt_1thread"))


def test_pooled_ratios_are_every_repeat_of_every_record_judged_against_the_goal_by_two_ses(records):
    # 1 thread: repeats 1.20, 1.26 (one record) and 1.12, 1.14 (another): mean 1.18, SE 0.0316; 1.18 − 2 SE > 1.10.
    write(records, "char_gpt_vs_nanogpt_1thread", char_summary(steps=400))
    write(records, "char_gpt_vs_nanogpt_2000steps_seed0", char_summary(nanogpt_ms=(11.2, 11.4)))
    # 2 threads: 1.12 and 1.20, mean 1.16 ± 0.04: 1.5 SEs past 1.10, so within two SEs of it (not met).
    write(records, "char_gpt_vs_nanogpt_2threads", char_summary(nanogpt_ms=(11.2, 12.0), threads=2, steps=400))
    text = lines_of(bt.pooled("char_gpt_vs_nanogpt"))
    assert ("| throughput: nanoGPT ms/step ÷ divlab's | 1 | "
            "cpu, float32, eager | all | 4 (`char_gpt_vs_nanogpt_1thread`, "
            "`char_gpt_vs_nanogpt_2000steps_seed0`) | 1.180 ± 0.032× | ≥ 1.10× | met beyond two SEs |") in text
    assert ("| throughput: nanoGPT ms/step ÷ divlab's | 2 | "
            "cpu, float32, eager | all | 2 (`char_gpt_vs_nanogpt_2threads`) | "
            "1.160 ± 0.040× "
            "| ≥ 1.10× | within two SEs |") in text
    # The whole run pooled by length; its goal only at 2,000 steps (60/55 and 62/57: 1.0893 ± 0.0016 ≥ 1.00).
    assert ("| whole run: nanoGPT ÷ divlab | 1 | "
            "cpu, float32, eager | 2000 | 2 (`char_gpt_vs_nanogpt_2000steps_seed0`) | "
            "1.0893 ± 0.0016× "
            "| ≥ 1.00× | met beyond two SEs |") in text
    assert ("| whole run: nanoGPT ÷ divlab | 1 | "
            "cpu, float32, eager | 400 | 2 (`char_gpt_vs_nanogpt_1thread`) | 1.0893 ± 0.0016× "
            "| – | – |") in text


def test_compiled_records_pool_apart_from_eager_ones_and_carry_no_speed_goal(records):
    # eager, 1 thread: 1.20 and 1.26; compiled, 1 thread: 1.12 and 1.14 (mean 1.130 ± 0.010), shown without a goal.
    write(records, "char_gpt_vs_nanogpt_1thread", char_summary(steps=400))
    write(records, "char_gpt_vs_nanogpt_compiled", {**char_summary(nanogpt_ms=(11.2, 11.4)), "compile": True})
    text = lines_of(bt.pooled("char_gpt_vs_nanogpt"))
    assert ("| throughput: nanoGPT ms/step ÷ divlab's | 1 | "
            "cpu, float32, eager | all | 2 (`char_gpt_vs_nanogpt_1thread`) | "
            "1.230 ± 0.030× | ≥ 1.10× | met beyond two SEs |") in text
    assert ("| throughput: nanoGPT ms/step ÷ divlab's | 1 | "
            "cpu, float32, compiled | all | 2 (`char_gpt_vs_nanogpt_compiled`) | "
            "1.130 ± 0.010× | – | – |") in text
    # 2,000 steps, where the eager whole run has its goal: none for the compiled one
    assert ("| whole run: nanoGPT ÷ divlab | 1 | cpu, float32, compiled | 2000 | 2 (`char_gpt_vs_nanogpt_compiled`) | "
            "1.0893 ± 0.0016× | – | – |") in text
    record = lines_of(bt.benchmark("char_gpt_vs_nanogpt_compiled"))
    assert ("Medians over 2 repeat(s) of 2000 steps, both arms cpu, float32, compiled (the goals are set for cpu, "
            "float32, eager):") in record
    assert "| throughput: nanoGPT ms/step ÷ divlab's | 1.130× | 1.120× – 1.140× | – | – |" in record
    assert "| whole run: nanoGPT ÷ divlab | 1.089× | 1.088× – 1.091× | – | – |" in record


def test_a_gpu_record_pools_by_its_own_setting_and_carries_no_speed_goal(records):
    # GPU, bf16 (1.12 and 1.14): its own row, after the goals' setting, without the goals.
    write(records, "char_gpt_vs_nanogpt_1thread", char_summary(steps=400))
    write(records, "char_gpt_vs_nanogpt_h100_bf16",
          {**char_summary(nanogpt_ms=(11.2, 11.4), steps=400), "device": "cuda", "precision": "bf16"})
    rows = [line for line in bt.pooled("char_gpt_vs_nanogpt").splitlines() if line.startswith("| throughput")]
    assert rows == [
        "| throughput: nanoGPT ms/step ÷ divlab's | 1 | cpu, float32, eager | all | 2 (`char_gpt_vs_nanogpt_1thread`) "
        "| 1.230 ± 0.030× | ≥ 1.10× | met beyond two SEs |",
        "| throughput: nanoGPT ms/step ÷ divlab's | 1 | cuda, bf16, eager | all | 2 (`char_gpt_vs_nanogpt_h100_bf16`) "
        "| 1.130 ± 0.010× | – | – |"]


def test_the_machine_names_its_gpus_when_cuda_is_there(monkeypatch):
    from benchmarks import provenance

    monkeypatch.setattr(provenance.torch.cuda, "is_available", lambda: False)
    cpu_only = provenance.machine()
    assert cpu_only.endswith(" CPUs")  # no GPU named
    monkeypatch.setattr(provenance.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(provenance.torch.cuda, "device_count", lambda: 3)
    names = ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3", "NVIDIA A100"]
    monkeypatch.setattr(provenance.torch.cuda, "get_device_name", lambda i: names[i])
    assert provenance.machine() == cpu_only + "; 2 × NVIDIA H100 80GB HBM3, 1 × NVIDIA A100"
