"""Exact-density scores for 2-D mixtures: VEEGAN/PacGAN modes, forward/reverse KL and JS, and a
scatter plot of the samples over the true density.

Logged (nats; `<split>` is `val` or `test`):
  `<split>/modes_covered`, `<split>/high_quality_percent`, `<split>/mode_reverse_kl` (PacGAN's
  "reverse KL": of the high-quality samples' mode histogram against uniform weights), `<split>/forward_kl`,
  `<split>/reverse_kl`, `<split>/js`, and `<split>/kl_exact_q` (1 when log q is the model's exact
  `log_likelihood`, 0 when it is a KDE of its samples); wall times as `time/<split>/toy_*_seconds`.
The mode histogram itself (high-quality samples per mode) goes to `toy_metrics/<split>_step*.json`
and `<split>_modes_step*.png` beside the scatter plot `<split>_step*.png`, whose modes carry their
3σ circles.
"""
import json
from pathlib import Path

import torch

from divlab.callbacks.media import log_image_file
from divlab.callbacks.periodic import PeriodicEvaluation
from divlab.callbacks.render import save_mode_histogram, save_scatter_over_density
from divlab.eval_mode import eval_mode
from divlab.evaluation.toy import loo_bandwidth, mode_scores, scott_bandwidth, toy_divergences
from divlab.tracking.run_record import RunRecord
from divlab.validation import check_choice, check_positive

# What `evaluate` logs under `<split>/`
METRICS = ("modes_covered", "high_quality_percent", "mode_reverse_kl", "forward_kl", "reverse_kl", "js", "kl_exact_q")
# Bandwidth rules for the KDE of model samples (used when the model has no exact log-density).
BANDWIDTHS = {"loo": loo_bandwidth, "scott": scott_bandwidth}


