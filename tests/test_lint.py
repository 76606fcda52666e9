"""The tree passes ruff (lint and import order, configured in pyproject.toml), as CI runs it."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff_command() -> list[str]:
    if shutil.which("ruff"):
        return ["ruff"]
    pytest.importorskip("ruff", reason="ruff is in the test extra: pip install -e '.[test]'")
    return [sys.executable, "-m", "ruff"]


def test_the_tree_passes_ruff():
    result = subprocess.run([*ruff_command(), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_sees_a_planted_finding(tmp_path):
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "planted.py").write_text("import os\nimport sys\n\nprint(sys.argv)\n")  # an unused import
    result = subprocess.run([*ruff_command(), "check", "--no-cache", "."], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1 and "F401" in result.stdout, result.stdout + result.stderr
