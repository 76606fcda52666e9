"""State-space backbones: scans against their sequential definition, S4D's kernel against its closed
form, causality, recurrent decoding against a full recompute, exact likelihood normalisation."""
import functools
import itertools
import math

import pytest
import torch

from divlab.lightning_modules.autoregressive import AutoregressiveModel
from divlab.lightning_modules.networks.mamba import (
    Mamba,
    SelectiveSSM,
    selective_discretise,
    selective_scan,
    selective_step,
)
from divlab.lightning_modules.networks.s4d import S4D, S4DLayer, s4d_kernel, zoh_discretise
from divlab.lightning_modules.networks.ssm_scan import chunked_scan, sequential_scan

pytestmark = pytest.mark.usefixtures("single_thread")

BACKBONES = {
    "s4d": functools.partial(S4D, n_layer=2, n_embd=16, d_state=8),
    "mamba": functools.partial(Mamba, n_layer=2, n_embd=16, d_state=4, chunk_size=3),
}


@pytest.mark.parametrize("length", [1, 7, 13, 33])
@pytest.mark.parametrize("chunk_size", [1, 3, 4, 8, 16])
def test_chunked_scan_equals_sequential_loop_with_gradients(length, chunk_size):
    torch.manual_seed(length * 100 + chunk_size)
    a = torch.rand(2, length, 3, 4).requires_grad_()
    b = torch.randn(2, length, 3, 4).requires_grad_()
    h0 = torch.randn(2, 3, 4).requires_grad_()
    weights = torch.randn(2, length, 3, 4)
    grads = []
    for scan in (lambda: sequential_scan(a, b, h0), lambda: chunked_scan(a, b, chunk_size, h0)):
        states, last = scan()
        grads.append((states, last, *torch.autograd.grad((states * weights).sum() + last.sum(), (a, b, h0))))
    for reference, chunked in zip(*grads):
        torch.testing.assert_close(chunked, reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("length, chunk_size", [(10, 4), (17, 5), (32, 8)])
def test_selective_scan_equals_step_by_step_recurrence_with_gradients(length, chunk_size):
    torch.manual_seed(0)
    layer = SelectiveSSM(8, d_state=4, chunk_size=chunk_size)
    u, delta = torch.randn(2, length, 16).requires_grad_(), (torch.rand(2, length, 16) * 0.5).requires_grad_()
    B, C = torch.randn(2, length, 4).requires_grad_(), torch.randn(2, length, 4).requires_grad_()

    def loop():
        A, h, ys = layer.A(), torch.zeros(2, 16, 4), []
        for t in range(length):
            y, h = selective_step(u[:, t], delta[:, t], A, B[:, t], C[:, t], layer.D, h)
            ys.append(y)
        return torch.stack(ys, 1), h

    weights = torch.randn(2, length, 16)
    results = []
    for run in (loop, lambda: selective_scan(u, delta, layer.A(), B, C, layer.D, chunk_size)):
        y, last = run()
        loss = (y * weights).sum() + last.sum()
        results.append((y, last, *torch.autograd.grad(loss, (u, delta, B, C, layer.A_log, layer.D))))
    for reference, chunked in zip(*results):
        torch.testing.assert_close(chunked, reference, atol=1e-4, rtol=1e-4)


def test_mamba_discretisation_of_scalar_systems_is_the_closed_form():
    # Ā = exp(ΔA) (zero-order hold), B̄u = ΔBu (Euler, as Mamba): Δ = 0.3, A = −0.7, B = 2, u = 1.5.
    a, b = selective_discretise(torch.tensor([[1.5]]), torch.tensor([[0.3]]), torch.tensor([[-0.7]]),
                                torch.tensor([[2.0]]))
    assert a.item() == pytest.approx(0.8105842459701871, rel=1e-6)  # e^{−0.21}
    assert b.item() == pytest.approx(0.9, rel=1e-6)
    # Channels d and states n pair up as [d, n]: Δ_d A_{dn} and Δ_d u_d B_n.
    u, delta = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.3, 0.5]])
    A, B = torch.tensor([[-1.2, -0.1, -3.0], [-0.4, -2.0, -0.05]]), torch.tensor([[0.5, -1.0, 2.0]])
    a, b = selective_discretise(u, delta, A, B)
    for d in range(2):
        for n in range(3):
            assert a[0, d, n].item() == pytest.approx(math.exp(delta[0, d].item() * A[d, n].item()), rel=1e-6)
            assert b[0, d, n].item() == pytest.approx(delta[0, d].item() * u[0, d].item() * B[0, n].item(), rel=1e-6)


def test_selective_scan_of_a_constant_scalar_system_is_the_geometric_sum():
    # Constant Δ, A, B, C, u = 1: h_t = ΔB (1 − e^{ΔA t})/(1 − e^{ΔA}), y_t = C h_t + D.
    length, dt, a, b, c, d = 9, 0.4, -0.8, 1.5, 0.7, 0.2
    ones = torch.ones(1, length, 1)
    y, last = selective_scan(ones, dt * ones, torch.tensor([[a]]), b * ones, c * ones, torch.tensor([d]), 4)
    decay = math.exp(dt * a)
    h = [dt * b * (1 - decay ** t) / (1 - decay) for t in range(1, length + 1)]
    assert y[0, :, 0].tolist() == pytest.approx([c * ht + d for ht in h], rel=1e-5)
    assert last.item() == pytest.approx(h[-1], rel=1e-5)


