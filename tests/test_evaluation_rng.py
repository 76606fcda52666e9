"""Validation and test draw from their own random stream (`EvaluationRandomStream`, the loaders' own generator):
how often a run validates or logs samples leaves its training untouched, and the same weights get the same
evaluation at validation, at test and under `divlab eval`."""
import json

import pytest
import torch

from divlab import cli

SAMPLE_LOGGER = ["++callbacks.samples._target_=divlab.callbacks.samples.SampleLogger",
                 "++callbacks.samples.every_n_epochs=1", "++callbacks.samples.n_samples=8"]
TINY_VAE = ["experiment=vae_ring8", "debug=tiny", "trainer=cpu", "logger=csv", "trainer.max_epochs=3"]


def final_weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


TINY_PACKED_GAN = ["experiment=best_ring8", "debug=tiny", "trainer=cpu", "logger=csv", "trainer.max_epochs=3",
                   "callbacks.toy_metrics.every_n_epochs=1"]


@pytest.mark.parametrize("run", [TINY_VAE, TINY_PACKED_GAN], ids=["vae", "packed_ema_gan"])
def test_validation_cadence_and_sample_logging_leave_training_unchanged(train_with, tmp_path, run):
    """The VAE draws at validation (its ELBO's noise, the likelihood callback's importance samples, the sample
    logger's latents, the loader's base seed), the packed GAN with a weight average its toy metrics' samples:
    validating every epoch with every callback, or once at the end with none, must train the same weights
    (`best_ring8` and `best_grid25` validate only when their toy metrics are due, on that promise)."""
    _, every_epoch = train_with(*run, "test=false", "trainer.check_val_every_n_epoch=1", *SAMPLE_LOGGER,
                                out=tmp_path / "every_epoch")
    _, once = train_with(*run, "test=false", "trainer.check_val_every_n_epoch=3", "callbacks.likelihood=null",
                         "callbacks.toy_metrics=null", out=tmp_path / "once")
    trained = [k for k in every_epoch if k.startswith("train/")]
    assert trained and all(every_epoch[k] == once[k] for k in trained)
    a, b = final_weights(tmp_path / "every_epoch"), final_weights(tmp_path / "once")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Both validated at the end, on the same weights and the same evaluation stream: the same validation loss.
    assert every_epoch["val/loss"] == once["val/loss"]


def test_a_runs_test_metrics_are_reproduced_by_divlab_eval_of_its_checkpoint(train_with, tmp_path):
    """The fit's test (the best checkpoint, here the last: one epoch) and `divlab eval` of that checkpoint draw the
    same evaluation noise: the VAE's test ELBO and the importance-weighted likelihood agree to the bit."""
    _, fitted = train_with(*TINY_VAE[:-1], "trainer.max_epochs=1", out=tmp_path / "run")
    assert cli.main(["eval", f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}", "debug=tiny",
                     "trainer=cpu", f"hydra.run.dir={tmp_path / 'eval'}"]) in (0, None)
    evaluated = json.loads((tmp_path / "eval" / "eval.json").read_text())["metrics"]
    for name in ("test/loss", "test/nll"):
        assert evaluated[name] == fitted[name], name


def test_sample_grids_come_from_the_loggers_seed_and_leave_the_global_stream_alone(tmp_path, monkeypatch):
    """Two grids from the same weights are the same images, and drawing them moves no global random state: the
    grid at the end of training (outside any evaluation pass) cannot shift what comes after it."""
    from types import SimpleNamespace

    import divlab.callbacks.samples as samples_module

    class Gaussian(torch.nn.Module):
        device = torch.device("cpu")

        def sample(self, n):
            return torch.randn(n, 2)

    drawn = []
    monkeypatch.setattr(samples_module, "RENDERERS", {"toy": lambda samples, path, dm: drawn.append(samples) or path})
    trainer = SimpleNamespace(datamodule=SimpleNamespace(kind="toy"), default_root_dir=str(tmp_path), global_step=0,
                              loggers=[])
    logger = samples_module.SampleLogger(n_samples=5, seed=3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    logger.log_samples(trainer, Gaussian())
    logger.log_samples(trainer, Gaussian())
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(3)
    assert torch.equal(drawn[0], drawn[1]) and torch.equal(drawn[0], torch.randn(5, 2))
