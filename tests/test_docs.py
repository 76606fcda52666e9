"""The documentation site (mkdocs.yml, docs/): it builds strictly, every config file is on the configuration
page, and the tutorials' code runs (issue 43)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "hooks"))

import configuration  # noqa: E402  (docs/hooks/configuration.py, the page's generator)


def test_the_site_builds_strictly(tmp_path):
    # --strict: a broken internal link or anchor, a missing page, a docstring mkdocstrings cannot render, fails.
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ,
                                                                            "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "divergences" / "index.html").is_file()


def test_the_configuration_page_lists_every_config_file():
    page = configuration.render_groups(ROOT / "configs")
    missing = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "configs").rglob("*.yaml"))
               if path.parent != ROOT / "configs" and f"(`{path.relative_to(ROOT).as_posix()}`)" not in page]
    assert not missing, missing
    assert configuration.MARKER in (ROOT / "docs" / "configuration.md").read_text()


def test_a_leading_comment_becomes_prose_and_commands(tmp_path):
    (tmp_path / "train.yaml").write_text("defaults:\n  # The thing.\n  - thing: a\n")
    (tmp_path / "thing").mkdir()
    (tmp_path / "thing" / "a.yaml").write_text("# @package _global_\n# Option a, with <placeholders>:\n"
                                               "#   python train.py thing=a\nx: 1\n")
    (tmp_path / "thing" / "b.yaml").write_text("_target_: pkg.B\nsize: 3\n")
    page = configuration.render_groups(tmp_path)
    assert "Option a, with &lt;placeholders&gt;:" not in page  # only < is escaped, which is enough for HTML
    assert "Option a, with &lt;placeholders>:" in page
    assert "```bash\n    python train.py thing=a\n    ```" in page
    assert "`_target_: pkg.B`, `size: 3`" in page
    assert "The thing." in page and "Default in `train.yaml`: `thing=a`." in page
