"""Training one GAN: the two kinds of weight decay (`[train] decay_mode`)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lambda_search.config import DataSection, TrainSection
from lambda_search.data import load_images
from lambda_search.gan.penalty import decayed_parameters, squared_norm
from lambda_search.gan.train import GanState, new_state, train

CPU = torch.device("cpu")
STEPS = 4
SECTION = TrainSection(batch_size=16, width=8, latent_dim=16, apply_to="both", checkpoint_every=0)


@pytest.fixture(scope="module")
def mnist():
    return load_images(DataSection())


def _trained(mnist, section: TrainSection, lam: float) -> GanState:
    state = new_state(section, mnist.shape, 0, CPU)
    train(state, mnist, section, lam, STEPS)
    return state


def _parameters(state: GanState) -> dict[str, torch.Tensor]:
    return {f"{network}.{name}": value.detach()
            for network in ("generator", "discriminator")
            for name, value in getattr(state, network).named_parameters()}


def test_decoupled_with_lambda_zero_equals_l2_with_lambda_zero(mnist):
    l2 = _parameters(_trained(mnist, SECTION, 0.0))
    decoupled = _parameters(_trained(mnist, dataclasses.replace(SECTION, decay_mode="decoupled"), 0.0))
    for name, value in l2.items():
        assert torch.equal(decoupled[name], value), name


def test_decoupled_decay_shrinks_the_weights(mnist):
    section = dataclasses.replace(SECTION, decay_mode="decoupled", apply_to="generator")
    plain = _trained(mnist, section, 0.0)
    # Large enough that each step shrinks kernels by lr·λ = 2e-4·50 = 1%: far above Adam's noise.
    decayed = _trained(mnist, section, 50.0)
    assert squared_norm(decayed_parameters(decayed.generator)) < squared_norm(decayed_parameters(plain.generator))
    assert decayed.history[-1]["generator_penalty"] == 0.0  # nothing of λ is in the loss


def test_decay_touches_nothing_else(mnist):
    # One step from the same start: λ enters only through the decayed tensors, so the
    # discriminator (not decayed with apply_to = generator) takes the identical step,
    # and each generator kernel differs from λ = 0 by exactly the shrink lr·λ·w0.
    section = dataclasses.replace(SECTION, decay_mode="decoupled", apply_to="generator")
    lam = 50.0
    start = _parameters(new_state(section, mnist.shape, 0, CPU))
    plain = new_state(section, mnist.shape, 0, CPU)
    decayed = new_state(section, mnist.shape, 0, CPU)
    train(plain, mnist, section, 0.0, 1)
    train(decayed, mnist, section, lam, 1)
    after_plain, after_decayed = _parameters(plain), _parameters(decayed)
    for name, value in after_plain.items():
        if name.startswith("generator.") and value.dim() >= 2:
            assert torch.allclose(after_decayed[name], value - section.lr * lam * start[name], atol=1e-6), name
        else:
            assert torch.equal(after_decayed[name], value), name
