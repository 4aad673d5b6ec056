"""DCGAN generator and discriminator, sized to the dataset's resolution.

Two stride-2 stages on each side, so any H × W divisible by 4 works:
28×28 (MNIST) starts the generator at 7×7, 32×32 (CIFAR-10) at 8×8.
"""

from __future__ import annotations

import torch
from torch import nn


def init_dcgan_weights(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: N(0, 0.02) kernels, N(1, 0.02) norm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    def __init__(self, latent_dim: int, shape: tuple[int, int, int], width: int = 64) -> None:
        super().__init__()
        channels, height, width_px = shape
        self.latent_dim = latent_dim
        self.start = (2 * width, height // 4, width_px // 4)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * (height // 4) * (width_px // 4), bias=False),
            nn.BatchNorm1d(2 * width * (height // 4) * (width_px // 4)),
            nn.ReLU(inplace=True),
        )
        self.upsample = nn.Sequential(
            # state size. (2w) x H/4 x W/4
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            # state size. (w) x H/2 x W/2
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
            nn.Tanh(),
            # state size. C x H x W, in [-1, 1]
        )

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        # noise: (B, latent_dim)
        projected = self.project(noise).view(noise.shape[0], *self.start)
        return self.upsample(projected)


class Discriminator(nn.Module):
    def __init__(self, shape: tuple[int, int, int], width: int = 64) -> None:
        super().__init__()
        channels, height, width_px = shape
        self.features = nn.Sequential(
            # input is C x H x W
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (w) x H/2 x W/2
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (2w) x H/4 x W/4
        )
        self.classify = nn.Linear(2 * width * (height // 4) * (width_px // 4), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images: (B, C, H, W) → logits (B,)
        return self.classify(self.features(images).flatten(1)).squeeze(1)


def build_gan(latent_dim: int, shape: tuple[int, int, int], width: int) -> tuple[Generator, Discriminator]:
    """A freshly initialised generator/discriminator pair (seed the RNG before calling)."""
    generator = Generator(latent_dim, shape, width)
    discriminator = Discriminator(shape, width)
    generator.apply(init_dcgan_weights)
    discriminator.apply(init_dcgan_weights)
    return generator, discriminator
