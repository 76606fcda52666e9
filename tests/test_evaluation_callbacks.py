"""Evaluation callbacks through Lightning: toy exact divergences, feature-space FID/KID/PR/DC, eval.py."""
import json
import math

import lightning as L
import pytest
import torch
from torch import nn

from divlab.callbacks.toy_metrics import METRICS, ToyDivergences
from divlab.datamodules.toy2d import GaussianMixture2D, Toy2DDataModule


class FixedModel(L.LightningModule):
    """A 'trained' model that is a known distribution: samples it, and (optionally) its exact log-density
    (then a `LikelihoodModel`: it has every member)."""

    log_likelihood_is_exact = True
    log_likelihood_bound = None
    log_likelihood_is_discrete = False
    log_likelihood_matches_sample = True

    def __init__(self, distribution, with_log_likelihood: bool = True):
        super().__init__()
        self.distribution = distribution
        self.anchor = nn.Parameter(torch.zeros(1))
        if with_log_likelihood:
            self.log_likelihood = distribution.log_prob

    def sample(self, n: int) -> torch.Tensor:
        return self.distribution.sample(n)

    def test_step(self, batch, batch_idx):
        return None


def run_test(model, datamodule, callback, tmp_path) -> dict:
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_test_batches=1,
                        callbacks=callback if isinstance(callback, list) else [callback],
                        default_root_dir=tmp_path)
    trainer.test(model, datamodule=datamodule, verbose=False)
    return {name: float(value) for name, value in trainer.callback_metrics.items()}


@pytest.fixture(scope="module")
def ring8():
    data = Toy2DDataModule("ring8", n_train=100, n_val=1000, n_test=1000)
    data.setup()
    return data


@pytest.mark.parametrize("log_q", ["model", "kde"])
def test_true_mixture_has_zero_kl_and_all_modes(ring8, tmp_path, log_q):
    model = FixedModel(ring8.distribution)
    metrics = run_test(model, ring8, ToyDivergences(n_samples=1000, n_data=1000, log_q=log_q), tmp_path)
    assert metrics["test/modes_covered"] == 8
    assert metrics["test/high_quality_percent"] > 97
    assert metrics["test/kl_exact_q"] == (log_q == "model")
    tolerance = 1e-9 if log_q == "model" else 0.15
    for name in ("forward_kl", "reverse_kl", "js"):
        assert abs(metrics[f"test/{name}"]) < tolerance, (name, metrics)
    assert metrics["time/test/toy_divergences_seconds"] >= 0
    assert list((tmp_path / "toy_metrics").glob("test_step*.png"))


def test_auto_log_q_never_scores_samples_with_another_distributions_density(ring8, tmp_path):
    # Samples from one mode, log_likelihood of the true mixture (like PC samples scored with the ODE density).
    one_mode = GaussianMixture2D(ring8.centres[:1], ring8.sigma)
    model = FixedModel(one_mode, with_log_likelihood=False)
    model.log_likelihood = ring8.distribution.log_prob
    model.log_likelihood_matches_sample = False
    metrics = run_test(model, ring8, ToyDivergences(n_samples=1000, n_data=1000, plot=False), tmp_path)
    assert metrics["test/kl_exact_q"] == 0
    assert metrics["test/reverse_kl"] == pytest.approx(math.log(8), abs=0.1)  # KDE of the samples: log K


