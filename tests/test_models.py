"""DCGAN shapes for the resolutions the datasets have."""

from __future__ import annotations

import pytest
import torch

from lambda_search.gan.models import build_gan


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_generator_makes_images_the_discriminator_scores(shape):
    generator, discriminator = build_gan(32, shape, 8)
    images = generator(torch.randn(5, 32))
    assert images.shape == (5, *shape)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (5,)


def test_same_seed_same_weights():
    torch.manual_seed(1)
    first, _ = build_gan(16, (1, 28, 28), 8)
    torch.manual_seed(1)
    second, _ = build_gan(16, (1, 28, 28), 8)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
