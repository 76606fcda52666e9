"""Images as token sequences: 8-bit grey levels in raster order (Fashion-MNIST: 784 tokens, vocab 256).

The same images, splits and loading as `ImageDataModule`, so an autoregressive model's bits/dim
are on exactly the data the VAE and diffusion models use (no dequantisation: the tokens are the
8-bit values).
"""
import math

import torch

from divlab.datamodules.images import ImageDataModule
from divlab.datamodules.tensor_data import BatchedTensorDataset


def raster_tokens(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [B, C, H, W] → token ids [B, C·H·W] (channel, then row, then column)."""
    return images.flatten(1).long()


def tokens_to_unit_range(tokens: torch.Tensor, image_shape) -> torch.Tensor:
    """Token ids back to images in [−1, 1], for rendering next to the image families' samples."""
    return tokens.view(-1, *image_shape).float() / 127.5 - 1.0


class PixelSequenceDataModule(ImageDataModule):
    kind = "sequence"
    vocab_size = 256

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.hparams.binarize:
            raise ValueError("data.binarize=true is not supported for pixel sequences (tokens are 8-bit levels)")
        self.image_shape = self.sample_shape
        self.sample_shape = (math.prod(self.image_shape),)

    def samples_as_images(self, samples: torch.Tensor) -> torch.Tensor:
        return tokens_to_unit_range(samples.round().long(), self.image_shape)

    def real_samples(self, split: str, n: int) -> torch.Tensor:
        self.setup()
        return raster_tokens(self.splits[split][0][:n])

    def dataset(self, split: str) -> BatchedTensorDataset:
        return BatchedTensorDataset(self.splits[split][0], raster_tokens)