@pytest.mark.parametrize("with_log_likelihood", [True, False])
def test_collapsed_model_covers_one_mode_with_asymmetric_kl(ring8, tmp_path, with_log_likelihood):
    one_mode = GaussianMixture2D(ring8.centres[:1], ring8.sigma)
    model = FixedModel(one_mode, with_log_likelihood)
    metrics = run_test(model, ring8, ToyDivergences(n_samples=1000, n_data=1000, plot=False), tmp_path)
    assert metrics["test/modes_covered"] == 1
    assert metrics["test/mode_reverse_kl"] == pytest.approx(math.log(8), rel=1e-6)
    histogram = json.loads(next((tmp_path / "toy_metrics").glob("test_step*.json")).read_text())
    assert histogram["mode_histogram"][0] > 990 and sum(histogram["mode_histogram"][1:]) == 0
    # Mode-seeking reverse KL is log K for one of K equal modes; mass-covering forward KL explodes.
    assert metrics["test/reverse_kl"] == pytest.approx(math.log(8), abs=0.1)
    assert metrics["test/forward_kl"] > 100 * metrics["test/reverse_kl"]
    # JS(P, Q) for Q = one of 8 modes: ½[⅞ log 2 + ⅛ log(2/9)] + ½ log(16/9) ≈ 0.497 nats.
    expected_js = 0.5 * (7 / 8 * math.log(2) + 1 / 8 * math.log(2 / 9)) + 0.5 * math.log(16 / 9)
    assert metrics["test/js"] == pytest.approx(expected_js, abs=0.05)


def test_validation_scores_val_n_samples_and_test_the_protocols_n_samples(ring8, tmp_path):
    class ValidatedModel(FixedModel):
        def validation_step(self, batch, batch_idx):
            return None

    callback = ToyDivergences(n_samples=1000, n_data=1000, val_n_samples=200, every_n_epochs=1, plot=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=1, limit_test_batches=1,
                        callbacks=[callback], default_root_dir=tmp_path)
    model = ValidatedModel(ring8.distribution)
    trainer.validate(model, datamodule=ring8, verbose=False)
    # METRICS (what monitors are checked against) names exactly what evaluate logs
    assert {name.removeprefix("val/") for name in trainer.callback_metrics if name.startswith("val/")} == set(METRICS)
    trainer.test(model, datamodule=ring8, verbose=False)
    counts = {split: sum(json.loads(next((tmp_path / "toy_metrics").glob(f"{split}_step*.json")).read_text())
                         ["mode_histogram"]) for split in ("val", "test")}
    # The true mixture: ≥ 97 % of samples are high quality, so the histograms count ~200 and ~1,000 samples.
    assert 190 <= counts["val"] <= 200 and 970 <= counts["test"] <= 1000, counts
    assert callback.sample_sizes("val") == (200, 200) and callback.sample_sizes("test") == (1000, 1000)
    # never more at validation than at test (debug=tiny scores 200 samples, a preset asks 500 at validation)
    assert ToyDivergences(n_samples=100, n_data=100, val_n_samples=500).sample_sizes("val") == (100, 100)


def test_toy_callback_skips_data_without_density(tmp_path):
    moons = Toy2DDataModule("moons", n_train=100, n_val=100, n_test=100)
    metrics = run_test(FixedModel(moons.distribution, False), moons, ToyDivergences(n_samples=100), tmp_path)
    assert not any("kl" in name for name in metrics)


# ---------------------------------------------------------------- image feature metrics

from divlab.callbacks import image_metrics  # noqa: E402
from divlab.callbacks.image_metrics import ImageFeatureMetrics, extract_features  # noqa: E402
from divlab.callbacks.periodic import seeded_samples  # noqa: E402
from divlab.datamodules.images import ImageDataModule  # noqa: E402
from divlab.evaluation.feature_nets import WEIGHTS_DIR, feature_net_card, load_feature_net  # noqa: E402


