"""DCGAN shapes for the resolutions the datasets have."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lambda_search.gan.models import build_gan


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_generator_makes_images_the_discriminator_scores(shape):
    generator, discriminator = build_gan(32, shape, 8)
    images = generator(torch.randn(5, 32))
    assert images.shape == (5, *shape)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (5,)


def test_the_networks_start_from_the_dcgan_initialisation():
    # The DCGAN paper's N(0, 0.02) kernels, N(1, 0.02) norm scales and zero biases, not PyTorch's defaults
    # (Kaiming-uniform kernels of std ≈ 0.1 here, biases uniform, scales exactly 1), which λ would be tuned against.
    torch.manual_seed(1)
    generator, discriminator = build_gan(16, (1, 28, 28), 8)
    kernels = norms = 0
    for module in [*generator.modules(), *discriminator.modules()]:
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            kernels += 1
            # The smallest kernel holds 128 values: its mean within 5 standard errors of 0, its std within 25%.
            assert abs(float(module.weight.mean())) < 0.01 and 0.015 < float(module.weight.std()) < 0.025
            assert module.bias is None or not module.bias.any()
        elif isinstance(module, nn.BatchNorm2d):
            norms += 1
            assert float(module.weight.min()) > 0.9 and float(module.weight.max()) < 1.1
            assert float(module.weight.std()) > 0 and not module.bias.any()
    assert (kernels, norms) == (6, 2)
