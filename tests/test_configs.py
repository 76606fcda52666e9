"""Configs mirror the code (issue 17): one networks choice for every family, YAML values equal to the
constructors' defaults, a top-level divergence that is read or refused, experiments that inherit."""
import inspect
import os
import re
import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_class, get_object
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, EXPERIMENTS, ROOT, compose_config


@pytest.mark.parametrize("family, networks, role, target", [
    ("gan", "mlp", "generator", "networks.mlp.MLP"),
    ("gan", "conv", "generator", "networks.dcgan.DCGANGenerator"),
    ("vae", "mlp", "encoder", "networks.mlp.MLP"),
    ("vae", "conv", "encoder", "networks.conv.ConvEncoder"),
    ("ddpm", "mlp", "net", "networks.time_mlp.TimeMLP"),
    ("ddpm", "conv", "net", "networks.unet.UNet"),
    ("score", "mlp", "net", "networks.time_mlp.TimeMLP"),
    ("score", "conv", "net", "networks.unet.UNet"),
    ("ar", "gpt", "backbone", "networks.gpt.GPT"),
    ("ar", "s4d", "backbone", "networks.s4d.S4D"),
    ("ar", "mamba", "backbone", "networks.mamba.Mamba"),
])
def test_every_family_takes_its_networks_from_the_one_networks_choice(tmp_path, family, networks, role, target):
    cfg = compose_config(tmp_path, ["~experiment", f"model={family}", f"networks={networks}"])
    assert get_class(cfg.model._target_).family == family
    assert cfg.model[role]._target_ == f"divlab.lightning_modules.{target}"


def test_the_image_networks_bring_their_settings_and_an_unknown_choice_lists_the_valid_ones(tmp_path):
    points = compose_config(tmp_path, ["~experiment", "model=gan", "networks=mlp", "divergence=js"]).model
    images = compose_config(tmp_path, ["~experiment", "model=gan", "networks=conv", "divergence=js"]).model
    assert (points.noise_dim, points.generator_optimizer.lr) == (8, 1e-3)
    assert (images.noise_dim, images.generator_optimizer.lr) == (64, 2e-4)
    assert "hidden" not in images.generator  # the MLP's keys do not leak into the DCGAN's
    with pytest.raises((MissingConfigException, ConfigCompositionException)) as error:
        compose_config(tmp_path, ["model=gan", "networks=unet"])
    assert "networks/unet" in str(error.value) and "conv" in str(error.value) and "mlp" in str(error.value)


# The families whose configs/model/<name>.yaml this project's signature checks cover: every model config.
MIRRORED_MODELS = ["gan", "vae", "ar", "ddpm", "score", "dpo", "ppo", "reward_model"]


def disagreements(node, target: str) -> list[str]:
    """Keys of a config node whose plain value differs from the default of that argument of `target`."""
    parameters = inspect.signature(get_object(target)).parameters
    return [f"{key}: yaml {node[key]!r} vs signature {parameters[key].default!r}" for key in node
            if key in parameters and parameters[key].default is not inspect.Parameter.empty
            and not OmegaConf.is_interpolation(node, key) and not _builds_an_object(node[key])
            and node[key] != parameters[key].default]


def _builds_an_object(value) -> bool:
    """A nested `_target_` (a network, a partial): the config builds what the default, None, leaves out."""
    return OmegaConf.is_dict(value) and "_target_" in value


# Where a model config chooses other than its constructor's default: nowhere (each default in one place).
CONFIG_CHOOSES: dict[str, list[str]] = {}


@pytest.mark.parametrize("model", MIRRORED_MODELS)
def test_a_family_config_mirrors_its_constructors_defaults(model):
    node = OmegaConf.load(CONFIG_DIR / "model" / f"{model}.yaml")
    assert disagreements(node, node._target_) == CONFIG_CHOOSES.get(model, [])
    # and names only arguments the constructor takes (nested groups and Hydra's own keys aside)
    parameters = inspect.signature(get_object(node._target_)).parameters
    assert [key for key in node if key not in parameters and key not in ("_target_", "defaults", "backbone")] == []


def test_every_model_config_is_mirrored():
    assert sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")) == sorted(MIRRORED_MODELS)


def test_the_callback_configs_mirror_their_constructors_defaults():
    callbacks = OmegaConf.load(CONFIG_DIR / "callbacks" / "default.yaml")
    ours = {name: node for name, node in callbacks.items() if node._target_.startswith("divlab.")}
    assert {"samples", "likelihood", "toy_metrics", "image_metrics"} <= set(ours)
    assert {name: disagreements(node, node._target_) for name, node in ours.items()} == {name: [] for name in ours}


