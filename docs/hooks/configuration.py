"""MkDocs hook: renders every config group and option of `configs/` into docs/configuration.md.

The page holds the marker `<!-- configuration:groups -->`; at build time it is replaced by one section per
group (a folder of `configs/`), listing each option (a YAML file) with its leading comment, or, for a file
without one, its own settings. So the page is the config tree as it is, never a copy that can drift.
`render_groups(config_dir)` is importable on its own (tests/test_docs.py checks that every file is listed).
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

MARKER = "<!-- configuration:groups -->"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

# What each group chooses and the code it mirrors. A group not listed here still renders, without this line.
GROUP_TEXT = {
    "data": "The dataset and its loader: a LightningDataModule (`divlab/datamodules/`, `divlab/alignment/`).",
    "model": "The family: a LightningModule whose `training_step` implements its divergence "
             "(`divlab/lightning_modules/`, one file per family; the values mirror the constructor's signature).",
    "networks": "The networks of whichever family runs: `mlp` (2-D points) or `conv` (images); for `model=ar`, "
                "`gpt`, `s4d` or `mamba`. Each family's "
                "part is `configs/networks/<family>/<choice>.yaml`, included by `configs/model/<family>.yaml`; "
                "choosing data of the other kind means choosing networks too (`data=ring8 model=gan networks=mlp`).",
    "networks/ar": "The autoregressive family's sequence network, the backbone (included by `networks=gpt|s4d|mamba`; "
                   "also the default reference policy's).",
    "networks/ddpm": "DDPM's networks (included by `networks=`; not chosen on the command line).",
    "networks/gan": "The GAN's generator and critic (included by `networks=`; not chosen on the command line).",
    "networks/score": "The score SDE's networks (included by `networks=`; not chosen on the command line).",
    "networks/vae": "The VAE's encoder and decoder (included by `networks=`; not chosen on the command line).",
    "callbacks": "Lightning callbacks: checkpoints and the evaluation instruments (`divlab/callbacks/`). "
                 "Combine with a list: `'callbacks=[default,early_stopping]'`.",
    "logger": "Where metrics go besides `run.json` (`divlab/tracking/` or Lightning's loggers).",
    "trainer": "Lightning's `Trainer` arguments: accelerator, devices, strategy, precision, budget.",
    "experiment": "Presets: data + model + networks + budget + evaluation cadence. `study_*` presets sweep "
                  "families and divergences with `-m`.",
    "debug": "Small, fast variants of any run, for checking that it works.",
    "recipe": "A GAN's training recipe from a paper (or divlab's best), on top of an experiment.",
    "policy": "The frozen reference policy π_ref of the alignment family.",
    "hparams_search": "Hyperparameter searches with Hydra's Optuna sweeper (`pip install 'divlab[optuna]'`).",
    "paths": "Where runs and datasets go.",
    "hydra": "Run directories and Hydra callbacks.",
    "hydra/launcher": "Launchers for `-m` sweeps (`pip install 'divlab[slurm]'`).",
    "hydra/sweeper": "Sweepers for `-m` sweeps; `study` runs a study's members, each a row of `model`/`divergence`/"
                     "`recipe` overrides, at every seed (`hydra_plugins/divlab_study_sweeper`).",
    "local": "Machine-specific settings kept out of git (`configs/local/*.yaml` is ignored), e.g. `paths.data_dir`.",
}


def leading_comment(path: Path) -> list[str]:
    """The file's first comment lines (Hydra's `# @package` directive left out), without the `# `."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# @package"):
            continue
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return lines


def own_settings(path: Path, limit: int = 5) -> str:
    """For a file without a comment: its top-level settings (`_target_` first), as inline code."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        return ""
    items = [(k, v) for k, v in data.items() if k != "defaults"]
    items.sort(key=lambda kv: kv[0] != "_target_")
    shown = []
    for key, value in items[:limit]:
        if isinstance(value, dict):
            target = value.get("_target_")
            shown.append(f"`{key}`: `{target}`" if target else f"`{key}`")
        else:
            shown.append(
                f"`{key}: {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}`"
            )
    if len(items) > limit:
        shown.append("…")
    bases = [d for d in data.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    prefix = f"extends `{', '.join(bases)}`; " if bases else ""
    return prefix + ", ".join(shown)


def _prose(text: str) -> str:
    # Comments are plain text: keep <placeholders> and stray asterisks literal.
    return text.replace("<", "&lt;").replace("*", r"\*")


def comment_markdown(lines: list[str], indent: str) -> str:
    """Comment lines as Markdown: indented lines (commands) become a code block, the rest one paragraph."""
    out, prose, code = [], [], []

    def flush_prose():
        if prose:
            out.append(indent + _prose(" ".join(s.strip() for s in prose)))
            prose.clear()

    def flush_code():
        if code:
            out.extend(["", indent + "```bash", *(indent + s for s in code), indent + "```", ""])
            code.clear()

    for line in lines:
        if re.match(r"\s{2,}\S", line):
            flush_prose()
            code.append(line.strip())
        else:
            flush_code()
            prose.append(line)
    flush_prose()
    flush_code()
    return "\n".join(out).strip("\n")


def default_options(config_dir: Path) -> dict[str, tuple[str, list[str]]]:
    """train.yaml's defaults list: group → (default option, the comment lines just above it)."""
    defaults, comment = {}, []
    for line in (config_dir / "train.yaml").read_text().splitlines():
        match = re.match(r"\s+- (?:optional )?([\w/]+): (\S+)", line)
        if re.match(r"\s+#", line):
            comment.append(line.strip()[2:])
        elif match:
            defaults[match.group(1)] = (match.group(2), comment)
            comment = []
        else:
            comment = []
    return defaults


def groups(config_dir: Path) -> dict[str, list[Path]]:
    """Every folder of `config_dir` holding YAML files (a config group) with its files sorted; the groups in
    GROUP_TEXT's order, any other after them by name."""
    found = {}
    for folder in sorted(p for p in config_dir.rglob("*") if p.is_dir()):
        name = folder.relative_to(config_dir).as_posix()
        files = sorted(folder.glob("*.yaml"))
        if files or name in GROUP_TEXT:
            found[name] = files
    order = list(GROUP_TEXT)
    return dict(sorted(found.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def render_groups(config_dir: Path = CONFIG_DIR) -> str:
    """The Markdown for every group and option under `config_dir`."""
    defaults = default_options(config_dir)
    out = []
    for name, files in groups(config_dir).items():
        out.append(f"### `{name}`\n")
        text = GROUP_TEXT.get(name)
        if text:
            out.append(text + "\n")
        default, comment = defaults.get(name, (None, []))
        if comment:
            out.append(_prose(" ".join(comment)) + "\n")
        if name in defaults:
            out.append(f"Default in `train.yaml`: `{name}={default}`.\n")
        if not files:
            out.append("No files in the repository (machine-specific, git-ignored).\n")
        for path in files:
            lines = leading_comment(path)
            body = comment_markdown(lines, "    ") if lines else "    " + own_settings(path)
            out.append(f"- **`{path.stem}`** (`configs/{path.relative_to(config_dir).as_posix()}`)\n\n{body}\n")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, render_groups())
    return markdown
