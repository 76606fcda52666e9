"""A time-conditioned U-Net for small square images (Ho et al. 2020, after PixelCNN++ and Wide ResNets).

Levels halve the side with a stride-2 convolution (7 → 4 rounds up) and upsample back to the exact
size of the matching skip, so any side works (8×8 digits, 28×28 MNIST, 32×32 CIFAR). Each level has
`blocks_per_level` residual blocks (GroupNorm, SiLU, 3×3 convolutions, the time embedding added
between the convolutions); self-attention joins the blocks at sides ≤ `attention_max_side` and the
middle of the network.
"""
import torch
import torch.nn.functional as F
from torch import nn

from divlab.lightning_modules.networks.image_shape import check_image_shape
from divlab.lightning_modules.networks.time_mlp import TimeEmbedding
from divlab.validation import check_positive


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.block1 = nn.Sequential(
            nn.GroupNorm(groups, in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        )
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.block2 = nn.Sequential(
            nn.GroupNorm(groups, out_channels), nn.SiLU(), nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.time(emb)[:, :, None, None]
        return self.skip(x) + self.block2(h)


class Attention(nn.Module):
    """Single-head self-attention over the H·W positions, residual."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)
        h = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(h.transpose(1, 2).reshape(B, C, H, W))


class Level(nn.Module):
    """Residual blocks (one per (in, out) channel pair), each followed by attention when `attention`."""

    def __init__(self, pairs: list[tuple[int, int]], emb_dim: int, groups: int, dropout: float, attention: bool):
        super().__init__()
        self.blocks = nn.ModuleList(ResidualBlock(c_in, c_out, emb_dim, groups, dropout) for c_in, c_out in pairs)
        self.attention = nn.ModuleList(Attention(c_out, groups) if attention else nn.Identity() for _, c_out in pairs)


class UNet(nn.Module):
    """(x [B, C, H, W], t [B] in [0, 1]) → [B, *out_shape[0:1], H, W].

    Channels at level i are `width · channel_mults[i]`; the side halves between levels.
    """

    def __init__(
        self,
        in_shape,
        out_shape,
        width: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        blocks_per_level: int = 1,
        attention_max_side: int = 8,
        groups: int = 8,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive("width", width)
        check_positive("blocks_per_level", blocks_per_level)
        if not channel_mults:
            raise ValueError("channel_mults must list at least one level")
        channels = [width * m for m in channel_mults]
        if any(c % groups for c in [width, *channels]):
            raise ValueError(f"groups ({groups}) must divide the width and every level's channels {channels}")
        in_channels, side, _ = check_image_shape(in_shape, "UNet", divisor=1)
        emb_dim = 4 * width
        self.time = TimeEmbedding(emb_dim, sinusoid_dim=width)
        self.input = nn.Conv2d(in_channels, width, 3, padding=1)

        sides = [side]
        for _ in channel_mults[1:]:
            sides.append((sides[-1] + 1) // 2)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, c = [width], width
        for i, (c_out, s) in enumerate(zip(channels, sides)):
            pairs = [(c, c_out)] + [(c_out, c_out)] * (blocks_per_level - 1)
            self.down.append(Level(pairs, emb_dim, groups, dropout, s <= attention_max_side))
            c = c_out
            skips += [c] * blocks_per_level
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.middle = nn.ModuleList([ResidualBlock(c, c, emb_dim, groups, dropout), Attention(c, groups),
                                     ResidualBlock(c, c, emb_dim, groups, dropout)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, (c_out, s) in reversed(list(enumerate(zip(channels, sides)))):
            pairs = [(c_in + skips.pop(), c_out) for c_in in [c] + [c_out] * blocks_per_level]
            self.up.append(Level(pairs, emb_dim, groups, dropout, s <= attention_max_side))
            c = c_out
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.output = nn.Sequential(nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, out_shape[0], 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(t, x.shape[0])
        h = self.input(x)
        skips = [h]
        for i, level in enumerate(self.down):
            for block, attention in zip(level.blocks, level.attention):
                h = attention(block(h, emb))
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        for layer in self.middle:
            h = layer(h, emb)
        for i, level in enumerate(self.up):
            for block, attention in zip(level.blocks, level.attention):
                h = attention(block(torch.cat([h, skips.pop()], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        return self.output(h)