def test_a_signature_check_sees_a_changed_default():
    node = OmegaConf.create({"n_samples": 999, "every_n_epochs": "${oc.select:x,1}"})
    assert disagreements(node, "divlab.callbacks.samples.SampleLogger") == ["n_samples: yaml 999 vs signature 64"]


@pytest.mark.parametrize("experiment", ["vae_ring8", "ddpm_ring8", "score_ring8", "char_gpt"])
def test_a_divergence_the_model_does_not_read_fails_before_training(train_with, tmp_path, experiment):
    with pytest.raises(ValueError, match=r"divergence='js' is not read by the model .*model=gan: hinge, js, "):
        train_with(f"experiment={experiment}", "divergence=js", "debug=fdr", "trainer=cpu", "logger=csv")
    assert not (tmp_path / "run.json").exists() and not (tmp_path / "checkpoints").exists()


def test_a_model_divergence_that_replaces_the_top_level_one_is_named(tmp_path):
    from divlab.divergence_choice import check_divergence_is_read

    cfg = compose_config(tmp_path, ["experiment=gan_ring8", "model.divergence=js"])  # the preset: non_saturating
    with pytest.raises(ValueError, match=r"divergence='non_saturating' and model.divergence='js' disagree.*"
                                         r"divergence=js"):
        check_divergence_is_read(cfg)


@pytest.mark.parametrize("divergence, fix", [("hinge", "use model.loss=slic"), ("ipo", "use model.loss=ipo"),
                                             ("js", "model.loss=dpo|ipo|slic and drop divergence=")])
def test_dpo_refuses_the_divergence_that_named_its_loss_and_names_the_loss_key(tmp_path, divergence, fix):
    from divlab.divergence_choice import check_divergence_is_read

    cfg = compose_config(tmp_path, ["experiment=align_dpo", f"divergence={divergence}"])
    with pytest.raises(ValueError, match=rf"divergence='{divergence}' is not read by model=dpo.*{re.escape(fix)}"):
        check_divergence_is_read(cfg)


@pytest.mark.parametrize("overrides, fragment", [
    (["experiment=ddpm_ring8", "++budget.sample_steps=10"],
     "its own model.sample_steps is 100 (set model.sample_steps="),
    (["experiment=vae_ring8", "++budget.ode_steps=8"], "the model has no ode_steps"),
    (["experiment=score_ring8", "++budget.sample_steps=10"], "its own model.sample_steps is 300"),
])
def test_a_budget_the_model_does_not_read_is_refused(tmp_path, overrides, fragment):
    from divlab.divergence_choice import check_budget_is_read

    cfg = compose_config(tmp_path, [*overrides, "debug=tiny"])
    check_budget_is_read(cfg, [])  # debug=tiny's caps apply where they are read
    with pytest.raises(ValueError, match=rf"{overrides[1].split('=')[0].lstrip('+')}=\d+ is not read by the model .*"
                                         rf"{re.escape(fragment)}"):
        check_budget_is_read(cfg, overrides)


def test_a_budget_the_model_reads_passes(tmp_path):
    from divlab.divergence_choice import check_budget_is_read

    overrides = ["~experiment", "model=score", "networks=mlp", "data=ring8", "++budget.sample_steps=10"]
    cfg = compose_config(tmp_path, overrides)
    check_budget_is_read(cfg, overrides)
    assert cfg.model.sample_steps == 10


def test_no_preference_loss_shares_a_name_with_a_gan_divergence():
    from divlab.lightning_modules.alignment_objectives import PREFERENCE_LOSSES
    from divlab.lightning_modules.divergences import DIVERGENCES

    assert not set(PREFERENCE_LOSSES) & set(DIVERGENCES)


def test_the_gan_reads_the_divergence_and_keeps_its_losses_under_another_name(tmp_path):
    import hydra

    cfg = compose_config(tmp_path, ["experiment=gan_ring8", "divergence=hinge"])
    from divlab.divergence_choice import check_divergence_is_read

    check_divergence_is_read(cfg)
    gan = hydra.utils.instantiate(cfg.model, data_shape=(2,), _convert_="all")
    assert gan.divergence == gan.hparams.divergence == "hinge"
    assert gan.objective.name == "hinge" and gan.objective.needs_critic


