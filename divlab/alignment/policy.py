"""The alignment family's policies: the frozen reference π_ref, and what every method measures on π.

π_ref is a checkpoint of the sequence family (`model=ar`, any backbone), given as
`policy.ckpt_path=<run>/checkpoints/<name>.ckpt` (or a Hugging Face causal LM, `policy.hf_model=`:
`hf_policy.py`); its run's `run.json` (written by train.py beside
`checkpoints/`) says which backbone and which text data (and so which tokenizer) it was trained
with. When no checkpoint is given, a small character-level GPT of the `char_gpt` recipe is trained
on Shakespeare once and cached under `<data_dir>/alignment/`: the full `char_gpt` run (4×128, 2,000
steps) costs more CPU time than a whole frontier should, while a 2-layer, 96-wide model after a
thousand steps already writes word-like text whose sentiment VADER can score, which is all the
controlled task needs. Every later run (and every member of a sweep) reuses that cached policy.

Shared by DPO, PPO and the reward model: sequence log-probabilities, rollouts from prompts, and
`evaluate_policy` — the true reward of fresh samples and KL(π‖π_ref) estimated on them.
"""
import copy
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from divlab.alignment.true_reward import sentiment_reward
from divlab.callbacks.media import log_text_samples
from divlab.callbacks.progress import progress_bar
from divlab.checkpoints import check_targets
from divlab.datamodules.preferences import PreferenceDataModule, corpus_prefixes
from divlab.eval_mode import eval_mode
from divlab.lightning_modules.alignment_objectives import sequence_kl_estimate
from divlab.lightning_modules.autoregressive import AutoregressiveModel
from divlab.tracking.run_record import RUN_FILE

log = logging.getLogger("divlab.alignment")

# The default reference policy: the char_gpt recipe (GPT, AdamW, Shakespeare at character level), smaller.
DEFAULT_POLICY = {"n_layer": 2, "n_head": 2, "n_embd": 96, "block_size": 64, "batch_size": 32,
                  "steps": 1200, "lr": 2.0e-3, "seed": 0}
DEFAULT_TEXT = {"_target_": "divlab.datamodules.text.TextDataModule", "tokenizer": "char"}


class ReferencePolicy(NamedTuple):
    model: AutoregressiveModel  # frozen, eval mode
    text: object  # the TextDataModule it was trained on: its tokenizer (encode/decode) and corpus
    ckpt_path: str


def load_reference_policy(ckpt_path: str | None = None, data_dir: str = "~/.cache/divlab/data",
                          default: dict | None = None, hf_model: str | None = None) -> ReferencePolicy:
    """π_ref from `ckpt_path`, a Hugging Face causal LM `hf_model` (`hf_policy.py`), or the default policy
    (trained once, cached under `data_dir/alignment`)."""
    data_dir = str(Path(data_dir).expanduser())
    if hf_model is not None:
        if ckpt_path is not None:
            raise ValueError("give policy.ckpt_path or policy.hf_model, not both")
        from divlab.alignment.hf_policy import load_hf_policy  # needs the optional transformers

        return load_hf_policy(str(hf_model), data_dir)
    if ckpt_path is None:
        ckpt_path = str(default_policy_checkpoint(data_dir, {**DEFAULT_POLICY, **(default or {})}))
    return _load(str(Path(ckpt_path).expanduser()), data_dir)


@functools.lru_cache(maxsize=4)
def _load(ckpt_path: str, data_dir: str) -> ReferencePolicy:
    """Cached per process: the data and the model of a run (and every job of a sweep) share one π_ref."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"policy.ckpt_path={ckpt_path!r} does not exist; pass a checkpoint of the sequence family "
            "(python train.py experiment=char_gpt writes <run>/checkpoints/last.ckpt), or leave "
            "policy.ckpt_path null to use the default reference policy"
        )
    run_json = path.parent.parent / RUN_FILE
    if not run_json.is_file():
        raise ValueError(f"policy.ckpt_path={ckpt_path!r}: no {RUN_FILE} in {path.parent.parent} to say which "
                         "backbone and text data it was trained with (expected <run>/checkpoints/<ckpt>)")
    config = json.loads(run_json.read_text())["config"]
    if "backbone" not in (config.get("model") or {}) or "data" not in config:
        raise ValueError(f"policy.ckpt_path={ckpt_path!r} is not a sequence-family run (model.backbone and data "
                         f"missing from {run_json}); train one with model=ar")
    check_targets({"data": config["data"], "backbone": config["model"]["backbone"]}, str(run_json))
    text = hydra.utils.instantiate({**config["data"], "data_dir": data_dir})
    backbone = hydra.utils.instantiate(config["model"]["backbone"])
    model = AutoregressiveModel.load_from_checkpoint(path, map_location="cpu", backbone=backbone, optimizer=None,
                                                     weights_only=True)
    if model.hparams.vocab_size != text.vocab_size:
        raise ValueError(f"policy.ckpt_path={ckpt_path!r} has vocab_size {model.hparams.vocab_size} but its "
                         f"data's tokenizer has {text.vocab_size}")
    return ReferencePolicy(freeze(model), text, ckpt_path)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def trainable_copy(reference: ReferencePolicy) -> AutoregressiveModel:
    """π initialised at π_ref (the usual start of both RLHF and DPO)."""
    policy = copy.deepcopy(reference.model)
    policy.requires_grad_(True)
    return policy.train()


def default_policy_checkpoint(data_dir: str, settings: dict) -> Path:
    """The cached default policy's checkpoint, trained here first when missing (atomic, so concurrent runs agree)."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(data_dir) / "alignment" / f"reference-{key}"
    ckpt = root / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        return ckpt
    (Path(data_dir) / "alignment").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=Path(data_dir) / "alignment", prefix=".build-"))
    log.info("training the default reference policy once (%d steps of a %d-layer char GPT on Shakespeare); "
             "cached in %s for every later run", settings["steps"], settings["n_layer"], root)
    train_default_policy(settings, data_dir, tmp)
    try:
        os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return ckpt


