"""The TRL comparison (benchmarks/dpo_vs_trl.py): its shared DPO-loss scoring against an independent
computation, its tokenizer's prompt/completion boundary, and a tiny run that prints both tools' rows."""
import importlib.util
import json
import math

import pytest
import torch
import torch.nn.functional as F

from benchmarks import dpo_vs_trl as bench

pytestmark = pytest.mark.usefixtures("single_thread")
needs_trl = pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs trl: pip install 'divlab[bench]'")


def test_without_trl_it_says_so_and_exits_cleanly(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "trl_missing", lambda: "trl")
    assert bench.main(["--out", str(tmp_path / "result.json")]) == 0
    assert "skipped: trl is not installed" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return bench.write_policy(tmp_path_factory.mktemp("policy"), seed=0)


@pytest.fixture(scope="module")
def models(policy_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
    policy = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(1)
        for p in policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return AutoTokenizer.from_pretrained(policy_dir), reference, policy


@needs_trl
def test_prompt_and_completion_tokenise_as_their_concatenation(models):
    tokenizer = models[0]
    record = bench.make_pairs(1, seed=3)[0]
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert ids(record["prompt"] + record["chosen"]) == ids(record["prompt"]) + ids(record["chosen"])
    chosen = ids(record["chosen"])
    assert chosen[-1] == tokenizer.eos_token_id == tokenizer.bos_token_id
    assert len(chosen) == bench.COMPLETION_CHARS + 1 and tokenizer.unk_token_id not in chosen


@needs_trl
def test_dpo_loss_is_log_2_for_a_policy_equal_to_its_reference(models):
    tokenizer, reference, _ = models
    pairs = bench.make_pairs(4, seed=1)
    assert bench.dpo_loss(reference, reference, tokenizer, pairs, beta=0.1) == pytest.approx(math.log(2), abs=1e-6)


def brute_force_logprob(model, ids: list[int], start: int) -> float:
    """Σ_{t ≥ start} log p(ids[t] | ids[:t]), one forward pass per token."""
    total = 0.0
    for t in range(start, len(ids)):
        logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
        total += logits.log_softmax(-1)[ids[t]].item()
    return total


@needs_trl
@torch.no_grad()
def test_dpo_loss_equals_a_token_by_token_computation(models):
    tokenizer, reference, policy = models
    pairs = bench.make_pairs(2, seed=2)
    beta = 0.5
    losses = []
    for r in pairs:
        prompt = [tokenizer.bos_token_id, *tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]]
        logratio = {}
        for key in ("chosen", "rejected"):
            ids = prompt + tokenizer(r[key], add_special_tokens=False)["input_ids"]
            logratio[key] = (brute_force_logprob(policy, ids, len(prompt))
                             - brute_force_logprob(reference, ids, len(prompt)))
        losses.append(-F.logsigmoid(torch.tensor(beta * (logratio["chosen"] - logratio["rejected"]))).item())
    ours = bench.dpo_loss(policy, reference, tokenizer, pairs, beta)
    assert abs(ours - math.log(2)) > 0.01  # the perturbed policy is not its reference
    assert ours == pytest.approx(sum(losses) / len(losses), abs=1e-5)


@needs_trl
def test_a_tiny_run_prints_divlab_s_and_trl_s_rows(tmp_path, capsys):
    out = tmp_path / "result.json"
    assert bench.main(["--steps", "3", "--repeats", "1", "--warmup", "0", "--pairs", "20", "--batch-size", "16",
                       "--lr", "1e-3", "--arms", "divlab", "trl_precomputed", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| arm | ms per step | whole run (s) | held-out DPO loss | training-pairs DPO loss |" in printed
    for row in ("| divlab |", "| TRL, π_ref precomputed |", "| throughput: TRL, π_ref precomputed ms/step ÷ divlab"):
        assert row in printed
    # a full batch of the 16 training pairs: data order cannot differ, so equal math gives equal losses
    written = json.loads(out.read_text())
    assert "python benchmarks/dpo_vs_trl.py --steps 3" in written["command"] and written["wall_s"] > 0
    summary = written["rows"][0]
    assert summary["divlab"]["train_loss"] == pytest.approx(summary["trl_precomputed"]["train_loss"], abs=1e-5)
    assert summary["divlab"]["train_loss"] < math.log(2) - 0.05
