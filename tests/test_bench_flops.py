"""The benches' FLOP count: a grouped convolution's backward counted right; a fused step of K trials, K lone steps."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from lambda_search.config import TrainSection
from lambda_search.gan.fused import fuse, make_fused_step
from lambda_search.gan.train import make_step, new_state

# bench/ holds scripts, not a package: its helpers are loaded from their file.
_spec = importlib.util.spec_from_file_location("bench_common", Path(__file__).parents[1] / "bench" / "_common.py")
assert _spec is not None and _spec.loader is not None
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
flop_count = _common.flop_count

SHAPE = (1, 28, 28)


@pytest.mark.parametrize("layer", [torch.nn.Conv2d, torch.nn.ConvTranspose2d])
def test_a_grouped_convolution_forward_and_backward_is_three_forwards(layer):
    groups, x = 8, torch.randn(4, 8 * 16, 16, 16, requires_grad=True)
    conv = layer(8 * 16, 8 * 32, 4, 2, 1, groups=groups, bias=False)
    forward = flop_count(lambda: conv(x))
    assert flop_count(lambda: conv(x).sum().backward()) == 3 * forward  # torch alone counts 10× here


def test_a_fused_step_of_k_trials_counts_k_lone_steps():
    section = TrainSection(width=8, batch_size=8, device="cpu", cuda_graph=False)
    images = torch.rand(64, *SHAPE) * 2 - 1
    lone = flop_count(make_step(new_state(section, SHAPE, 0, torch.device("cpu")), images, section, 1e-3))
    members = 4
    states = [new_state(section, SHAPE, seed, torch.device("cpu")) for seed in range(members)]
    fused = fuse(states, [1e-3] * members, list(range(members)), section, SHAPE)
    counted = flop_count(make_fused_step(fused, images, dataclasses.replace(section, fused_conv="grouped")))
    assert counted == pytest.approx(members * lone, rel=0.01)
