"""Sample quality of image models in a feature space: FID, KID, improved precision/recall and
density/coverage, every N epochs and at test.

The feature space is a small classifier shipped per dataset (`divlab.evaluation.feature_nets`),
so metric names carry its short name and nobody mistakes them for Inception scores:
`<split>/fid_fmnist`, `<split>/kid_fmnist` (+ `kid_std_fmnist`), `<split>/precision_fmnist`,
`<split>/recall_fmnist`, `<split>/density_fmnist`, `<split>/coverage_fmnist`, `<split>/class_kl_fmnist`
(`_fmnist16` on Fashion-MNIST pooled to 16×16, `_digits` on digits, `_inception` with
`feature_net=inception`); wall times as `time/<split>/<step>_seconds`.

Per-class coverage, the image analogue of the toys' mode coverage: the classifier labels every
sample, and `class_kl` is the reverse KL of that label histogram against the uniform one (the
data's classes are balanced), `divlab.evaluation.toy.mode_histogram_kl`; the histogram goes to the
run record's `mode_histogram` (no class head, as with Inception: not computed).

Models of pixel sequences (the autoregressive family on `data=fashion_mnist_pixels`) are scored
too: their data module turns token samples back into images (`samples_as_images`).

The feature network runs once per image, batched; real-data features are cached on disk under
`cache_dir`, keyed by dataset, split, number of images and the weights' hash. FID and KID are
torchmetrics' metrics fed those features (through an identity feature module, so the
torchmetrics states are its standard ones); precision/recall and density/coverage are
`divlab.evaluation.manifold` on the same features.
"""
from pathlib import Path

import torch
from torch import Tensor, nn

from divlab.atomic_files import atomic_write
from divlab.callbacks.evaluation_rng import seeded_stream
from divlab.callbacks.periodic import PeriodicEvaluation
from divlab.evaluation.feature_nets import FEATURE_SPACES, feature_space_name, file_hash, load_feature_net
from divlab.evaluation.frechet import feature_fid_metric, feature_kid_metric, kid_subset_size
from divlab.evaluation.manifold import density_coverage, precision_recall
from divlab.evaluation.toy import mode_histogram_kl
from divlab.tracking.run_record import RunRecord
from divlab.validation import check_positive

METRICS = ("fid", "kid", "precision_recall", "density_coverage", "class_coverage")


class InceptionFeatures(nn.Module):
    """torch-fidelity's Inception-v3 pool features (2048) from a local weights file, for divlab images in [−1, 1]."""

    num_features = 2048

    def __init__(self, weights_path: str):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(weights_path))

    def forward(self, x: Tensor) -> Tensor:
        pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return self.net(pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels)


@torch.no_grad()
def extract_features(net: nn.Module, images: Tensor, device, batch_size: int = 500) -> Tensor:
    net = net.to(device).eval()
    return torch.cat([net(batch.to(device).float()).flatten(1).float().cpu() for batch in images.split(batch_size)])


@torch.no_grad()
def class_histogram(net: nn.Module, features: Tensor) -> Tensor:
    """How many of the images whose features these are the classifier labels as each class (its argmax)."""
    logits = net.classify_features(features.to(next(net.parameters()).device))
    return torch.bincount(logits.argmax(1).cpu(), minlength=logits.shape[1])


