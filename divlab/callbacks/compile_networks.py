"""`torch.compile` every network of a family in place before training, for families without a
compile option of their own: `+callbacks.compile._target_=divlab.callbacks.compile_networks.CompileNetworks`.
In place (`nn.Module.compile`), so state-dict keys and checkpoints are unchanged."""
import lightning as L
import torch


class CompileNetworks(L.Callback):
    def __init__(self, mode: str | None = None):
        self.mode = mode
        self.compiled: list[str] = []

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.compiled:
            return
        for name, child in pl_module.named_children():
            if any(True for _ in child.parameters()):
                child.compile(mode=self.mode)
                self.compiled.append(name)


class ChannelsLast(L.Callback):
    """Convolution weights in channels-last memory format (NHWC), the fast layout for tensor cores."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            pl_module.to(memory_format=torch.channels_last)
