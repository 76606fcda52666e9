"""GPU paths: `gpu`-marked tests run on CUDA (scripts/gpu_check.sh) and skip elsewhere; the GPU check
script itself is smoke-tested on CPU so it is ready for the first GPU machine."""
import sys

import pytest
import torch

from conftest import ROOT

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
def test_mamba_kernels_match_the_pure_torch_scan():
    from divlab.lightning_modules.networks import mamba

    if mamba.selective_scan_fn is None:
        pytest.skip("mamba-ssm is not installed")
    sys.path.insert(0, str(ROOT / "scripts"))
    from gpu_check import mamba_kernel_check

    assert mamba_kernel_check()["max_abs_error"] < 1e-3


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("network", ["gpt", "unet"])
def test_bf16_autocast_matches_fp32_on_cuda(network):
    from divlab.lightning_modules.networks.gpt import GPT
    from divlab.lightning_modules.networks.unet import UNet

    torch.manual_seed(0)
    if network == "gpt":
        net, inputs = GPT(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=128), (torch.randint(65, (8, 64)),)
    else:
        net = UNet(in_shape=(1, 28, 28), out_shape=(1, 28, 28))
        inputs = (torch.randn(8, 1, 28, 28), torch.rand(8))
    net, inputs = net.cuda(), tuple(x.cuda() for x in inputs)
    reference = net(*inputs).float()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = net(*inputs).float()
    assert torch.isfinite(low).all()
    assert (low - reference).abs().max() < 0.05 * reference.abs().max() + 0.05


def test_gpu_check_skips_cleanly_without_cuda_and_its_cases_run_on_cpu(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import gpu_check

    if not torch.cuda.is_available():
        monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", str(tmp_path / "gpu.md")])
        assert gpu_check.main() == 0 and not (tmp_path / "gpu.md").exists()
    # The same command a GPU machine runs, on CPU: bf16-mixed, StepTimer measuring, no callbacks otherwise.
    row = gpu_check.run_case("gan_mmd", compiled=False, devices=1, steps=8, workdir=tmp_path, accelerator="cpu")
    assert row["status"] == "pass", row
    assert row["ms_per_step"] > 0 and row["peak_gib"] is None
    assert "| gan_mmd | 1 | bf16-mixed | False |" in gpu_check.markdown([row], "cpu")