class ImagePool:
    """A 'model' whose samples are drawn without replacement from a fixed set of images."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def sample(self, n: int, generator=None) -> torch.Tensor:
        return self.images[torch.randperm(len(self.images), generator=generator)[:n]]


def uniform_noise(shape):
    return type("Noise", (), {"sample": lambda self, n: torch.rand(n, *shape) * 2 - 1})()


@pytest.fixture(scope="module")
def digits():
    data = ImageDataModule("digits", val_size=150)
    data.setup()
    return data


def image_callback(tmp_path, n, **kwargs):
    return ImageFeatureMetrics(n_samples=n, kid_subsets=10, cache_dir=str(tmp_path / "cache"), **kwargs)


def test_identical_sets_score_one_and_disjoint_sets_zero(digits, tmp_path):
    n = 250
    same = run_test(FixedModel(ImagePool(digits.real_samples("test", n)), False), digits,
                    image_callback(tmp_path, n), tmp_path)
    for name in ("precision", "recall", "coverage"):
        assert same[f"test/{name}_digits"] == 1.0
    assert same["test/density_digits"] == pytest.approx(brute_force_self_density(digits, n, k=5), rel=1e-6)
    assert abs(same["test/fid_digits"]) < 1e-6

    noise = run_test(FixedModel(uniform_noise((1, 8, 8)), False), digits, image_callback(tmp_path, n), tmp_path)
    # Identical sets: unbiased MMD² is slightly negative (its kernel sum drops only the diagonal).
    assert abs(same["test/kid_digits"]) < 0.05 * noise["test/kid_digits"]
    # Subsets of half the samples: the std is a spread over subsets, not round-off (was ~1e-7 of KID).
    assert noise["test/kid_std_digits"] > 1e-3 * noise["test/kid_digits"]
    assert noise["test/fid_digits"] > 10 and noise["test/coverage_digits"] < 0.2
    assert noise["time/test/fid_digits_seconds"] >= 0 and noise["time/test/real_features_digits_seconds"] >= 0
    assert len(list((tmp_path / "cache").glob("digits_test_n250_digits_*.pt"))) == 1


def brute_force_self_density(data, n: int, k: int) -> float:
    """Density (Naeem et al. 2020) of the real set against itself, by the definition with numpy:
    (1/kM) Σ_j Σ_i 1[‖Y_j − X_i‖ ≤ distance from X_i to its k-th nearest other real point]."""
    import numpy as np
    from scipy.spatial.distance import cdist

    net, _ = load_feature_net(data.name)
    x = extract_features(net, data.real_samples("test", n), "cpu").double().numpy()
    distances = cdist(x, x)
    radii = np.sort(distances, axis=1)[:, k]  # column 0 is the point itself
    return float((distances <= radii[:, None]).sum() / (k * n))


def test_kid_subset_size_that_leaves_no_random_subsets_is_refused():
    with pytest.raises(ValueError, match="kid_subset_size=1000.*at most 50"):
        ImageFeatureMetrics(n_samples=100, kid_subset_size=1000)


def test_feature_scores_on_synthetic_gaussians_reach_their_extremes(tmp_path):
    from divlab.callbacks.periodic import Timer

    callback = image_callback(tmp_path, 400)
    real = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    same = callback.score(real, real.clone(), "toy", Timer())
    fresh = callback.score(real, torch.randn(400, 16, generator=torch.Generator().manual_seed(1)), "toy", Timer())
    disjoint = callback.score(real, real + 100.0, "toy", Timer())
    for name in ("precision", "recall", "coverage"):
        assert same[f"{name}_toy"] == 1.0 and disjoint[f"{name}_toy"] == 0.0
        assert fresh[f"{name}_toy"] > 0.6, fresh
    assert disjoint["density_toy"] == 0.0 and fresh["density_toy"] == pytest.approx(1.0, abs=0.3)
    assert same["fid_toy"] == pytest.approx(0.0, abs=1e-6) and disjoint["fid_toy"] == pytest.approx(
        16 * 100**2, rel=1e-3
    )
    assert disjoint["kid_toy"] > 100 * abs(fresh["kid_toy"])


def test_fid_in_fashion_mnist_feature_space_matches_scipy_and_separates_noise(tmp_path):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    import numpy as np

    data = ImageDataModule("fashion_mnist", val_size=1000)
    data.setup()
    n = 500
    train_pool = FixedModel(ImagePool(data.real_samples("train", 5000)), False)
    real = run_test(train_pool, data, image_callback(tmp_path, n, metrics=["fid"]), tmp_path)
    noise = run_test(FixedModel(uniform_noise((1, 28, 28)), False), data,
                     image_callback(tmp_path, n, metrics=["fid"]), tmp_path)
    assert noise["test/fid_fmnist"] > 20 * real["test/fid_fmnist"], (real, noise)

    # Reference: the same features (seeded samples, shipped net), numpy means/covariances, scipy sqrtm.
    net, _ = load_feature_net("fashion_mnist")
    fake = extract_features(net, seeded_samples(train_pool, n, seed=0), "cpu").double().numpy()
    test = extract_features(net, data.real_samples("test", n), "cpu").double().numpy()
    mu1, mu2 = test.mean(0), fake.mean(0)
    s1, s2 = np.cov(test, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert real["test/fid_fmnist"] == pytest.approx(reference, rel=1e-3)


@pytest.mark.parametrize("space, dataset, resolution, minimum", [("fashion_mnist", "fashion_mnist", None, 0.90),
                                                                  ("fashion_mnist_16", "fashion_mnist", 16, 0.88),
                                                                  ("digits", "digits", None, 0.95)])
def test_shipped_feature_nets_are_accurate_small_and_load_weights_only(space, dataset, resolution, minimum):
    card = feature_net_card(space)
    assert card["test_accuracy"] >= minimum and card["epochs"] > 0 and "train_feature_net.py" in card["command"]
    assert (WEIGHTS_DIR / f"{space}.pt").stat().st_size < 400_000
    net, digest = load_feature_net(space)  # weights_only=True inside
    assert digest == card["weights_sha256_12"]
    data = ImageDataModule(dataset, val_size=150, resolution=resolution)
    data.setup()
    with torch.no_grad():
        logits = net.classify(data.real_samples("test", 300))
    accuracy = (logits.argmax(1) == data.labels("test")[:300]).double().mean().item()
    assert accuracy >= minimum - 0.03


@pytest.fixture(scope="module")
def fashion_mnist_16():
    data = ImageDataModule("fashion_mnist", val_size=1000, resolution=16)
    data.setup()
    return data


def test_class_coverage_is_the_reverse_kl_of_the_classifiers_label_histogram(fashion_mnist_16, tmp_path):
    from divlab.evaluation.toy import mode_histogram_kl
    from divlab.tracking.run_record import RunRecord

    images, labels = fashion_mnist_16.real_images("test", 10_000), fashion_mnist_16.labels("test")
    two_classes = torch.cat([images[labels == 0][:300], images[labels == 1][:300]])
    net, _ = load_feature_net("fashion_mnist_16")
    with torch.no_grad():  # the reference: the classifier's own labels of the images, counted
        counts = torch.bincount(net.classify(two_classes).argmax(1), minlength=10)
    record = RunRecord(str(tmp_path / "run"), config={})
    callback = image_callback(tmp_path, 600, metrics=["class_coverage"], batch_size=600)  # one draw: all 600
    metrics = run_test(FixedModel(ImagePool(two_classes), False), fashion_mnist_16, [callback, record], tmp_path)
    assert metrics["test/class_kl_fmnist16"] == pytest.approx(mode_histogram_kl(counts).item(), rel=1e-6)
    assert record.record["mode_histogram"]["test"]["counts"] == counts.tolist()
    # two classes of ten, each half the samples: KL(q̂ ‖ U) = log 5 for a perfect classifier (this one calls ~7 %
    # of them something else, which spreads the histogram)
    assert metrics["test/class_kl_fmnist16"] == pytest.approx(math.log(5), abs=0.3)
    balanced = run_test(FixedModel(ImagePool(images[:1000]), False), fashion_mnist_16,
                        image_callback(tmp_path, 1000, metrics=["class_coverage"]), tmp_path)
    assert balanced["test/class_kl_fmnist16"] < 0.02  # the real test images: the metric's floor


def test_pixel_sequence_models_are_scored_as_the_images_they_sample(fashion_mnist_16, tmp_path):
    from divlab.datamodules.pixel_sequences import PixelSequenceDataModule, raster_tokens

    pixels = PixelSequenceDataModule("fashion_mnist", val_size=1000, resolution=16)
    pixels.setup()
    tokens = raster_tokens(pixels.splits["train"][0][:300])
    assert torch.equal(pixels.samples_as_images(tokens.float()), fashion_mnist_16.real_images("train", 300))
    as_tokens = run_test(FixedModel(ImagePool(tokens.float()), False), pixels, image_callback(tmp_path, 300), tmp_path)
    as_images = run_test(FixedModel(ImagePool(fashion_mnist_16.real_images("train", 300)), False), fashion_mnist_16,
                         image_callback(tmp_path, 300), tmp_path)
    scores = {k: v for k, v in as_images.items() if not k.startswith("time/")}
    assert scores and scores == {k: as_tokens[k] for k in scores}


def test_inception_without_weights_names_the_option():
    with pytest.raises(ValueError, match="callbacks.image_metrics.inception_weights"):
        ImageFeatureMetrics(feature_net="inception")


# ---------------------------------------------------------------- eval.py


def compose_eval(tmp_path, overrides):
    from hydra import compose, initialize_config_dir

    from conftest import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("eval", overrides=[f"paths.output_dir={tmp_path}", f"paths.log_dir={tmp_path.parent}",
                                          "trainer.accelerator=cpu", *overrides])


def test_eval_py_tests_a_checkpoint_and_writes_eval_json(train_with, tmp_path):
    import eval as divlab_eval
    from divlab.run_files import decode_non_finite

    run_dir, eval_dir = tmp_path / "run", tmp_path / "eval"
    train_with("experiment=vae_ring8", "debug=tiny", "trainer=cpu", "logger=csv", "test=false", out=run_dir)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    cfg = compose_eval(eval_dir, [f"ckpt_path={ckpt}", "debug=tiny"])
    metrics = divlab_eval.evaluate(cfg)
    report = json.loads((eval_dir / "eval.json").read_text())  # strict JSON: non-finite values as strings
    assert decode_non_finite(report["metrics"]) == pytest.approx(metrics, nan_ok=True)
    assert (report["family"], report["data"]) == ("vae", "ring8")
    assert {"test/nll", "test/modes_covered", "test/forward_kl", "test/reverse_kl", "test/js",
            "time/test/toy_divergences_seconds"} <= set(metrics)
    assert all(math.isfinite(metrics[name]) for name in ("test/nll", "test/reverse_kl"))


def test_eval_py_names_a_missing_or_corrupt_checkpoint(tmp_path):
    import eval as divlab_eval

    with pytest.raises(FileNotFoundError, match="ckpt_path='/nope.ckpt' does not exist"):
        divlab_eval.evaluate(compose_eval(tmp_path, ["ckpt_path=/nope.ckpt"]))
    corrupt = tmp_path / "bad.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.ckpt' is unreadable"):
        divlab_eval.evaluate(compose_eval(tmp_path, [f"ckpt_path={corrupt}"]))


def test_toy_metrics_are_logged_once_under_ddp_spawn(train_with, tmp_path):
    import csv

    train_with("experiment=vae_ring8", "debug=tiny", "trainer=ddp_spawn", "trainer.devices=2", "logger=csv",
               "test=false")
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["metrics"]["val/modes_covered"] >= 0 and "time/val/toy_divergences_seconds" in record["metrics"]
    rows = list(csv.DictReader(next(tmp_path.glob("csv/**/metrics.csv")).open()))
    assert sum(1 for row in rows if row.get("val/modes_covered")) == 1
    assert len(list((tmp_path / "toy_metrics").glob("val_step*.png"))) == 1


def test_toy_metrics_at_test_only(train_with, tmp_path):
    # every_n_epochs=null: no validation scores or plots, the test's as always.
    train_with("experiment=vae_ring8", "debug=tiny", "callbacks.toy_metrics.every_n_epochs=null")
    metrics = json.loads((tmp_path / "run.json").read_text())["metrics"]
    assert "val/loss" in metrics and not any(name.startswith("val/") and "modes" in name for name in metrics)
    assert metrics["test/modes_covered"] >= 0 and "time/test/toy_divergences_seconds" in metrics
    assert not list((tmp_path / "toy_metrics").glob("val*")) and list((tmp_path / "toy_metrics").glob("test_step*.png"))


# ---------------------------------------------------------------- likelihood units


class UniformImageModel(L.LightningModule):
    """Uniform over [−1, 1]^D as a density (log p = −D log 2: 1 bit/dim) or over the 256 grey levels
    as a probability (log P = −D log 256: exactly 8 bits/dim)."""

    log_likelihood_is_exact = True
    log_likelihood_bound = None
    log_likelihood_matches_sample = True

    def __init__(self, discrete: bool):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.log_likelihood_is_discrete = discrete

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        dims = x[0].numel()
        return torch.full((len(x),), -dims * math.log(256 if self.log_likelihood_is_discrete else 2))

    def test_step(self, batch, batch_idx):
        return None


@pytest.mark.parametrize("discrete, unit, bits", [(True, "bpd", 8.0), (False, "bpd_continuous", 1.0)])
def test_image_bits_per_dim_of_a_density_never_pass_for_8_bit_bits(digits, tmp_path, discrete, unit, bits):
    from divlab.callbacks.likelihood import LikelihoodEvaluator

    metrics = run_test(UniformImageModel(discrete), digits, LikelihoodEvaluator(max_test_batches=1), tmp_path)
    assert metrics[f"test/{unit}"] == pytest.approx(bits, rel=1e-6)
    other = "bpd_continuous" if discrete else "bpd"
    assert f"test/{other}" not in metrics
    assert ("test/nll" in metrics) == discrete and ("test/nll_continuous" in metrics) == (not discrete)


class SpreadImageModel(UniformImageModel):
    """The uniform probability, each image's log-likelihood shifted by a known amount (1,000 × its mean pixel)."""

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        return super().log_likelihood(x) + 1000.0 * x.flatten(1).mean(1)


