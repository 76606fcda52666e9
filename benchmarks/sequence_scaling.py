"""Training cost and generation cost versus sequence length, for the gpt, s4d and mamba backbones.

    python benchmarks/sequence_scaling.py [--lengths 256 512 1024 2048 4096] [--max-length 2048]
                                          [--n-embd 64] [--n-layer 2] [--clock process] [--plot scaling.png]

Per backbone and length T (batch 1, equal widths/depths, so the comparison is about the sequence
mixer): the median time of a training step (forward, backward, AdamW), the activation memory it
keeps for backward (bytes of tensors autograd saves; on a GPU, peak allocated memory instead), and
the time per generated token after a prefix of T tokens (`prefill` then `step`). The fitted exponent
k of time ∝ T^k shows attention's quadratic against the scans' linear growth; per-token generation
stays flat for the recurrent states and grows with the KV cache for the transformer.
"""
import argparse
import functools
import math
import statistics
import time

import torch

from divlab.lightning_modules.networks.gpt import GPT
from divlab.lightning_modules.networks.mamba import Mamba
from divlab.lightning_modules.networks.s4d import S4D

VOCAB = 64
CLOCK = time.perf_counter  # --clock process: CPU time of this process, steadier on a shared machine


def backbones(n_layer: int, n_embd: int) -> dict:
    return {
        "gpt": lambda length: GPT(VOCAB, block_size=length + 64, n_layer=n_layer, n_head=4, n_embd=n_embd),
        "s4d": lambda length: S4D(VOCAB, n_layer=n_layer, n_embd=n_embd),
        "mamba": lambda length: Mamba(VOCAB, n_layer=n_layer, n_embd=n_embd),
    }


def saved_activation_bytes(model, tokens) -> int:
    """Bytes autograd keeps for the backward pass of one loss (each storage counted once)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(tokens).logsumexp(-1).mean()
    del loss
    return sum(storages.values())


def train_step(model, optimizer, tokens) -> None:
    logits = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return statistics.median(times)


@torch.no_grad()
def per_token_time(model, prefix: torch.Tensor, new_tokens: int) -> float:
    _, cache = model.prefill(prefix)
    token = prefix[:, -1]
    start = CLOCK()
    for _ in range(new_tokens):
        logits, cache = model.step(token, cache)
        token = logits.argmax(-1)
    return (CLOCK() - start) / new_tokens


def measure(make, length: int, repeats: int, new_tokens: int, device) -> dict:
    torch.manual_seed(0)
    model = make(length).to(device)
    tokens = torch.randint(0, VOCAB, (1, length + 1), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_s = median_time(functools.partial(train_step, model, optimizer, tokens), repeats)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated()
    else:
        memory = saved_activation_bytes(model, tokens[:, :-1])
    model.eval()
    return {"step_ms": 1e3 * step_s, "memory_mb": memory / 2**20,
            "token_ms": 1e3 * per_token_time(model, tokens[:, :length], new_tokens)}


def exponent(lengths, values) -> float:
    """Least-squares slope of log(value) on log(T)."""
    x, y = [math.log(t) for t in lengths], [math.log(v) for v in values]
    mx, my = statistics.mean(x), statistics.mean(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)


def plot(results: dict, lengths: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("step_ms", "training step (ms)"), ("memory_mb", "activation memory (MiB)"),
            ("token_ms", "ms per generated token")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (key, label) in zip(axes, keys):
        for name, rows in results.items():
            ax.plot(lengths[: len(rows)], [r[key] for r in rows], marker="o", label=name)
        ax.set(xscale="log", xlabel="sequence length T", ylabel=label)
        ax.set_xticks(lengths, [str(t) for t in lengths])
        ax.minorticks_off()
        if key == "token_ms":
            ax.set_ylim(bottom=0)  # flat means flat: a linear axis from zero
        else:
            ax.set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--max-length", type=int, default=None, help="skip longer lengths (short CPU runs)")
    parser.add_argument("--backbones", nargs="+", default=["gpt", "s4d", "mamba"], choices=["gpt", "s4d", "mamba"])
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--plot", default=None, help="write the three curves to this image")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clock", choices=["wall", "process"], default="wall",
                        help="process: CPU seconds of this process (single-threaded CPU runs on a busy machine)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
    lengths = [t for t in args.lengths if args.max_length is None or t <= args.max_length]
    device = torch.device(args.device)
    makers = backbones(args.n_layer, args.n_embd)
    results = {name: [] for name in args.backbones}
    print(f"{'backbone':9s} {'T':>6s} {'step ms':>9s} {'act. MiB':>9s} {'ms/token':>9s}")
    for name in args.backbones:
        for length in lengths:
            row = measure(makers[name], length, args.repeats, args.new_tokens, device)
            results[name].append(row)
            print(f"{name:9s} {length:6d} {row['step_ms']:9.1f} {row['memory_mb']:9.1f} {row['token_ms']:9.2f}",
                  flush=True)
    if len(lengths) > 1:
        print("\nfitted exponent k in cost ∝ T^k (2: quadratic, 1: linear, 0: flat)")
        print(f"{'backbone':9s} {'step':>6s} {'memory':>7s} {'token':>6s}")
        for name, rows in results.items():
            ks = [exponent(lengths, [r[key] for r in rows]) for key in ("step_ms", "memory_mb", "token_ms")]
            print(f"{name:9s} {ks[0]:6.2f} {ks[1]:7.2f} {ks[2]:6.2f}")
    if args.plot:
        plot(results, lengths, args.plot)


if __name__ == "__main__":
    main()
