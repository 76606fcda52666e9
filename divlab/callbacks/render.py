"""Turn samples in a DataModule's batch layout into a picture, one function per data kind."""
from pathlib import Path

import torch


def save_image_grid(samples: torch.Tensor, path: Path, datamodule=None, nrow: int = 8) -> None:
    """Images in [−1, 1] as one grid PNG."""
    from torchvision.utils import save_image

    save_image((samples.float().clamp(-1, 1) + 1) / 2, path, nrow=nrow, padding=1)


def save_scatter_over_density(samples: torch.Tensor, path: Path, datamodule=None, title: str | None = None,
                              threshold: float = 3.0) -> None:
    """2-D samples over the true density (when the data has one) or over real samples; with known
    modes, each mode's centre is marked and its `threshold`·σ circle drawn (inside = high quality)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = samples.float().cpu()
    real = datamodule.real_samples("val", 2000) if datamodule is not None else samples
    lo = torch.minimum(real.min(0).values, samples.min(0).values.clamp(min=-10)) - 0.5
    hi = torch.maximum(real.max(0).values, samples.max(0).values.clamp(max=10)) + 0.5
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if datamodule is not None and getattr(datamodule, "has_log_prob", False):
        xs, ys = torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200)
        grid = torch.cartesian_prod(xs, ys)
        density = datamodule.log_prob(grid).exp().view(200, 200).T
        ax.contourf(xs, ys, density.sqrt(), levels=20, cmap="Blues")
    else:
        ax.scatter(real[:, 0], real[:, 1], s=2, c="tab:blue", alpha=0.3, label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, c="tab:orange", alpha=0.6, label="model samples")
    centres = getattr(datamodule, "centres", None)
    if centres is not None:
        centres = centres.float().cpu()
        ax.scatter(centres[:, 0], centres[:, 1], marker="+", s=40, c="black", linewidths=0.8, label="true modes")
        for centre in centres:
            ax.add_patch(plt.Circle(tuple(centre.tolist()), threshold * datamodule.sigma, fill=False, lw=0.6,
                                    color="black"))
        ax.plot([], [], "o", mfc="none", mec="black", ms=6, label=f"{threshold:g}σ: high quality")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.legend(loc="upper right", fontsize=6, framealpha=0.8, markerscale=2)
    ax.set_title(title or path.stem, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_mode_histogram(counts: torch.Tensor, n_samples: int, path: Path, title: str = "") -> None:
    """High-quality samples per mode as bars, with the uniform share a perfect model would give."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = counts.cpu()
    fig, ax = plt.subplots(figsize=(max(4, 0.18 * len(counts)), 2.6), dpi=100)
    ax.bar(range(len(counts)), counts.tolist(), color="tab:orange", label="high-quality samples")
    ax.axhline(n_samples / len(counts), color="black", lw=0.8, ls="--", label="uniform (all samples, all modes)")
    ax.set_xlabel("mode")
    ax.set_ylabel("samples")
    ax.set_title(f"{title}: {int(counts.sum())} of {n_samples} samples high quality, "
                 f"{int((counts > 0).sum())}/{len(counts)} modes", fontsize=8)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_sequences(samples: torch.Tensor, path: Path, datamodule=None) -> Path:
    """Token sequences: pixels (the data has `image_shape`) as an image grid PNG, text as a .txt file.

    Returns the file written (text goes to `path` with a .txt suffix).
    """
    image_shape = getattr(datamodule, "image_shape", None)
    if image_shape is not None:
        from divlab.datamodules.pixel_sequences import tokens_to_unit_range

        save_image_grid(tokens_to_unit_range(samples, image_shape), path)
        return path
    path = path.with_suffix(".txt")
    texts = [datamodule.decode(row) for row in samples]
    path.write_text("".join(f"=== sample {i} ===\n{text}\n" for i, text in enumerate(texts)))
    return path


RENDERERS = {"image": save_image_grid, "points": save_scatter_over_density, "sequence": save_sequences}