@pytest.mark.parametrize("max_examples", [None, 10])
def test_bits_per_dim_carry_the_standard_error_of_their_mean_over_the_images(digits, tmp_path, max_examples):
    import statistics

    from divlab.callbacks.likelihood import LikelihoodEvaluator

    model = SpreadImageModel(discrete=True)
    metrics = run_test(model, digits, LikelihoodEvaluator(max_test_batches=1, max_examples=max_examples), tmp_path)
    batch = next(iter(digits.test_dataloader()))[:max_examples]  # the whole batch of 64, or its first 10 images
    bits = [(-v / (64 * math.log(2))) for v in model.log_likelihood(batch).tolist()]
    assert metrics["test/bpd"] == pytest.approx(statistics.fmean(bits), rel=1e-6)
    assert metrics["test/bpd_se"] == pytest.approx(statistics.stdev(bits) / math.sqrt(len(bits)), rel=1e-6)
    assert metrics["test/bpd_se"] > 0.01


def test_zero_likelihood_batches_turn_a_split_off_and_negative_ones_are_refused(digits, tmp_path):
    from divlab.callbacks.likelihood import LikelihoodEvaluator

    metrics = run_test(UniformImageModel(True), digits, LikelihoodEvaluator(max_test_batches=0), tmp_path)
    assert not {"test/nll", "test/bpd", "time/test/likelihood_seconds"} & set(metrics)
    with pytest.raises(ValueError, match=r"callbacks.likelihood.max_val_batches must be >= 0, got -1"):
        LikelihoodEvaluator(max_val_batches=-1)


