"""divlab's DPO against TRL's `DPOTrainer` on the same tiny policy, reference and pairs: float32, one thread.

    python benchmarks/dpo_vs_trl.py [--steps 30] [--repeats 2] [--threads 1] [--seed 0] [--batch-size 8]
        [--lr 1e-4] [--beta 0.1] [--pairs 80] [--out benchmarks/results/dpo_vs_trl.json]

Needs TRL (`pip install 'divlab[bench]'`: trl, datasets, accelerate); without it the benchmark says so and
exits 0. Everything is built here, in a temporary directory, from fixed seeds:

- the policy: a GPT-2 (2 layers, 2 heads, 64 dims, 128 positions, every dropout 0) saved with `save_pretrained`
  with a character-level tokenizer (one token a character, so prompt + completion tokenises as the prompt's
  tokens followed by the completion's) whose one special token `<|endoftext|>` is BOS, EOS and padding;
  π and π_ref both start as it;
- the pairs: random prompts of 8 letters; the chosen completion draws its 12 letters from a–m, the rejected
  from n–z (a preference a policy can learn and carry to held-out prompts); every completion ends with EOS
  (TRL appends one where it is missing; divlab scores what the file holds), and TRL's prompt starts with the
  BOS that divlab's sequence family puts before every sequence, so both score the same tokens in the same
  positions. All prompts and all completions have one length, so neither arm pads. divlab's own split of
  the pairs by prompt (`data.val_fraction`) holds some out: both arms train on the rest, and the held-out
  pairs score the final policies.

Each repeat runs the arms alternated, each as its own process with the same interpreter, torch and
`--threads`: divlab (`python train.py experiment=align_dpo data=preferences policy.hf_model=DIR ...`), TRL with
`precompute_ref_log_probs=True` (π_ref's log-probabilities computed once before training, as divlab caches
them per record: like for like), and TRL's default (π_ref run at every step). Both: β, AdamW (lr, betas
(0.9, 0.999), eps 1e-8, no weight decay), batch size, a constant learning rate with no warm-up, gradient norm
clipped at 1.0 (TRL's `max_grad_norm` default; divlab's `trainer.gradient_clip_val=1.0`), no evaluation during
training, no loggers beyond each tool's own console, no checkpoint before the end, float32 (TRL's `bf16` off)
and no gradient checkpointing (TRL's default is on; divlab has none). Each saves its final policy once.

Measured: seconds per step, the median of the intervals between consecutive step ends past the first
`--warmup` (a Lightning callback in divlab, a `TrainerCallback` in TRL; divlab's π_ref log-probabilities are
computed during its first epoch, TRL's precomputed before its first step), the whole run from process start to
exit, and the DPO loss after `--steps` steps **scored the same way for both** (`dpo_loss`, one function, the
final policy against the saved π_ref), on the held-out pairs and on the training pairs. At step 0, π = π_ref
and the loss is log 2 for both.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.provenance import Provenance  # noqa: E402
from divlab.tracking.benchmark_tables import tables  # noqa: E402

SPECIAL = "<|endoftext|>"
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
CHOSEN, REJECTED = ALPHABET[:13], ALPHABET[13:]
PROMPT_CHARS, COMPLETION_CHARS = 8, 12
POLICY = {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 128}
ADAMW = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
MAX_GRAD_NORM = 1.0
ARMS = ("divlab", "trl_precomputed", "trl_default")


def trl_missing() -> str | None:
    """None when TRL and what it needs import; else the name of the first missing package."""
    for name in ("trl", "datasets", "accelerate", "transformers", "tokenizers"):
        try:
            __import__(name)
        except ImportError:
            return name
    return None


def char_tokenizer():
    """A `PreTrainedTokenizerFast` with one token per letter; `<|endoftext|>` is BOS, EOS, padding (id 0)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {SPECIAL: 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(ALPHABET)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([SPECIAL])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=SPECIAL, eos_token=SPECIAL,
                                   pad_token=SPECIAL, unk_token="<unk>")


def write_policy(folder: Path, seed: int) -> Path:
    """The tiny GPT-2 and its tokenizer, initialised from `seed`, saved with `save_pretrained` into `folder`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = char_tokenizer()
    config = GPT2Config(**POLICY, vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0, pad_token_id=0,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_pairs(n: int, seed: int) -> list[dict]:
    """`n` records {prompt, chosen, rejected}; chosen from a–m, rejected from n–z, each ending with EOS."""
    rng = random.Random(seed)
    draw = lambda letters, k: "".join(rng.choice(letters) for _ in range(k))  # noqa: E731
    return [{"prompt": draw(ALPHABET, PROMPT_CHARS), "chosen": draw(CHOSEN, COMPLETION_CHARS) + SPECIAL,
             "rejected": draw(REJECTED, COMPLETION_CHARS) + SPECIAL} for _ in range(n)]


def split_pairs(records: list[dict], val_fraction: float, data_seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out) as divlab's preference data splits them (by prompt, `data.val_fraction`, `data.data_seed`)."""
    from divlab.datamodules.preferences import split_by_prompt

    held_out = split_by_prompt(records, val_fraction, data_seed)
    return ([r for i, r in enumerate(records) if i not in held_out],
            [r for i, r in enumerate(records) if i in held_out])


