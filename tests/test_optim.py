"""Optimiser construction (lightning_modules/optim.py): fused where torch has a fused kernel, the config's own
choice kept, and the fused update the same as the per-parameter loop's."""
import functools
import math
from types import SimpleNamespace

import pytest
import torch

from divlab.lightning_modules.networks.gpt import GPT
from divlab.lightning_modules.optim import make_optimizer, warmup_cosine

CPU = SimpleNamespace(device=torch.device("cpu"), _trainer=None)  # a module on a CPU, no Trainer attached yet


@pytest.mark.parametrize("optimizer", [torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD])
def test_optimisers_with_a_fused_kernel_are_fused_on_a_cpu(optimizer):
    made = make_optimizer(functools.partial(optimizer, lr=1e-3), [torch.nn.Parameter(torch.ones(3))], CPU)
    assert made.defaults["fused"] is True


def test_under_mixed_precision_the_optimiser_is_not_fused_since_lightnings_clipping_refuses_it():
    # Lightning's MixedPrecision.clip_gradients raises for an optimiser that unscales inside its step (fused).
    from lightning.pytorch.plugins.precision import MixedPrecision

    params = [torch.nn.Parameter(torch.ones(3))]
    adamw = functools.partial(torch.optim.AdamW, lr=1e-3)
    for plugin, fused in ((MixedPrecision("bf16-mixed", "cpu"), False), (SimpleNamespace(), True)):
        module = SimpleNamespace(device=torch.device("cpu"), _trainer=SimpleNamespace(precision_plugin=plugin))
        assert bool(make_optimizer(adamw, params, module).defaults["fused"]) is fused


def test_the_configs_own_implementation_and_optimisers_without_a_fused_kernel_are_left_alone():
    params = [torch.nn.Parameter(torch.ones(3))]
    chosen = make_optimizer(functools.partial(torch.optim.AdamW, lr=1e-3, foreach=False), params, CPU)
    assert not chosen.defaults["fused"] and chosen.defaults["foreach"] is False
    assert "fused" not in make_optimizer(functools.partial(torch.optim.RMSprop, lr=1e-3), params, CPU).defaults


def test_the_fused_adamw_step_equals_the_per_parameter_loop_on_a_gpt():
    # A step of AdamW with weight decay on a small GPT's real gradients: fused (make_optimizer) and torch's default
    # CPU loop (foreach=False) from the same weights end at the same weights to float rounding (2e-9 here; the step
    # moves a weight by up to lr = 1e-2, weight decay alone by ~2e-5). Later steps drift apart chaotically (3e-6
    # after 2, 6e-5 after 20): Adam's near-sign updates amplify rounding in gradients near 0.
    torch.manual_seed(0)
    models = [GPT(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    adamw = functools.partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.1)
    optimizers = [make_optimizer(adamw, models[0].parameters(), CPU),
                  make_optimizer(functools.partial(adamw, foreach=False), models[1].parameters(), CPU)]
    assert optimizers[0].defaults["fused"] and not optimizers[1].defaults["fused"]
    for step in range(1):
        tokens = torch.randint(0, 11, (4, 8), generator=torch.Generator().manual_seed(step))
        for model, optimizer in zip(models, optimizers):
            loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    moved = sum((a - b).abs().sum() for a, b in zip(models[0].parameters(), GPT(11, 8, 1, 2, 16).parameters()))
    assert moved > 0
    for fused, loop in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(fused, loop, rtol=0, atol=1e-7)


def test_a_gpt_has_no_biases_in_its_linears_and_layer_norms_unless_asked():
    with_biases, without = GPT(11, 8, 2, 2, 16, bias=True), GPT(11, 8, 2, 2, 16)
    biases = [name for name, _ in with_biases.named_parameters() if name.endswith("bias")]
    assert len(biases) == 2 * 6 + 1  # per block: qkv, proj, fc, proj, ln_1, ln_2; and ln_f
    assert not [name for name, _ in without.named_parameters() if name.endswith("bias")]
    n = sum(p.numel() for p in with_biases.parameters()) - sum(p.numel() for p in without.parameters())
    assert n == 2 * (3 * 16 + 16 + 4 * 16 + 16 + 16 + 16) + 16


def test_the_warmup_cosine_schedule_has_nanogpts_rates_at_its_landmarks():
    # nanoGPT's get_lr at lr 1e-3, 100 warm-up iterations, decay over 400 to min_lr 1e-4, by hand:
    # it 0: 1e-3·1/101; it 99: 1e-3·100/101; it 100: 1e-3 (cosine at 0); it 250 (half way): 1e-4 + 0.5·9e-4;
    # it 400 and after: 1e-4.
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1e-3)
    schedule = warmup_cosine(optimizer, warmup_steps=100, total_steps=400, min_lr_ratio=0.1)
    rates = []
    for _ in range(402):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = {0: 1e-3 / 101, 99: 1e-3 * 100 / 101, 100: 1e-3, 250: 1e-4 + 0.5 * 9e-4, 400: 1e-4, 401: 1e-4}
    assert {step: pytest.approx(rates[step], rel=1e-9) for step in expected} == expected
    assert rates[175] == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi * 75 / 300)) * 9e-4, rel=1e-9)
    short = warmup_cosine(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0), 100, total_steps=30)
    assert [short.lr_lambdas[0](step) for step in (0, 29, 99, 100)] == [1 / 101, 30 / 101, 100 / 101, 0.1]
    with pytest.raises(ValueError, match="warmup_steps=-1 must be >= 0 and total_steps=400 >= 1"):
        warmup_cosine(optimizer, warmup_steps=-1, total_steps=400)