class ToyDivergences(PeriodicEvaluation):
    """Scores `pl_module.sample(n_samples)` (2,500 by default, the VEEGAN/PacGAN protocol) against
    a toy mixture with known `log_prob`, every `every_n_epochs` validation epochs (null: at test only) and at
    test.

    `val_n_samples`: model samples (and data points, at most `n_data`) drawn at validation, fewer than
    the protocol's `n_samples` to make the curve cheap (the KDE scores cost O(n²)); null: as at test.
    The test scores always use `n_samples`, so only they compare with the published tables.

    log q: `log_q="auto"` uses the model's `log_likelihood` when `log_likelihood_is_exact` and its
    samples come from that same distribution (`log_likelihood_matches_sample`, default true: a
    score model's predictor–corrector samples do not follow its probability-flow ODE density),
    else a Gaussian KDE of the model samples whose bandwidth is `bandwidth`: "loo" (leave-one-out
    maximum likelihood over multiples of Scott's rule, the default: Scott's rule alone
    oversmooths σ = 0.01 modes), "scott", or a number. `log_q="kde"` always uses the KDE;
    `log_q="model"` always uses `log_likelihood` (an ELBO then gives a bound, not an estimate).
    """

    def __init__(
        self,
        n_samples: int = 2500,
        n_data: int = 2500,
        val_n_samples: int | None = None,
        every_n_epochs: int | None = 5,
        log_q: str = "auto",
        bandwidth: str | float = "loo",
        threshold: float = 3.0,
        min_count: int = 1,
        plot: bool = True,
        dirname: str = "toy_metrics",
        seed: int = 0,
    ):
        super().__init__(every_n_epochs, seed, name="toy_metrics")
        self.n_samples = check_positive("callbacks.toy_metrics.n_samples", n_samples)
        self.n_data = check_positive("callbacks.toy_metrics.n_data", n_data)
        self.val_n_samples = (None if val_n_samples is None
                              else check_positive("callbacks.toy_metrics.val_n_samples", val_n_samples))
        self.log_q = check_choice("callbacks.toy_metrics.log_q", log_q, ("auto", "kde", "model"))
        if isinstance(bandwidth, str):
            check_choice("callbacks.toy_metrics.bandwidth", bandwidth, BANDWIDTHS)
        else:
            check_positive("callbacks.toy_metrics.bandwidth", bandwidth)
        self.bandwidth = BANDWIDTHS.get(bandwidth, bandwidth)
        self.threshold = check_positive("callbacks.toy_metrics.threshold", threshold)
        self.min_count = check_positive("callbacks.toy_metrics.min_count", min_count)
        self.plot = plot
        self.dirname = dirname

    def applies(self, datamodule, pl_module) -> bool | str:
        if getattr(datamodule, "kind", None) != "points":
            return ""  # not toy data: skip silently
        if not getattr(datamodule, "has_log_prob", False) or getattr(datamodule, "centres", None) is None:
            return f"data {getattr(datamodule, 'name', '?')!r} has no known density"
        return True

    metric_names = METRICS

    def logs_metric(self, name: str) -> bool:
        return name in METRICS

    def sample_sizes(self, split: str) -> tuple[int, int]:
        """(model samples, data points) scored at `split`."""
        if split == "val" and self.val_n_samples is not None:  # never more than at test
            n = min(self.val_n_samples, self.n_samples)
            return n, min(self.n_data, n)
        return self.n_samples, self.n_data

    def _model_log_q(self, pl_module):
        # Samples and log q must describe one distribution, or KL(Q‖P) mixes two models.
        exact = bool(getattr(pl_module, "log_likelihood_is_exact", False)) and bool(
            getattr(pl_module, "log_likelihood_matches_sample", True))
        has = hasattr(pl_module, "log_likelihood")
        if self.log_q == "model" or (self.log_q == "auto" and has and exact):
            if not has:
                raise ValueError(
                    f"callbacks.toy_metrics.log_q=model but {type(pl_module).__name__} has no log_likelihood"
                )

            @torch.no_grad()
            def log_q(x):
                with eval_mode(pl_module):
                    return torch.cat([pl_module.log_likelihood(b.to(pl_module.device)).double().cpu()
                                      for b in x.float().split(1000)])

            return log_q
        return None

    def evaluate(self, trainer, pl_module, split: str, timer) -> dict:
        datamodule = trainer.datamodule
        n_samples, n_data = self.sample_sizes(split)
        with timer("toy_samples"):
            samples = self.samples(pl_module, n_samples)
        data = datamodule.real_samples(split, n_data).float()
        with timer("toy_modes"):
            scores = mode_scores(samples, datamodule.centres, datamodule.sigma, self.threshold, self.min_count)
        log_q = self._model_log_q(pl_module)
        with timer("toy_divergences"):
            divergences = toy_divergences(data, samples, datamodule.log_prob, log_q, self.bandwidth)
        metrics = {
            "modes_covered": scores.modes_covered,
            "high_quality_percent": scores.high_quality_percent,
            "mode_reverse_kl": scores.reverse_kl,  # +inf when no sample is high quality
            **{name: value.item() for name, value in divergences.items()},
            "kl_exact_q": float(log_q is not None),
        }
        self._save_histogram(trainer, split, scores.counts)  # evaluate runs on rank 0 only (PeriodicEvaluation)
        if self.plot:
            with timer("toy_plot"):
                self._plot(trainer, samples, split, metrics, scores.counts)
        return metrics

    def _path(self, trainer, split: str, suffix: str, kind: str = "") -> Path:
        folder = Path(trainer.default_root_dir) / self.dirname
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{split}{kind}_step{trainer.global_step:07d}{suffix}"

    def _save_histogram(self, trainer, split: str, counts) -> None:
        datamodule = trainer.datamodule
        record = {"step": trainer.global_step, "split": split, "threshold_sigmas": self.threshold,
                  "centres": datamodule.centres.tolist(), "mode_histogram": counts.tolist()}
        self._path(trainer, split, ".json").write_text(json.dumps(record, indent=1))
        for callback in trainer.callbacks:
            if isinstance(callback, RunRecord):
                callback.record.setdefault("mode_histogram", {})[split] = {
                    "step": trainer.global_step,
                    "counts": counts.tolist(),
                }

    def _plot(self, trainer, samples, split: str, metrics: dict, counts) -> Path:
        path = self._path(trainer, split, ".png")
        title = (f"{split} step {trainer.global_step}: {metrics['modes_covered']} modes, "
                 f"{metrics['high_quality_percent']:.0f}% HQ, mode KL {metrics['mode_reverse_kl']:.3g}\n"
                 f"KL(P‖Q) {metrics['forward_kl']:.3g}, KL(Q‖P) {metrics['reverse_kl']:.3g}, JS {metrics['js']:.3f}")
        save_scatter_over_density(samples, path, trainer.datamodule, title=title, threshold=self.threshold)
        log_image_file(trainer, f"{split}/toy_samples", path, caption=title)
        histogram = self._path(trainer, split, ".png", kind="_modes")
        save_mode_histogram(counts, len(samples), histogram, title=f"{split} step {trainer.global_step}")
        log_image_file(trainer, f"{split}/mode_histogram", histogram, caption=title)
        return path