def completion_logprob(model, tokenizer, prompt: str, completions: list[str]) -> torch.Tensor:
    """log π(y | BOS + prompt) of each completion [N]: the sum over its tokens, each given all before it."""
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    context = [tokenizer.bos_token_id, *encode(prompt)]
    rows = [context + encode(y) for y in completions]
    length = max(map(len, rows))
    ids = torch.tensor([row + [tokenizer.pad_token_id] * (length - len(row)) for row in rows])
    ends = torch.tensor([len(row) for row in rows])[:, None]
    attention = (torch.arange(length) < ends).long()
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
    logp = logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    positions = torch.arange(1, length)
    mask = (positions >= len(context)) & (positions < ends)
    return (logp * mask).sum(-1)


@torch.no_grad()
def dpo_loss(policy, reference, tokenizer, records: list[dict], beta: float) -> float:
    """The mean DPO loss −log σ(β·[log π/π_ref(y_w|x) − log π/π_ref(y_l|x)]) of `records` (log 2 when π = π_ref)."""
    losses = []
    for record in records:
        completions = [record["chosen"], record["rejected"]]
        ratio = (completion_logprob(policy, tokenizer, record["prompt"], completions)
                 - completion_logprob(reference, tokenizer, record["prompt"], completions))
        losses.append(-F.logsigmoid(beta * (ratio[0] - ratio[1])))
    return torch.stack(losses).mean().item()


