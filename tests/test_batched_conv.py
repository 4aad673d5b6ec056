"""The fused job's batched convolutions compute what cuDNN's grouped ones do, gradients included."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from lambda_search.gan.batched_conv import BatchedConv2d, BatchedConvTranspose2d


def _same_layers(grouped: nn.Module, batched: nn.Module, inputs: torch.Tensor) -> None:
    batched.load_state_dict(grouped.state_dict())
    expected_in = inputs.clone().requires_grad_()
    actual_in = inputs.clone().requires_grad_()
    expected, actual = grouped(expected_in), batched(actual_in)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (actual * weights).sum().backward()
    torch.testing.assert_close(actual_in.grad, expected_in.grad, rtol=0, atol=1e-12)
    for mine, theirs in zip(batched.parameters(), grouped.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=0, atol=1e-11)


@pytest.mark.parametrize(("members", "bias"), [(1, True), (3, False), (4, True)])
def test_batched_conv_equals_grouped_conv(members: int, bias: bool) -> None:
    torch.manual_seed(0)
    arguments = (members * 2, members * 5, 4, 2, 1)
    grouped = nn.Conv2d(*arguments, groups=members, bias=bias).double()
    batched = BatchedConv2d(*arguments, groups=members, bias=bias).double()
    _same_layers(grouped, batched, torch.randn(6, members * 2, 14, 14, dtype=torch.float64))


@pytest.mark.parametrize(("members", "bias"), [(1, True), (3, False), (4, True)])
def test_batched_transposed_conv_equals_grouped(members: int, bias: bool) -> None:
    torch.manual_seed(0)
    arguments = (members * 6, members * 3, 4, 2, 1)
    grouped = nn.ConvTranspose2d(*arguments, groups=members, bias=bias).double()
    batched = BatchedConvTranspose2d(*arguments, groups=members, bias=bias).double()
    _same_layers(grouped, batched, torch.randn(5, members * 6, 7, 7, dtype=torch.float64))


def test_unsupported_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="dilation"):
        BatchedConv2d(4, 4, 3, dilation=2, groups=2)


def test_a_batched_fused_job_trains_as_the_grouped_one() -> None:
    """30 fused steps of 3 members: batched and grouped convolutions agree to float64 rounding."""
    from lambda_search.config import DataSection, TrainSection
    from lambda_search.data import load_images
    from lambda_search.gan.fused import fuse, train_fused, unfuse
    from lambda_search.gan.train import new_state

    loaded = load_images(DataSection())
    data = dataclasses.replace(loaded, images=loaded.images[:256].double(), labels=loaded.labels[:256])
    seeds, lams = [0, 1, 2], [1e-4, 1e-3, 1e-2]
    members = []
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for fused_conv in ("grouped", "batched"):
            section = TrainSection(batch_size=8, width=4, latent_dim=8, apply_to="both", fused_conv=fused_conv)
            job = fuse([new_state(section, data.shape, seed, torch.device("cpu")) for seed in seeds], lams, seeds,
                       section, data.shape)
            job, _ = train_fused(job, data, section, 30, 100, lambda _job: {}, lambda _job, _leaving: None)
            members.append(unfuse(job, 2, section, data.shape))
    finally:
        torch.set_default_dtype(previous)
    grouped, batched = members
    for network in ("generator", "discriminator"):
        for name, value in getattr(grouped, network).state_dict().items():
            torch.testing.assert_close(getattr(batched, network).state_dict()[name], value, rtol=0, atol=1e-10)
