"""The documentation site (mkdocs.yml, docs/): it builds strictly, every config file is on the configuration
page, and the tutorials' code runs (issue 43)."""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_hook(name: str):
    """A module of docs/hooks/ (mkdocs loads it by path, so it is no package), under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"divlab_docs_hook_{name}", ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


configuration = _load_hook("configuration")  # the configuration page's generator


def test_the_site_builds_strictly(tmp_path):
    # --strict: a broken internal link or anchor, a missing page, a docstring mkdocstrings cannot render, fails.
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
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


FENCE = re.compile(r'^```(\w+)(?: title="([^"]+)")?\n(.*?)^```$', re.M | re.S)
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))


def tutorial_program(page: Path, workdir: Path) -> Path:
    """The page's code as a program in `workdir`: fenced blocks with a title are written to that file, the
    untitled Python blocks are joined, in order, into `tutorial.py` (what is returned)."""
    program = []
    for language, title, body in FENCE.findall(page.read_text()):
        if title:
            (workdir / title).parent.mkdir(parents=True, exist_ok=True)
            (workdir / title).write_text(body)
        elif language == "python":
            program.append(body)
    assert program, f"{page} has no Python block to run"
    (workdir / "tutorial.py").write_text("\n\n".join(program))
    return workdir / "tutorial.py"


@pytest.mark.parametrize("page", TUTORIALS, ids=[page.stem for page in TUTORIALS])
def test_tutorial_code_runs(page, tmp_path):
    # The blocks run as the reader would run them, in a fresh directory and process (a tutorial that registers
    # something at run time leaves this process alone), ending in a short real training run.
    program = tutorial_program(page, tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "WANDB_MODE": "offline"}
    result = subprocess.run([sys.executable, str(program)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{page.name}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


def test_the_tutorials_are_the_pages_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    assert TUTORIALS and all(f"tutorials/{page.name}" in nav for page in TUTORIALS)