def load_divlab_policy(policy_dir: Path, checkpoint: Path):
    """divlab's trained π as the Hugging Face model: its checkpoint's `policy.` weights, matched to the saved
    model's parameter names by suffix (so it survives divlab moving its modules)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
    saved = {k: v for k, v in torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"].items()
             if k.startswith("policy.")}
    state = {}
    for name in model.state_dict():
        matches = [k for k in saved if k.endswith("." + name)]
        if len(matches) != 1:
            raise RuntimeError(f"{checkpoint}: expected one policy weight named *.{name}, found {matches}")
        state[name] = saved[matches[0]]
    model.load_state_dict(state)
    return model


def per_step_seconds(times: list[float], warmup: int) -> float:
    """The median interval between consecutive step ends, past the first `warmup` steps."""
    intervals = [b - a for a, b in zip(times, times[1:])][warmup:]
    return statistics.median(intervals)


def thread_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "TOKENIZERS_PARALLELISM": "false"}


def run(command: list[str], threads: int, name: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=thread_env(threads), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({result.returncode}):\n{result.stdout[-1500:]}\n{result.stderr[-3000:]}")
    return wall


def run_divlab(args, policy_dir: Path, pairs: Path, run_dir: Path) -> dict:
    times = run_dir.parent / f"{run_dir.name}_times.json"
    command = [sys.executable, str(ROOT / "train.py"), "experiment=align_dpo", f"policy.hf_model={policy_dir}",
               "data=preferences", f"data.path={pairs}", f"data.val_fraction={args.val_fraction}",
               f"data.data_seed={args.data_seed}", f"data.batch_size={args.batch_size}", f"model.beta={args.beta}",
               f"model.optimizer.lr={args.lr}", f"model.optimizer.weight_decay={ADAMW['weight_decay']}",
               f"++model.optimizer.betas=[{ADAMW['betas'][0]},{ADAMW['betas'][1]}]",
               f"++model.optimizer.eps={ADAMW['eps']}",
               f"++trainer.max_steps={args.steps}", "++trainer.max_epochs=-1", "++trainer.limit_val_batches=0",
               "++trainer.num_sanity_val_steps=0", f"++trainer.gradient_clip_val={MAX_GRAD_NORM}", "callbacks=none",
               "+callbacks.step_times._target_=benchmarks.step_times.StepTimes", f"+callbacks.step_times.path={times}",
               "logger=none", f"seed={args.seed}", f"hydra.run.dir={run_dir}"]
    wall = run(command, args.threads, "divlab's train.py")
    return {"wall_s": wall, "s_per_step": per_step_seconds(json.loads(times.read_text()), args.warmup),
            "checkpoint": str(run_dir / "checkpoints" / "last.ckpt")}


def run_trl(args, policy_dir: Path, train_pairs: Path, out_dir: Path, precompute: bool) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--trl-arm", str(out_dir), "--policy", str(policy_dir),
               "--pairs-file", str(train_pairs), "--precompute", str(int(precompute)), *forwarded(args)]
    wall = run(command, args.threads, "TRL's DPOTrainer")
    return {"wall_s": wall, "s_per_step": per_step_seconds(json.loads((out_dir / "times.json").read_text()),
                                                           args.warmup), "policy": str(out_dir / "policy")}


def forwarded(args) -> list[str]:
    return [f"--{key.replace('_', '-')}={getattr(args, key)}"
            for key in ("steps", "threads", "seed", "batch_size", "lr", "beta", "warmup")]


def trl_arm(args) -> None:
    """One TRL run (its own process, which never imports divlab): DPOTrainer on the training pairs of
    `--pairs-file`, its step-end times and its final policy saved into `--trl-arm`."""
    torch.set_num_threads(args.threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    out = Path(args.trl_arm)
    times = []

    class StepEnd(TrainerCallback):
        def on_step_end(self, *_, **__):
            times.append(time.perf_counter())

    train = [json.loads(line) for line in Path(args.pairs_file).read_text().splitlines() if line.strip()]
    tokenizer = AutoTokenizer.from_pretrained(args.policy)
    # divlab's sequence family reads every sequence after BOS; TRL reads the prompt as given
    dataset = Dataset.from_list([{**r, "prompt": tokenizer.bos_token + r["prompt"]} for r in train])
    config = DPOConfig(
        output_dir=str(out / "trainer"), per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=ADAMW["weight_decay"],
        adam_beta1=ADAMW["betas"][0], adam_beta2=ADAMW["betas"][1], adam_epsilon=ADAMW["eps"],
        max_grad_norm=MAX_GRAD_NORM, beta=args.beta, precompute_ref_log_probs=bool(args.precompute),
        max_length=POLICY["n_positions"], bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
        report_to=[], save_strategy="no", eval_strategy="no", seed=args.seed)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(args.policy), args=config,
                         processing_class=tokenizer, train_dataset=dataset, callbacks=[StepEnd()])
    trainer.train()
    trainer.model.save_pretrained(out / "policy")
    (out / "times.json").write_text(json.dumps(times))


def score(policy, reference, tokenizer, train: list[dict], held_out: list[dict], beta: float) -> dict:
    return {"train_loss": dpo_loss(policy, reference, tokenizer, train, beta),
            "heldout_loss": dpo_loss(policy, reference, tokenizer, held_out, beta)}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--pairs", type=int, default=80, help="records written, before divlab's held-out split")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--data-seed", type=int, default=1234)
    parser.add_argument("--warmup", type=int, default=3, help="step intervals left out of the per-step median")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="which arms run, in this order")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/dpo_vs_trl.json")
    parser.add_argument("--trl-arm", help=argparse.SUPPRESS)  # internal: run one TRL arm into this folder
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--pairs-file", help=argparse.SUPPRESS)
    parser.add_argument("--precompute", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < args.warmup + 2:
        parser.error(f"--steps {args.steps}: at least --warmup + 2 = {args.warmup + 2} leave an interval to time")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    missing = trl_missing()
    if missing is not None:
        print(f"skipped: {missing} is not installed; the TRL comparison needs `pip install 'divlab[bench]'` "
              "(trl, datasets, accelerate)")
        return 0
    if args.trl_arm:
        trl_arm(args)
        return 0
    started = Provenance.now(__file__, argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        policy_dir = write_policy(tmp / "policy", args.seed)
        records = make_pairs(args.pairs, args.seed)
        pairs = tmp / "pairs.jsonl"
        pairs.write_text("".join(json.dumps(r) + "\n" for r in records))
        train, held_out = split_pairs(records, args.val_fraction, args.data_seed)
        train_pairs = tmp / "train_pairs.jsonl"  # TRL's: the records divlab trains on
        train_pairs.write_text("".join(json.dumps(r) + "\n" for r in train))
        tokenizer = AutoTokenizer.from_pretrained(policy_dir)
        reference = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
        step0 = dpo_loss(reference, reference, tokenizer, held_out, args.beta)
        for repeat in range(args.repeats):
            row = {"repeat": repeat}
            for arm in args.arms:
                if arm == "divlab":
                    result = run_divlab(args, policy_dir, pairs, tmp / f"divlab{repeat}")
                    policy = load_divlab_policy(policy_dir, Path(result.pop("checkpoint")))
                else:
                    result = run_trl(args, policy_dir, train_pairs, tmp / f"{arm}{repeat}", arm == "trl_precomputed")
                    policy = AutoModelForCausalLM.from_pretrained(result.pop("policy")).eval()
                row[arm] = {**result, **score(policy, reference, tokenizer, train, held_out, args.beta)}
                print(f"repeat {repeat} {arm}: {1e3 * row[arm]['s_per_step']:.1f} ms/step, "
                      f"{row[arm]['wall_s']:.1f} s, held-out loss {row[arm]['heldout_loss']:.4f}, "
                      f"training-pairs loss {row[arm]['train_loss']:.4f}", flush=True)
            rows.append(row)
    import trl

    summary = {**started.finished(args.threads), "trl": trl.__version__,
               "steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats, "precision": "float32",
               "arms": args.arms, "train_pairs": len(train), "heldout_pairs": len(held_out), "beta": args.beta,
               "lr": args.lr, "step0_loss": step0, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(tables("dpo_vs_trl", summary))
    print(f"goal: divlab's step ≤ 1.0× TRL's (π_ref precomputed) at equal loss; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
