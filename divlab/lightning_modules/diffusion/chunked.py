"""A denoiser run on at most `rows` examples at a time, for samplers that call it with their whole batch.

The samplers draw their noise for the whole batch, so chunking the network's calls changes no random draw: the
samples are those of one call, to float rounding. It exists for speed: on a CPU, a U-Net over 500 images at once
runs 1.3–1.6× slower per image than over 64, its activations outgrowing the caches (`benchmarks/sample_chunk.py`).
"""
import torch

from divlab.validation import check_positive


def check_sample_chunk(rows: int | None) -> int | None:
    """`model.sample_chunk`: None (the whole batch at once) or a positive number of rows."""
    return rows if rows is None else check_positive("model.sample_chunk", rows)


def in_chunks(model, rows: int | None):
    """model(x, t) on x.split(rows) and t.split(rows), concatenated; `model` itself for rows=None."""
    if check_sample_chunk(rows) is None:
        return model

    def chunked(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if len(x) <= rows:
            return model(x, t)
        return torch.cat([model(x_rows, t_rows) for x_rows, t_rows in zip(x.split(rows), t.split(rows))])

    return chunked
