"""Evaluate `log_likelihood(x)` on validation/test batches: nats per example and bits per dim/token.

Bits/dim of images are only comparable across families when every model gives a probability of
the same 8-bit values (a discretised decoder, a dequantisation bound, an autoregressive model over
grey levels). A continuous density on [−1, 1] is not such a probability: its −log₂ p per dimension
sits about log₂(127.5) ≈ 7 bits lower and can be negative. Families say which they compute
(`LikelihoodModel.log_likelihood_is_discrete`); a density on image data is logged under its own names,
`<split>/nll_continuous` and `<split>/bpd_continuous`, so no table ranks it against 8-bit bits/dim.
"""
import math
import time

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from divlab.callbacks.evaluation_rng import seeded_stream
from divlab.callbacks.periodic import check_cadence_is_validated, check_monitors_see_every_validation, validation_due
from divlab.lightning_modules.contracts import LikelihoodModel, missing_members
from divlab.lightning_modules.likelihoods import bits_per_dim
from divlab.validation import check_positive

# Data kind → name of the per-dimension unit (images: 8-bit data; sequences: per token).
UNITS = {"image": "bpd", "sequence": "bits_per_token"}


def metric_names(kind: str | None, discrete: bool) -> tuple[str, str | None]:
    """(nll name, per-dimension name) for data of `kind` and a discrete probability or a density."""
    unit = UNITS.get(kind)
    if kind == "image" and not discrete:
        return "nll_continuous", "bpd_continuous"
    return "nll", unit


def standard_error(values: torch.Tensor) -> float:
    """The standard error of the mean of `values`: their sample standard deviation (n − 1) over √n."""
    return (values.double().std(correction=1) / math.sqrt(len(values))).item()


class LikelihoodEvaluator(L.Callback):
    """Logs `<split>/nll` (nats per example) and the kind's bits-per-dimension unit
    (`<split>/nll_continuous`, `<split>/bpd_continuous` for a density on image data), and the standard error of that
    mean over the examples scored, `<split>/<unit>_se` (their std / √n on this process: how far a mean over few
    images, as the score SDE's ODE likelihood affords, may sit from the whole split's).

    Modules that are no `LikelihoodModel` (GANs) are skipped with a one-line notice naming what they lack.
    Validation runs every `every_n_epochs` epochs on the first `max_val_batches` batches (0: never at validation;
    null: all), the test on the first `max_test_batches`, either on at most `max_examples` examples (the first of
    those batches; the score SDE's ODE likelihood costs ~0.5 s an image on a CPU thread); the time spent is logged
    as `time/<split>/likelihood_seconds`.
    Batch i's estimate (importance samples, Hutchinson probes, dequantisation noise) draws from a stream seeded
    with i, so it is the same at every pass and leaves the draws of the module's own evaluation steps alone.
    """

    name = "likelihood"  # its key under callbacks: in the configs

    def __init__(self, max_val_batches: int | None = 2, max_test_batches: int | None = 10, every_n_epochs: int = 1,
                 max_examples: int | None = None):
        for split, limit in (("val", max_val_batches), ("test", max_test_batches)):
            if limit is not None:
                check_positive(f"callbacks.likelihood.max_{split}_batches", limit, allow_zero=True)
        self.max_batches = {"val": max_val_batches, "test": max_test_batches}
        # at most this many examples an evaluation, the first of its batches (null: whole batches)
        self.max_examples = None if max_examples is None else check_positive("callbacks.likelihood.max_examples",
                                                                            max_examples)
        self.every_n_epochs = check_positive("callbacks.likelihood.every_n_epochs", every_n_epochs)
        self._noticed = False
        self._seconds = {"val": 0.0, "test": 0.0}
        self._per_example = {"val": [], "test": []}  # (unit, per-example values in it) of this epoch's batches
        self._examples = {"val": 0, "test": 0}  # examples scored in this epoch

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and isinstance(pl_module, LikelihoodModel):
            check_cadence_is_validated(trainer, "likelihood", self.every_n_epochs)
            kind = getattr(trainer.datamodule, "kind", None)
            names = metric_names(kind, bool(pl_module.log_likelihood_is_discrete))
            check_monitors_see_every_validation(trainer, "likelihood", self.every_n_epochs,
                                                lambda name: name in names)

    # what it may log as <split>/<name>, on some data (checked against checkpoint monitors)
    metric_names = ("nll", *UNITS.values(), "nll_continuous", "bpd_continuous",
                    *(f"{unit}_se" for unit in (*UNITS.values(), "bpd_continuous")))

    def logs_metric(self, name: str) -> bool:
        return name in self.metric_names

    def _applies(self, trainer, pl_module) -> bool:
        if isinstance(pl_module, LikelihoodModel):
            return True
        if not self._noticed:
            missing = ", ".join(missing_members(pl_module, LikelihoodModel))
            rank_zero_info(f"LikelihoodEvaluator: {type(pl_module).__name__} is no LikelihoodModel "
                           f"(it lacks {missing}); skipped")
            self._noticed = True
        return False

    def _evaluate(self, split: str, trainer, pl_module, batch, batch_idx: int) -> None:
        limit = self.max_batches[split]
        if (limit is not None and batch_idx >= limit) or not self._applies(trainer, pl_module):
            return
        if self.max_examples is not None:
            if self._examples[split] >= self.max_examples:
                return
            batch = batch[:self.max_examples - self._examples[split]]
        self._examples[split] += len(batch)
        start = time.perf_counter()
        with seeded_stream(batch_idx, pl_module.device):  # batch i: the same noise at every pass, nothing else moved
            per_example = -pl_module.log_likelihood(batch)
        nll = per_example.mean()
        datamodule = trainer.datamodule
        kind = getattr(datamodule, "kind", None)
        nll_name, unit = metric_names(kind, bool(pl_module.log_likelihood_is_discrete))
        size = len(per_example)  # the epoch's mean weighs each batch by the examples scored in it
        pl_module.log(f"{split}/{nll_name}", nll, on_epoch=True, on_step=False, sync_dist=True, batch_size=size)
        if unit is not None:
            dims = math.prod(datamodule.sample_shape) if kind == "image" else batch.shape[-1]
            pl_module.log(f"{split}/{unit}", bits_per_dim(nll, dims), on_epoch=True, on_step=False, sync_dist=True,
                          batch_size=size)
            self._per_example[split].append((unit, bits_per_dim(per_example.detach().double().cpu(), dims)))
        self._seconds[split] += time.perf_counter() - start

    def _log_time(self, split: str, pl_module) -> None:
        if self._seconds[split] > 0:
            pl_module.log(f"time/{split}/likelihood_seconds", self._seconds[split], rank_zero_only=True)
        self._seconds[split] = 0.0
        scored, self._per_example[split], self._examples[split] = self._per_example[split], [], 0
        values = torch.cat([values for _, values in scored]) if scored else torch.empty(0)
        if len(values) > 1:
            pl_module.log(f"{split}/{scored[0][0]}_se", standard_error(values), rank_zero_only=True)

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if validation_due(trainer, self.every_n_epochs):
            self._evaluate("val", trainer, pl_module, batch, batch_idx)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._log_time("val", pl_module)

    @torch.no_grad()
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._evaluate("test", trainer, pl_module, batch, batch_idx)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._log_time("test", pl_module)
