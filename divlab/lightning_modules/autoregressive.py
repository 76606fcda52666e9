"""Autoregressive models: p(x_1..x_T) = ∏_t p(x_t | x_<t), trained by maximum likelihood.

Maximum likelihood minimises the forward KL(P_X ‖ P_θ) = −H(P_X) − E_X[log p_θ(x)] exactly, so the
model's log-likelihood is exact, not a bound: the reference the VAE's and diffusion's bounds are
compared against.

Begin-of-sequence convention: the backbone reads [BOS, x_1, …, x_{T−1}] and predicts x_1 … x_T,
where BOS is token id `vocab_size` (an input only). Every token of a sequence is predicted,
the first from BOS alone, so log p(x) sums T terms and the probabilities of all V^T sequences of
length T sum to 1. Text windows start anywhere in the corpus; the first token's prediction is the
model's marginal over window starts.
"""
import math

import lightning as L
import torch
import torch.nn.functional as F

from divlab.lightning_modules.contracts import FamilyModule, GenerativeModule, LikelihoodModel
from divlab.lightning_modules.likelihoods import bits_per_character, bits_per_dim, token_log_likelihoods
from divlab.lightning_modules.optim import make_optimizer, with_scheduler
from divlab.lightning_modules.step_logging import is_logging_step
from divlab.validation import check_positive, optimizer_lr


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Keep the k most likely tokens and/or the smallest set whose probability reaches top_p; others → −∞."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        mass_before = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1)
        drop = (mass_before >= top_p).scatter(-1, order, mass_before >= top_p)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class AutoregressiveModel(L.LightningModule, FamilyModule, GenerativeModule, LikelihoodModel):
    family = "ar"
    divergence = "forward_kl"
    validation_metrics = ("loss", "perplexity", "bpc", "bpd")  # bpc on text with characters, else bpd
    draws_training_noise = False  # its text data draws one window offset per global batch, the same on every rank
    log_likelihood_is_exact = True
    log_likelihood_bound = None
    log_likelihood_is_discrete = True  # a probability of the tokens (grey levels), never a density
    log_likelihood_matches_sample = True  # sample(n) at its defaults: temperature 1, no top-k/top-p

    def __init__(
        self,
        data_shape,
        backbone,
        optimizer,
        scheduler=None,
        vocab_size: int | None = None,
        weight_decay: float = 0.1,
        compile: bool = False,
    ):
        """`backbone` is a partial called with `vocab_size` and `block_size` (= data_shape[0]).

        `vocab_size=None` takes it from the DataModule when the Trainer sets the model up
        (`configure_model`), since a text's vocabulary is known only once its corpus is tokenised.
        """
        super().__init__()
        if len(data_shape) != 1:
            raise ValueError(f"the ar family models token sequences of shape (T,), got data_shape={tuple(data_shape)}")
        check_positive("model.weight_decay", weight_decay, allow_zero=True)
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler"])
        self.hparams.update(family=self.family, divergence=self.divergence, lr=optimizer_lr(optimizer))
        self.block_size = int(data_shape[0])
        self.make_backbone, self.optimizer, self.scheduler = backbone, optimizer, scheduler
        self.backbone = None
        self.token_chars = None
        if vocab_size is not None:
            self.build(vocab_size)

    def build(self, vocab_size: int) -> None:
        check_positive("model.vocab_size", vocab_size)
        self.hparams.vocab_size = int(vocab_size)
        self.backbone = self.make_backbone(vocab_size=int(vocab_size), block_size=self.block_size)
        if self.hparams.compile:
            self.backbone.compile()  # in place: the state dict keeps its keys

    def configure_model(self) -> None:
        datamodule = getattr(self._trainer, "datamodule", None)  # None in load_from_checkpoint
        if self.backbone is None:
            if datamodule is None or not hasattr(datamodule, "vocab_size"):
                raise ValueError("model.vocab_size is null and the DataModule has no vocab_size to take it from")
            self.build(datamodule.vocab_size)
        lengths = getattr(datamodule, "token_lengths", None)
        if lengths is not None:  # characters each token covers: turns bits/token into bits/char
            self.token_chars = torch.as_tensor(lengths, dtype=torch.float64)

    @property
    def bos(self) -> int:
        return self.hparams.vocab_size

    def token_log_likelihoods(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_t | x_<t) for every t, [B, T], with x_1 predicted from BOS."""
        inputs = torch.cat([torch.full_like(x[:, :1], self.bos), x[:, :-1]], dim=1)
        return token_log_likelihoods(self.backbone(inputs), x)

    def training_step(self, x: torch.Tensor, batch_idx: int):
        # Forward KL(P_X ‖ P_θ) up to the data entropy: the mean next-token cross-entropy (nats/token).
        loss = -self.token_log_likelihoods(x).mean()
        if is_logging_step(self, batch_idx):
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._totals = torch.zeros(3, dtype=torch.float64, device=self.device)

    def validation_step(self, x: torch.Tensor, batch_idx: int):
        nll = -self.token_log_likelihoods(x).double().sum()
        chars = self.token_chars.to(x.device)[x].sum() if self.token_chars is not None else 0.0
        self._totals += torch.stack([nll, torch.tensor(float(x.numel()), device=x.device, dtype=nll.dtype),
                                     torch.as_tensor(chars, dtype=nll.dtype, device=x.device)])

    def on_validation_epoch_end(self) -> None:
        self._log_totals("val")

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def test_step(self, x: torch.Tensor, batch_idx: int):
        self.validation_step(x, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._log_totals("test")

    def _log_totals(self, split: str) -> None:
        """Token-weighted means over the whole split (summed over ranks): nats/token, perplexity, bits/char|dim."""
        nll, tokens, chars = self.trainer.strategy.reduce(self._totals, reduce_op="sum").tolist()
        if tokens == 0:
            return
        loss = nll / tokens
        metrics = {f"{split}/loss": loss, f"{split}/perplexity": math.exp(min(loss, 50.0))}
        if self.token_chars is not None:
            metrics[f"{split}/bpc"] = bits_per_character(torch.tensor(nll), torch.tensor(chars)).item()
        else:
            metrics[f"{split}/bpd"] = bits_per_dim(torch.tensor(nll), int(tokens)).item()
        self.log_dict(metrics, prog_bar=split == "val")

    @torch.no_grad()
    def sample(
        self,
        n: int,
        prompt: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> torch.Tensor:
        """n sequences: the prompt ([P] or [n, P] token ids; default none) then `max_new_tokens` sampled ones.

        Incremental decoding through the backbone's cache: one network step per new token. A
        bounded context (learned positions) that fills up is re-primed from BOS and the last half
        of the context, so the cost per token stays constant for any length.
        """
        max_new_tokens = self.block_size if max_new_tokens is None else max_new_tokens
        check_positive("temperature", temperature)
        prompt = torch.empty(n, 0, dtype=torch.long) if prompt is None else torch.as_tensor(prompt)
        tokens = (prompt.expand(n, -1) if prompt.ndim == 1 else prompt).to(self.device, torch.long)
        context = self.backbone.context_size
        keep = None if context is None else context // 2
        logits, cache = self._prime(tokens if keep is None else tokens[:, -(context - 1):])
        new = []
        for i in range(max_new_tokens):
            probs = F.softmax(filter_logits(logits.float() / temperature, top_k, top_p), dim=-1)
            token = torch.multinomial(probs, 1)[:, 0]
            new.append(token)
            if i == max_new_tokens - 1:
                break
            if context is not None and self.backbone.cache_length(cache) >= context:
                recent = torch.cat([tokens, torch.stack(new, 1)], 1)[:, -keep:]
                logits, cache = self._prime(recent)
            else:
                logits, cache = self.backbone.step(token, cache)
        return torch.cat([tokens, torch.stack(new, 1)], 1) if new else tokens

    def _prime(self, tokens: torch.Tensor):
        bos = torch.full((tokens.shape[0], 1), self.bos, dtype=torch.long, device=tokens.device)
        return self.backbone.prefill(torch.cat([bos, tokens], 1))

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) in nats per sequence, [B]: Σ_t log p(x_t | x_<t), x_1 from BOS."""
        return self.token_log_likelihoods(x).sum(1)

    def configure_optimizers(self):
        # Weight decay on matrices only (nanoGPT): not on biases or LayerNorm gains.
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": self.hparams.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        return with_scheduler(make_optimizer(self.optimizer, groups, self), self.scheduler)
