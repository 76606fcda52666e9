"""`with eval_mode(module):` — the module in eval mode (dropout off, batch-norm statistics frozen) for
the block, then back in whichever mode it was in, even if the block raises."""
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(module: nn.Module):
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
