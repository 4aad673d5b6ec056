"""A GAN of one's own for `[model] factory = "examples.my_gan:build"`: two MLPs, nothing like the built-in DCGAN.

Any function with this signature works: lambda-search builds the pair with it for the sweep,
its checkpoints, confirm, the race and `train`, and decays the tensors ``[train] penalize`` names.
"""

from __future__ import annotations

import math

from torch import nn


def build(image_shape: tuple[int, int, int], latent_dim: int, width: int) -> tuple[nn.Module, nn.Module]:
    """A fresh (generator, discriminator) pair for images of `image_shape` (channels, height, width).

    `width` sets the hidden layers: 8·width units (``[train] width``).
    """
    pixels = math.prod(image_shape)
    hidden = 8 * width
    generator = nn.Sequential(
        # noise: (N, latent_dim)
        nn.Linear(latent_dim, hidden),
        nn.LayerNorm(hidden),
        nn.ReLU(),
        # state size. (N, hidden)
        nn.Linear(hidden, pixels),
        nn.Tanh(),
        nn.Unflatten(1, image_shape),
        # images: (N, C, H, W) in [-1, 1]
    )
    discriminator = nn.Sequential(
        nn.Flatten(),
        # (N, C·H·W)
        nn.Linear(pixels, hidden),
        nn.LeakyReLU(0.2),
        # state size. (N, hidden)
        nn.Linear(hidden, 1),
        # logits: (N, 1)
    )
    return generator, discriminator