@pytest.mark.parametrize("init, imag", [
    ("lin", [0.0, math.pi, 2 * math.pi, 3 * math.pi]),  # S4D-Lin: π n
    ("inv", [17.82535362629228, 4.244131815783875, 1.5278874536821956, 0.3637827270671892]),  # (N/π)(N/(2n+1) − 1)
])
def test_s4d_initialisation_is_the_papers_formula(init, imag):
    # Gu et al. 2022 (S4D), §4: A_n = −½ + i·imag_n for n < N/2, with N = 8 here; every channel alike.
    A = S4DLayer(3, d_state=8, init=init).A()
    assert A.shape == (3, 4)
    torch.testing.assert_close(A.real, torch.full((3, 4), -0.5))
    torch.testing.assert_close(A.imag, torch.tensor(imag).expand(3, 4))


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_s4d_convolution_equals_recurrence(init):
    torch.manual_seed(1)
    layer = S4DLayer(6, d_state=16, init=init)
    with torch.no_grad():
        layer.log_dt.uniform_(math.log(1e-3), math.log(0.5))
    u = torch.randn(3, 40, 6)
    h, ys = torch.zeros(3, 6, 8, dtype=torch.cfloat), []
    for t in range(40):
        y, h = layer.ssm_step(u[:, t], h)
        ys.append(y)
    torch.testing.assert_close(layer.ssm(u), torch.stack(ys, 1), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("a", [-0.7, complex(-0.3, 2.0)])
def test_s4d_kernel_of_a_one_dimensional_state_is_the_closed_form(a):
    """x' = a x + b u, y = c x under zero-order hold with step Δ: K_k = c (e^{Δa} − 1)/a · b · e^{kΔa}."""
    dt, c, length = 0.3, complex(1.5, -0.4), 12
    A = torch.tensor([[a]], dtype=torch.cdouble)
    log_dt = torch.tensor([math.log(dt)], dtype=torch.double)
    kernel = s4d_kernel(log_dt, A, torch.tensor([[c]], dtype=torch.cdouble), length)
    k = torch.arange(length, dtype=torch.double)
    a = torch.tensor(a, dtype=torch.cdouble)
    closed_form = c * (torch.exp(dt * a) - 1) / a * torch.exp(k * dt * a)
    torch.testing.assert_close(kernel[0], closed_form, atol=1e-10, rtol=1e-10)
    # and ZOH itself, independently: exp([[a, b], [0, 0]] Δ) = [[Ā, B̄], [0, 1]] (Van Loan), b = 1
    A_bar, B_bar = zoh_discretise(log_dt, A)
    van_loan = torch.linalg.matrix_exp(torch.tensor([[a, 1], [0, 0]], dtype=torch.cdouble) * dt)
    torch.testing.assert_close(torch.stack([A_bar[0, 0], B_bar[0, 0]]), van_loan[0], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", BACKBONES)
def test_changing_a_token_changes_no_earlier_logit(name):
    torch.manual_seed(2)
    model = BACKBONES[name](vocab_size=7).eval()
    x = torch.randint(0, 8, (2, 12))  # id 7 is begin-of-sequence
    changed = x.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 7
    before, after = model(x), model(changed)
    torch.testing.assert_close(after[:, :6], before[:, :6], atol=1e-6, rtol=0)
    assert (after[:, 6:] - before[:, 6:]).abs().amax() > 1e-4  # the test can see a change where there is one


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("prefix", [1, 2, 6])
def test_recurrent_decoding_equals_full_recompute(name, prefix):
    """prefill a prefix (prefix 2 < d_conv exercises the padded conv window), then one step per token."""
    torch.manual_seed(3)
    model = BACKBONES[name](vocab_size=7).eval()
    x = torch.randint(0, 7, (2, 11))
    full = model(x)
    logits, cache = model.prefill(x[:, :prefix])
    torch.testing.assert_close(logits, full[:, prefix - 1], atol=1e-4, rtol=1e-4)
    for t in range(prefix, x.shape[1]):
        logits, cache = model.step(x[:, t], cache)
        torch.testing.assert_close(logits, full[:, t], atol=1e-4, rtol=1e-4)
    assert model.cache_length(cache) == x.shape[1] and model.context_size is None


@pytest.mark.parametrize("name", BACKBONES)
def test_exact_likelihood_sums_to_one_over_all_sequences(name):
    """Vocabulary 3, length 4: the ar family's exact log p(x) (x_1 from BOS) sums to 1 over all 81 sequences."""
    torch.manual_seed(4)
    model = AutoregressiveModel((4,), BACKBONES[name], functools.partial(torch.optim.AdamW), vocab_size=3).eval()
    x = torch.tensor(list(itertools.product(range(3), repeat=4)))
    assert model.log_likelihood(x).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_char_experiments_match_char_gpt_parameter_count_within_ten_percent(tmp_path):
    from hydra.utils import instantiate

    from conftest import compose_config

    counts = {}
    for name in ("char_gpt", "char_s4d", "char_mamba"):
        cfg = compose_config(tmp_path, [f"experiment={name}"])
        # 83: the default corpus's characters (the vocabulary adds the same tied rows to every backbone)
        backbone = instantiate(cfg.model.backbone)(vocab_size=83, block_size=cfg.data.block_size)
        counts[name] = sum(p.numel() for p in backbone.parameters())
    for name in ("char_s4d", "char_mamba"):
        assert abs(counts[name] / counts["char_gpt"] - 1) <= 0.10, counts
