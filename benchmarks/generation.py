"""Generation cost per token with the backbone's cache: 1,000 new tokens versus 100.

    python benchmarks/generation.py [--batch 1] [--repeats 3]

With a KV cache each new token costs one network step (and a bounded context is re-primed from
its last half when full), so the time per token should stay flat: ratio ≤ 1.2 is the goal. Without
a cache it would grow linearly with the length (O(L²) in total).
"""
import argparse
import functools
import statistics
import time

import torch

from divlab.lightning_modules.autoregressive import AutoregressiveModel
from divlab.lightning_modules.networks.gpt import GPT


def per_token_seconds(model: AutoregressiveModel, batch: int, new_tokens: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.sample(batch, max_new_tokens=new_tokens)
        times.append((time.perf_counter() - start) / new_tokens)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AutoregressiveModel(
        (args.block_size,), functools.partial(GPT, n_layer=4, n_head=4, n_embd=128),
        functools.partial(torch.optim.AdamW, lr=1e-3), vocab_size=84,
    ).eval()
    per_token_seconds(model, args.batch, 20, 1)  # warm-up
    short = per_token_seconds(model, args.batch, 100, args.repeats)
    long = per_token_seconds(model, args.batch, 1000, args.repeats)
    print(f"char_gpt network (block {args.block_size}), batch {args.batch}")
    print(f"{'new tokens':>10s} {'ms/token':>9s} {'tokens/s':>9s}")
    for n, t in ((100, short), (1000, long)):
        print(f"{n:10d} {1e3 * t:9.2f} {args.batch / t:9.0f}")
    flag = "" if long / short <= 1.2 else "  (above the 1.2 goal)"
    print(f"ratio 1000/100 per token: {long / short:.2f}{flag}")


if __name__ == "__main__":
    main()
