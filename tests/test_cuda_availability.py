"""Where NVML cannot load, the CUDA check stops retrying it and answers as before; where it loads, Lightning's
setting stays."""
import os
import subprocess
import sys

from divlab import cuda_availability


def fresh(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={k: v for k, v in os.environ.items() if k != cuda_availability.NVML_CHECK})
    return result.stdout.strip()


def test_without_nvml_the_check_skips_it_and_gives_the_same_answer():
    if cuda_availability.nvml_loadable():
        import pytest
        pytest.skip("NVML loads on this machine: the case under test is a machine without it")
    out = fresh(
        "import os, torch, lightning\n"
        "from divlab.cuda_availability import skip_missing_nvml, NVML_CHECK\n"
        "before = (os.environ[NVML_CHECK], torch.cuda.is_available())\n"
        "skipped = skip_missing_nvml()\n"
        "print(before, skipped, (os.environ[NVML_CHECK], torch.cuda.is_available()))\n")
    # lightning's import set the NVML-based check; it is off after, with CUDA's answer unchanged
    assert out == "('1', False) True ('0', False)"


def test_where_nvml_loads_or_the_check_is_off_nothing_changes(monkeypatch):
    monkeypatch.setenv(cuda_availability.NVML_CHECK, "1")
    monkeypatch.setattr(cuda_availability, "nvml_loadable", lambda: True)
    assert cuda_availability.skip_missing_nvml() is False
    assert os.environ[cuda_availability.NVML_CHECK] == "1"
    monkeypatch.delenv(cuda_availability.NVML_CHECK)
    monkeypatch.setattr(cuda_availability, "nvml_loadable", lambda: False)
    assert cuda_availability.skip_missing_nvml() is False
    assert cuda_availability.NVML_CHECK not in os.environ


def test_a_training_run_builds_its_trainer_with_the_check_skipped(tmp_path):
    if cuda_availability.nvml_loadable():
        import pytest
        pytest.skip("NVML loads on this machine")
    out = fresh(
        "import os, lightning\n"
        "from divlab.cli import trainer_parts\n"
        "from divlab.cuda_availability import NVML_CHECK\n"
        "trainer_parts.callbacks_and_loggers = lambda cfg, seed: (_ for _ in ()).throw(SystemExit(0))\n"
        "try:\n"
        "    trainer_parts.build_trainer({}, None, None, None, None)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ[NVML_CHECK])\n")
    assert out == "0"