class ImageFeatureMetrics(PeriodicEvaluation):
    """FID/KID/PR/DC of `pl_module.sample(n_samples)` against the first `n_real` images of the
    validation split (at test: the test split), for `image` data with a feature network.

    feature_net: "auto" (the shipped classifier of the dataset), a path to weights for the
    dataset's shipped architecture, or "inception" (needs `inception_weights`, a local
    torch-fidelity `pt_inception-2015-12-05` file; nothing is ever downloaded).

    KID: the mean and std of MMD² over `kid_subsets` random subsets of `kid_subset_size` rows of
    each set; null (the default) takes half the smaller set, so the subsets differ and the std
    is a real spread (`divlab.evaluation.frechet.kid_subset_size`).
    """

    def __init__(
        self,
        n_samples: int = 1000,
        n_real: int | None = None,
        every_n_epochs: int | None = 1,
        metrics: tuple[str, ...] = METRICS,
        kid_subsets: int = 20,
        kid_subset_size: int | None = None,
        precision_recall_k: int = 3,
        density_coverage_k: int = 5,
        feature_net: str = "auto",
        inception_weights: str | None = None,
        cache_dir: str | None = None,
        batch_size: int = 500,
        seed: int = 0,
    ):
        super().__init__(every_n_epochs, seed, name="image_metrics")
        self.n_samples = check_positive("callbacks.image_metrics.n_samples", n_samples)
        self.n_real = check_positive("callbacks.image_metrics.n_real", n_real or n_samples)
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown callbacks.image_metrics.metrics {sorted(unknown)}; valid: {', '.join(METRICS)}")
        self.metrics = tuple(metrics)
        self.kid_subsets = check_positive("callbacks.image_metrics.kid_subsets", kid_subsets)
        if kid_subset_size is not None:
            check_positive("callbacks.image_metrics.kid_subset_size", kid_subset_size)
            half = min(self.n_samples, self.n_real) // 2
            if kid_subset_size > half:
                raise ValueError(
                    f"callbacks.image_metrics.kid_subset_size={kid_subset_size} leaves no random subsets of "
                    f"{min(self.n_samples, self.n_real)} samples (KID's std would be round-off): use at most {half} "
                    "(half the samples) or null for that default"
                )
        self.kid_subset_size = kid_subset_size
        self.pr_k = check_positive("callbacks.image_metrics.precision_recall_k", precision_recall_k)
        self.dc_k = check_positive("callbacks.image_metrics.density_coverage_k", density_coverage_k)
        if feature_net == "inception" and not inception_weights:
            raise ValueError(
                "callbacks.image_metrics.feature_net=inception needs callbacks.image_metrics.inception_weights=PATH "
                "(a local pt_inception-2015-12-05 weights file); weights are never downloaded. "
                "Use feature_net=auto for the shipped domain classifiers."
            )
        if feature_net == "inception":
            try:
                import torch_fidelity  # noqa: F401 (torchmetrics' Inception-v3 needs it)
            except ImportError as error:
                raise ImportError("callbacks.image_metrics.feature_net=inception needs torch-fidelity: "
                                  "pip install 'divlab[inception]' (or pip install torch-fidelity)") from error
        if feature_net not in ("auto", "inception") and not Path(feature_net).expanduser().is_file():
            raise FileNotFoundError(
                f"callbacks.image_metrics.feature_net={feature_net!r} is not a file (or auto/inception)"
            )
        if inception_weights and not Path(inception_weights).expanduser().is_file():
            raise FileNotFoundError(f"callbacks.image_metrics.inception_weights={inception_weights!r} does not exist")
        self.feature_net = feature_net
        self.inception_weights = inception_weights
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.batch_size = check_positive("callbacks.image_metrics.batch_size", batch_size)
        self._feature_spaces = {}
        self._real_features = {}
        self._last_fake_features = None  # (samples, feature net, features): reused with the samples themselves

    def logs_metric(self, name: str) -> bool:
        # fid_<net>, kid_<net>, kid_std_<net>, precision_<net>, ... (the feature network's suffix)
        return name.startswith(("fid_", "kid_", "precision_", "recall_", "density_", "coverage_", "class_kl_"))

    def applies(self, datamodule, pl_module) -> bool | str:
        if not hasattr(datamodule, "samples_as_images"):
            return ""
        space = self.space_of(datamodule)
        if self.feature_net == "auto" and space not in FEATURE_SPACES:
            return (
                f"no shipped feature network for {space!r} (shipped: {', '.join(FEATURE_SPACES)}); "
                "set callbacks.image_metrics.feature_net=inception and callbacks.image_metrics.inception_weights=PATH"
            )
        return True

    @staticmethod
    def space_of(datamodule) -> str:
        """The shipped feature space of a data module's images: `fashion_mnist`, `fashion_mnist_16`, ..."""
        return feature_space_name(datamodule.name, datamodule.hparams.get("resolution"))

    def feature_space(self, dataset: str) -> tuple[nn.Module, str, str]:
        """(network, weights hash, metric-name suffix) for `dataset`, loaded once."""
        if dataset not in self._feature_spaces:
            if self.feature_net == "inception":
                path = Path(self.inception_weights).expanduser()
                self._feature_spaces[dataset] = (InceptionFeatures(str(path)), file_hash(path), "inception")
            else:
                path = None if self.feature_net == "auto" else Path(self.feature_net).expanduser()
                net, digest = load_feature_net(dataset, path)
                self._feature_spaces[dataset] = (net, digest, FEATURE_SPACES.get(dataset, dataset))
        return self._feature_spaces[dataset]

    def real_features(self, datamodule, split: str, device) -> Tensor:
        """Features of the first `n_real` images of `split`: from memory, the disk cache, or computed once."""
        space = self.space_of(datamodule)
        net, digest, suffix = self.feature_space(space)
        key = f"{space}_{split}_n{self.n_real}_{suffix}_{digest}"
        if key not in self._real_features:
            path = self.cache_dir / f"{key}.pt" if self.cache_dir else None
            if path is not None and path.is_file():
                features = torch.load(path, map_location="cpu", weights_only=True)
            else:
                images = datamodule.real_images(split, self.n_real)
                features = extract_features(net, images, device, self.batch_size)
                if path is not None:
                    with atomic_write(path) as file:
                        torch.save(features, file)
            self._real_features[key] = features
        return self._real_features[key]

    def evaluate(self, trainer, pl_module, split: str, timer) -> dict:
        datamodule = trainer.datamodule
        net, _, suffix = self.feature_space(self.space_of(datamodule))
        with timer(f"real_features_{suffix}"):
            real = self.real_features(datamodule, split, pl_module.device)
        with timer("image_samples"):
            images = datamodule.samples_as_images(self.samples(pl_module, self.n_samples, self.batch_size))
        with timer(f"fake_features_{suffix}"):
            fake = self.fake_features(net, images, pl_module.device)
        metrics = self.score(real, fake, suffix, timer)
        if "class_coverage" in self.metrics and hasattr(net, "classify_features"):
            counts = class_histogram(net, fake)
            metrics[f"class_kl_{suffix}"] = mode_histogram_kl(counts).item()
            for callback in trainer.callbacks:  # evaluate runs on rank 0 only (PeriodicEvaluation)
                if isinstance(callback, RunRecord):
                    callback.add_mode_histogram(split, trainer.global_step, counts.tolist())
        return metrics

    def fake_features(self, net: nn.Module, images: Tensor, device) -> Tensor:
        """Features of the model's samples; those of the last call when `samples` handed back the same images."""
        last = self._last_fake_features
        if last is None or last[0] is not images or last[1] is not net:
            self._last_fake_features = last = (images, net, extract_features(net, images, device, self.batch_size))
        return last[2]

    def score(self, real: Tensor, fake: Tensor, suffix: str, timer) -> dict:
        """The selected metrics between real and fake features (n, d), named `<metric>_<suffix>`."""
        metrics = {}
        identity = nn.Identity()
        if "fid" in self.metrics:
            with timer(f"fid_{suffix}"):
                fid = feature_fid_metric(identity, num_features=real.shape[1], sync_on_compute=False)
                fid.update(real, real=True)
                fid.update(fake, real=False)
                metrics[f"fid_{suffix}"] = fid.compute().item()
        if "kid" in self.metrics:
            with timer(f"kid_{suffix}"), seeded_stream(self.seed, torch.device("cpu")):
                subset_size = kid_subset_size(len(real), len(fake), self.kid_subset_size)
                kid = feature_kid_metric(identity, num_features=real.shape[1], subsets=self.kid_subsets,
                                         subset_size=subset_size, sync_on_compute=False)
                kid.update(real, real=True)
                kid.update(fake, real=False)
                kid_mean, kid_std = kid.compute()
                metrics[f"kid_{suffix}"], metrics[f"kid_std_{suffix}"] = kid_mean.item(), kid_std.item()
        if "precision_recall" in self.metrics:
            with timer(f"precision_recall_{suffix}"):
                precision, recall = precision_recall(real, fake, k=self.pr_k)
                metrics[f"precision_{suffix}"], metrics[f"recall_{suffix}"] = precision.item(), recall.item()
        if "density_coverage" in self.metrics:
            with timer(f"density_coverage_{suffix}"):
                density, coverage = density_coverage(real, fake, k=self.dc_k)
                metrics[f"density_{suffix}"], metrics[f"coverage_{suffix}"] = density.item(), coverage.item()
        return metrics