def train_default_policy(settings: dict, data_dir: str, out: Path) -> None:
    """Maximum likelihood on Shakespeare's characters with the `ar` family, as `experiment=char_gpt` does."""
    data = {**DEFAULT_TEXT, "block_size": settings["block_size"], "batch_size": settings["batch_size"],
            "batches_per_epoch": settings["steps"]}
    backbone = {"_target_": "divlab.lightning_modules.networks.gpt.GPT", "_partial_": True,
                **{k: settings[k] for k in ("n_layer", "n_head", "n_embd")}}
    text = hydra.utils.instantiate({**data, "data_dir": data_dir})
    with torch.random.fork_rng():
        torch.manual_seed(settings["seed"])
        model = AutoregressiveModel((settings["block_size"],), hydra.utils.instantiate(backbone),
                                    functools.partial(torch.optim.AdamW, lr=settings["lr"]), vocab_size=text.vocab_size)
        trainer = L.Trainer(max_steps=settings["steps"], accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
                            callbacks=[progress_bar(every_n_steps=max(1, settings["steps"] // 10))])
        trainer.fit(model, train_dataloaders=text.train_dataloader())
    (out / "checkpoints").mkdir()
    trainer.save_checkpoint(out / "checkpoints" / "last.ckpt")
    (out / RUN_FILE).write_text(json.dumps({"family": "ar", "status": "completed",
                                            "config": {"model": {"backbone": backbone}, "data": data}}, indent=1))


def preference_file(policy: dict, path: str, **datamodule_kwargs) -> PreferenceDataModule:
    """A user's JSON/JSONL pairs (`data=preferences data.path=...`), tokenised by the reference policy's tokenizer."""
    reference = load_reference_policy(**policy)
    datamodule_kwargs.setdefault("max_length", reference.model.block_size - 1)  # + BOS fits the context
    return PreferenceDataModule(reference.text.encode, path=path, decode=reference.text.decode, **datamodule_kwargs)


# ---- what every method measures ----------------------------------------------------------------


def completion_mask(prompt_length: int, total_length: int, batch_size: int, device=None) -> Tensor:
    """[B, T] with 1 on the completion positions t ≥ prompt_length (the mask of `alignment_objectives`)."""
    return (torch.arange(total_length, device=device) >= prompt_length).long().expand(batch_size, -1)


def read_sequence(model: AutoregressiveModel, tokens: Tensor) -> Tensor:
    """The backbone's outputs [B, T + 1, V] on [BOS, tokens]: position i has read BOS and tokens[:, :i].

    Positions 0..T−1 are the `ar` family's next-token logits for tokens 0..T−1; position T has read
    the whole sequence (where a reward head reads it). T + 1 must fit the backbone's context.
    """
    bos = torch.full_like(tokens[:, :1], model.bos)
    return model.backbone(torch.cat([bos, tokens], 1))


class ScalarHead(torch.nn.Module):
    """A scalar per position (value or reward) read linearly from the backbone's output logits.

    Reading the logits instead of the last hidden state keeps every sequence backbone (GPT, S4D,
    Mamba) usable unchanged; for the GPT the logits are E·LayerNorm(h) with the tied embedding E of
    rank n_embd < vocab, so a linear head on them is exactly a linear head on the final hidden state.
    Starts at 0: a value or reward of 0 everywhere.
    """

    def __init__(self, vocab_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(vocab_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, logits: Tensor) -> Tensor:
        return self.linear(logits.float()).squeeze(-1)


def sequence_logprobs(model: AutoregressiveModel, tokens: Tensor, mask: Tensor) -> Tensor:
    """log π(y | x) = Σ_t mask_t log π(tokens_t | tokens_<t) per sequence [B]; prompt and padding masked out.

    The `ar` family predicts every token, the first from BOS, so mask may be 1 anywhere after the prompt.
    """
    return (model.token_log_likelihoods(tokens) * mask).sum(-1)


def rollout(model: AutoregressiveModel, prompts: Tensor, max_new_tokens: int) -> tuple[Tensor, Tensor]:
    """y ∼ π(·|x) at temperature 1 (so log-ratios on it estimate KL): tokens [B, P + L] and completion mask."""
    with eval_mode(model):
        tokens = model.sample(prompts.shape[0], prompt=prompts, max_new_tokens=max_new_tokens)
    return tokens, completion_mask(prompts.shape[1], tokens.shape[1], tokens.shape[0], tokens.device)


def decode_completions(decode, tokens: Tensor, prompt_length: int) -> list[str]:
    return [decode(row) for row in tokens[:, prompt_length:].cpu()]


def eval_prompts(reference: ReferencePolicy, n: int, length: int, seed: int = 0) -> Tensor:
    """`n` fixed prompts of `length` tokens: prefixes at word starts of the policy's validation text."""
    return token_prefixes(reference.text, reference.text.decode(reference.text.tokens["val"][:200_000]), n, length, seed)


def token_prefixes(text, corpus: str, n: int, length: int, seed: int) -> Tensor:
    """[n, length] token ids of prefixes at word starts of `corpus`, tokenised by `text`.

    Cut from `length` characters at character level; a subword tokenizer's prefixes are cut from
    4× its mean characters per token (`text.chars_per_token`), then to `length` tokens.
    """
    ratio = getattr(text, "chars_per_token", 1.0)
    chars = length if ratio == 1 else math.ceil(4 * ratio * length)
    prefixes = corpus_prefixes(corpus, n, chars, torch.Generator().manual_seed(seed))
    prompts = [text.encode(p)[:length] for p in prefixes]
    if min(len(p) for p in prompts) < length:
        raise ValueError(f"a prompt of {chars} characters has fewer than {length} tokens; use a shorter prompt_length")
    return torch.stack(prompts)


class PolicyEvaluation(NamedTuple):
    true_reward: float  # mean r*(x, y) over fresh samples y ∼ π
    kl_to_ref: float  # mean Σ_t log π/π_ref over the same samples: KL(π ‖ π_ref) per sequence, in nats
    texts: list[str]  # prompt + completion, as text


@torch.no_grad()
def evaluate_policy(policy: AutoregressiveModel, reference: AutoregressiveModel, prompts: Tensor,
                    max_new_tokens: int, decode, seed: int = 0) -> PolicyEvaluation:
    """True reward and KL(π‖π_ref) of fresh samples of `policy` on fixed prompts.

    Sampled with a fixed seed (common random numbers: evaluations of two policies, or of one
    policy at two steps, differ by the policy, not by sampling noise), without disturbing the
    global random state.
    """
    prompts = prompts.to(policy.device)
    with torch.random.fork_rng(devices=[policy.device] if policy.device.type == "cuda" else []):
        torch.manual_seed(seed)
        tokens, mask = rollout(policy, prompts, max_new_tokens)
    kl = sequence_kl_estimate(policy.token_log_likelihoods(tokens), reference.token_log_likelihoods(tokens), mask)
    completions = decode_completions(decode, tokens, prompts.shape[1])
    texts = [decode(row) for row in tokens.cpu()]
    return PolicyEvaluation(sentiment_reward(completions).mean().item(), kl.mean().item(), texts)


class PolicyEvaluator:
    """What DPO and PPO log at every validation: `val/true_reward`, `val/kl_to_ref`, `val/ref_true_reward`
    (the reference's own reward on the same prompts: the frontier's baseline) and a text sample table."""

    def __init__(self, reference: ReferencePolicy, n_prompts: int = 128, prompt_length: int = 8,
                 completion_length: int = 32, n_texts: int = 8, seed: int = 0):
        self.reference = reference
        self.prompts = eval_prompts(reference, n_prompts, prompt_length, seed)
        self.completion_length, self.n_texts, self.seed = completion_length, n_texts, seed
        self._reference_reward = None

    def evaluate(self, policy: AutoregressiveModel) -> PolicyEvaluation:
        return evaluate_policy(policy, self.reference.model, self.prompts, self.completion_length,
                               self.reference.text.decode, self.seed)

    def log(self, module: L.LightningModule, policy: AutoregressiveModel, split: str = "val") -> PolicyEvaluation:
        result = self.evaluate(policy)
        if self._reference_reward is None:
            self._reference_reward = evaluate_policy(self.reference.model.to(module.device), self.reference.model,
                                                     self.prompts, self.completion_length,
                                                     self.reference.text.decode, self.seed).true_reward
        module.log_dict({f"{split}/true_reward": result.true_reward, f"{split}/kl_to_ref": result.kl_to_ref,
                         f"{split}/ref_true_reward": self._reference_reward}, prog_bar=True, sync_dist=True)
        if not module.trainer.sanity_checking:
            write_text_samples(module.trainer, f"{split}/samples", result.texts[: self.n_texts])
        return result


@rank_zero_only
def write_text_samples(trainer, key: str, texts: list[str]) -> Path:
    """`<output_dir>/samples/<key>_step<N>.txt` always, and a W&B table when W&B logs the run."""
    folder = Path(trainer.default_root_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key.replace('/', '_')}_step{trainer.global_step:07d}.txt"
    path.write_text("\n".join(repr(text) for text in texts) + "\n", encoding="utf-8")
    log_text_samples(trainer, key, texts)
    return path