def test_monitors_of_image_metrics_logged_every_n_epochs_are_refused():
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from divlab.callbacks.image_metrics import ImageFeatureMetrics

    every_third = ImageFeatureMetrics(every_n_epochs=3)
    with pytest.raises(ValueError, match=r"callbacks.early_stopping.monitor='val/fid_fmnist' .* every 3 epochs"):
        every_third.setup(SimpleNamespace(callbacks=[EarlyStopping(monitor="val/fid_fmnist")]), None, "fit")
    for fine in (ModelCheckpoint(monitor="val/loss"), ModelCheckpoint(monitor="test/fid_fmnist"), ModelCheckpoint()):
        every_third.setup(SimpleNamespace(callbacks=[fine]), None, "fit")
    ImageFeatureMetrics(every_n_epochs=1).setup(SimpleNamespace(callbacks=[ModelCheckpoint(monitor="val/kid_fmnist")]),
                                                None, "fit")
    with pytest.raises(ValueError, match=r"monitor='val/kid_fmnist' is logged by callbacks.image_metrics only at test"):
        ImageFeatureMetrics(every_n_epochs=None).setup(
            SimpleNamespace(callbacks=[ModelCheckpoint(monitor="val/kid_fmnist")]), None, "fit")


@pytest.mark.parametrize("callback", ["toy_metrics", "likelihood", "samples"])
def test_an_evaluation_due_between_validations_is_refused_before_training(callback):
    from types import SimpleNamespace

    from divlab.callbacks.likelihood import LikelihoodEvaluator
    from divlab.callbacks.samples import SampleLogger

    every_ten = {"toy_metrics": ToyDivergences, "likelihood": LikelihoodEvaluator, "samples": SampleLogger}[callback](
        every_n_epochs=10)
    module = SimpleNamespace(log_likelihood=lambda x: x, log_likelihood_is_exact=True, log_likelihood_bound=None,
                             log_likelihood_is_discrete=False, log_likelihood_matches_sample=True)  # a LikelihoodModel

    def trainer(every_validation, kind="points"):
        return SimpleNamespace(check_val_every_n_epoch=every_validation, callbacks=[],
                               datamodule=SimpleNamespace(kind=kind, has_log_prob=True, centres=torch.zeros(8, 2)))

    for fine in (1, 2, 5, 10, None):  # divisors of 10, and validation by steps (None)
        every_ten.setup(trainer(fine), module, "fit")
    with pytest.raises(ValueError, match=rf"callbacks.{callback}.every_n_epochs=10 is not a multiple of "
                                         r"trainer.check_val_every_n_epoch=3, .* \(e.g. 12\)"):
        every_ten.setup(trainer(3), module, "fit")
    every_ten.setup(trainer(3), module, "test")  # a test alone has no validation cadence to meet
    if callback == "toy_metrics":  # nor a callback that does not apply to the run's data
        every_ten.setup(trainer(3, kind="text"), module, "fit")
    every_ten.every_n_epochs = 1  # "at every validation", whatever the cadence
    every_ten.setup(trainer(3), module, "fit")