def sweeper(experiment: str, *overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", *overrides], return_hydra_config=True)
    return cfg.hydra.sweeper


def study_jobs(experiment: str, command_line: tuple[str, ...] = ()) -> list[list[str]]:
    """The overrides of every job `python train.py -m experiment=<experiment> <command_line>` runs."""
    from hydra_plugins.divlab_study_sweeper import study_jobs as jobs

    sweep = sweeper(experiment)
    return jobs(list(sweep.members), dict(sweep.params), list(command_line))


def member_rows(experiment: str, command_line: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Each job's overrides without the seed, once per member row, in sweep order."""
    rows = [tuple(o for o in job if not o.startswith("seed=")) for job in study_jobs(experiment, command_line)]
    return list(dict.fromkeys(rows))


def test_the_studies_sweep_one_member_list():
    rows = member_rows("study_ring8")
    assert len(rows) == 15 and [row[0] for row in rows[:3]] == ["model=vae", "model=ddpm", "model=score"]
    assert rows[3:] == [("model=gan", f"divergence={d}") for d in ("non_saturating", "minimax", "kl", "reverse_kl",
                        "js", "pearson", "squared_hellinger", "total_variation", "wasserstein", "hinge",
                        "least_squares", "mmd")]
    assert len(study_jobs("study_ring8")) == 45  # 15 members × seeds 0, 1, 2, the seeds innermost
    assert [job[-1] for job in study_jobs("study_ring8")[:4]] == ["seed=0", "seed=1", "seed=2", "seed=0"]
    packing = study_jobs("study_ring8_packing")
    assert len(packing) == 11 * 3 * 2 and {job[-1] for job in packing} == {"model.packing=1", "model.packing=4"}
    # on the grid: the same jobs with data=grid25, in every job's overrides
    assert study_jobs("study_ring8", ("data=grid25",)) == [[*job, "data=grid25"] for job in study_jobs("study_ring8")]


def test_the_image_study_runs_every_family_and_each_gan_divergence_at_both_recipes(tmp_path):
    rows = member_rows("study_fashion_mnist")
    assert len(rows) == 22 and len(study_jobs("study_fashion_mnist")) == 66
    configs = [compose_config(tmp_path, ["experiment=study_fashion_mnist", *row]) for row in rows]
    assert [c.model._target_.rsplit(".", 1)[1] for c in configs[:4]] == ["VAE", "DDPM", "ScoreSDE",
                                                                         "AutoregressiveModel"]
    gans = [c for c in configs if c.model._target_.endswith("GAN")]
    shared = [c.model.divergence for c in gans if c.model.n_critic == 1 and c.model.packing == 1
              and c.model.least_squares_labels is None]
    assert sorted(shared) == sorted(["non_saturating", "minimax", "kl", "reverse_kl", "js", "pearson",
                                     "squared_hellinger", "total_variation", "wasserstein", "hinge",
                                     "least_squares", "mmd"])
    reference = {c.model.divergence + ("/pac4" if c.model.packing == 4 else ""): c for c in gans
                 if c.model.n_critic == 5 or c.model.packing == 4 or c.model.least_squares_labels is not None}
    assert sorted(reference) == ["hinge", "js/pac4", "least_squares", "minimax/pac4", "non_saturating/pac4",
                                 "wasserstein"]
    wgan, sngan = reference["wasserstein"], reference["hinge"]
    assert (wgan.model.gp_weight, wgan.model.generator_optimizer.lr, list(wgan.model.critic_optimizer.betas),
            wgan.trainer.max_epochs) == (None, 1.0e-4, [0.0, 0.9], 5)  # null gp_weight: WGAN-GP's λ = 10
    assert sngan.model.critic.spectral_norm and sngan.trainer.max_epochs == 5
    assert list(reference["least_squares"].model.least_squares_labels) == [0, 1, 1]
    # every member on the same 16×16 images, the same number of generator steps
    assert {(c.data.name, c.data.resolution) for c in configs} == {("fashion_mnist", 16)}
    assert {c.trainer.max_epochs * c.trainer.limit_train_batches // c.model.get("n_critic", 1)
            for c in configs} == {600}


def test_a_command_line_that_chooses_a_member_key_runs_its_choice_instead_of_the_members():
    jobs = study_jobs("study_ring8_reference", ("model=gan", "recipe=sngan_hinge", "divergence=hinge,wasserstein"))
    assert [(job[0], job[-1]) for job in jobs] == [(f"seed={s}", f"divergence={d}") for s in (0, 1, 2)
                                                   for d in ("hinge", "wasserstein")]
    assert len(study_jobs("study_ring8", ("trainer.max_epochs=50",))) == 45  # other keys run with every member


def test_a_study_sweep_runs_each_member_it_lists_through_hydra(tmp_path):
    import json

    sweep = tmp_path / "sweep"
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", "experiment=study_ring8", "debug=fdr",
                             "trainer=cpu", "logger=csv", "extras.print_config=false", "hydra.sweeper.params.seed=0",
                             "hydra.sweeper.members=[{model:vae},{model:gan,divergence:js}]",
                             f"paths.log_dir={tmp_path}", f"hydra.sweep.dir={sweep}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads((sweep / f"{job}_study_ring8" / "run.json").read_text()) for job in (0, 1)]
    assert [(r["family"], r["divergence"], r["seed"], r["status"]) for r in records] == [
        ("vae", "elbo", 0, "completed"), ("gan", "js", 0, "completed")]


@pytest.mark.parametrize("data", ["ring8", "grid25"])
def test_reference_study_members_train_the_divergence_and_recipe_they_name(tmp_path, data):
    recipes = {"pacgan_nets": ("batch_size", 100), "wgan_gp": ("n_critic", 5), "sngan_hinge": ("n_critic", 5),
               "fgan": ("batch_size", 4096), "lsgan": ("batch_size", 512)}
    reference = {"js": "pacgan_nets", "minimax": "pacgan_nets", "non_saturating": "pacgan_nets",
                 "wasserstein": "wgan_gp", "hinge": "sngan_hinge", "kl": "fgan", "reverse_kl": "fgan",
                 "pearson": "fgan", "squared_hellinger": "fgan", "total_variation": "fgan",
                 "least_squares": "lsgan", "mmd": None}
    rows = member_rows("study_ring8_reference", (f"data={data}",))
    assert len(rows) == 15
    for row in rows:
        cfg = compose_config(tmp_path, ["experiment=study_ring8_reference", *row])
        assert cfg.data.name == data
        if "model=gan" not in row:
            continue
        recipe = next((o.split("=")[1] for o in row if o.startswith("recipe=")), None)
        assert recipe == reference[cfg.model.divergence], row
        if recipe:
            key, value = recipes[recipe]
            assert (cfg.data.batch_size if key == "batch_size" else cfg.model[key]) == value, row


def resolved_without(cfg, *keys: str) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in keys:
        *parents, last = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node.pop(last)
    return config


def test_presets_that_repeat_another_differ_from_it_only_where_they_say(tmp_path):
    char, bpe = (compose_config(tmp_path, [f"experiment={name}"]) for name in ("char_gpt", "bpe_gpt"))
    assert (bpe.data.tokenizer, bpe.data.bpe_vocab_size, bpe.experiment_name) == ("bpe", 2048, "bpe_gpt")
    keys = ("data.tokenizer", "data.bpe_vocab_size", "experiment_name")
    assert resolved_without(bpe, *keys) == resolved_without(char, *keys)
    ring8, grid25 = (compose_config(tmp_path, ["experiment=study_ring8", *data]) for data in ([], ["data=grid25"]))
    assert (grid25.data.name, grid25.experiment_name) == ("grid25", "study_grid25")
    assert ring8.experiment_name == "study_ring8"
    assert resolved_without(grid25, "data", "experiment_name") == resolved_without(ring8, "data", "experiment_name")


def test_networks_given_to_a_model_without_networks_choices_fails_before_training(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=align_dpo", "networks=conv",
                             "extras.print_config=false", f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 1
    assert ("networks=conv is not read by model=dpo, which would ignore it; the models with a networks choice: "
            "ar, ddpm, gan, score, vae") in result.stderr
    assert not (run_dir / "run.json").exists() and not (run_dir / "checkpoints").exists()


def test_a_family_refuses_networks_it_does_not_have_naming_its_own(tmp_path):
    with pytest.raises((MissingConfigException, ConfigCompositionException)) as error:
        compose_config(tmp_path, ["experiment=char_gpt", "networks=conv"])
    assert "networks/ar/conv" in str(error.value)
    assert all(name in str(error.value) for name in ("gpt", "s4d", "mamba"))


def test_a_group_by_its_old_name_is_refused_naming_the_new_one(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=char_gpt", "model/backbone=mamba"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "the group model/backbone is now networks; use networks=mamba" in result.stderr


# the evaluation callbacks that run on one kind of data only (their `applies`)
DATA_KIND_OF_CALLBACK = {"toy_metrics": "points", "image_metrics": "image"}


@pytest.mark.parametrize("debug", [None, "tiny"])
def test_every_preset_validates_at_every_epoch_its_evaluation_callbacks_are_due(tmp_path, debug):
    # What the callbacks refuse at the start of a fit (periodic.check_cadence_is_validated), for every preset as it
    # ships and under debug=tiny, whose one epoch must be validated whatever the preset's cadence.
    for experiment in EXPERIMENTS:
        cfg = compose_config(tmp_path, [f"experiment={experiment}", *([f"debug={debug}"] if debug else [])])
        every_validation = cfg.trainer.check_val_every_n_epoch
        if debug:
            assert every_validation == 1, experiment
        kind = getattr(get_object(cfg.data._target_), "kind", None)  # None for a factory function
        for name, callback in (cfg.callbacks or {}).items():
            if DATA_KIND_OF_CALLBACK.get(name, kind) != kind:  # skipped on this data: no cadence to meet
                continue
            due = (callback or {}).get("every_n_epochs")
            assert due in (None, 1) or due % every_validation == 0, (experiment, name, due, every_validation)
