"""A scalar per position (a value or a reward) read linearly from a sequence backbone's outputs."""
import torch
from torch import Tensor


class ScalarHead(torch.nn.Module):
    """A linear map from a backbone's output logits [..., V] to a scalar [...].

    Reading the logits instead of the last hidden state keeps every sequence backbone (GPT, S4D,
    Mamba) usable unchanged; for the GPT the logits are E·LayerNorm(h) with the tied embedding E of
    rank n_embd < vocab, so a linear head on them is exactly a linear head on the final hidden state.
    Starts at 0: a value or reward of 0 everywhere.
    """

    def __init__(self, vocab_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(vocab_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, logits: Tensor) -> Tensor:
        return self.linear(logits.float()).squeeze(-1)