class CountingPool(ImagePool):
    def __init__(self, images: torch.Tensor):
        super().__init__(images)
        self.calls = 0

    def sample(self, n: int, generator=None) -> torch.Tensor:
        self.calls += 1
        return super().sample(n, generator)


def test_samples_are_drawn_once_per_weights_and_again_when_the_weights_change(digits, tmp_path, monkeypatch):
    """A second evaluation from the same weights (a fit's test on its last checkpoint) reuses the samples and
    scores exactly what drawing them again would; changed weights draw new ones."""
    pool = CountingPool(digits.real_samples("train", 400))
    model, callback = FixedModel(pool, False), image_callback(tmp_path, 100, batch_size=100)
    extracted = []
    real_extract = image_metrics.extract_features
    monkeypatch.setattr(image_metrics, "extract_features", lambda net, images, *args: extracted.append(len(images))
                        or real_extract(net, images, *args))
    first = run_test(model, digits, callback, tmp_path)
    again = run_test(model, digits, callback, tmp_path)
    assert pool.calls == 1
    assert len(extracted) == 2  # features of the real images and of the samples, each computed once
    fresh = run_test(model, digits, image_callback(tmp_path, 100, batch_size=100), tmp_path)
    assert pool.calls == 2
    for name in ("fid_digits", "kid_digits", "precision_digits", "coverage_digits"):
        assert again[f"test/{name}"] == first[f"test/{name}"] == fresh[f"test/{name}"]
    with torch.no_grad():
        model.anchor.add_(1.0)
    run_test(model, digits, callback, tmp_path)
    assert pool.calls == 3
