"""Fused λ-trials: each member trains as the same trial alone, exactly in exact arithmetic.

A fused member computes the same sums as its lone trial in another order (grouped
convolutions, batched matmuls), so the two differ by rounding, and GAN training
amplifies rounding. Measured here (2-core x86_64 VM, 1 thread, width 8, batch 16,
2026-11-29), the largest weight difference between a member and its lone trial:
float64 1.5e-14 after 30 steps, 8.7e-14 after 300; float32 6.0e-4 after 30 steps,
1.5e-2 after 300 (9% of a tensor's norm).
"""

from __future__ import annotations

import pytest
import torch

from lambda_search.config import DataSection, TrainSection
from lambda_search.data import ImageData, load_images
from lambda_search.gan.fused import fuse, select, train_fused, unfuse
from lambda_search.gan.train import new_state, train

CPU = torch.device("cpu")
SEEDS = [0, 1, 2]
LAMS = [1e-4, 1e-3, 1e-2]
STEPS = 30
# Largest |member − lone| over all weights after STEPS steps: float64 is exact up to rounding;
# float32's bound is 3× the 6.0e-4 measured (see the module docstring).
BOUNDS = {torch.float64: 1e-12, torch.float32: 2e-3}


@pytest.fixture(scope="module")
def mnist():
    return load_images(DataSection())


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def _assert_same(lone, member):
    for network in ("generator", "discriminator"):
        lone_state = getattr(lone, network).state_dict()
        member_state = getattr(member, network).state_dict()
        for name, value in lone_state.items():
            if value.is_floating_point():
                assert _relative_difference(member_state[name], value) <= 1e-4, (network, name)


@pytest.fixture
def default_dtype(request):
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(torch.float32)


def _max_weight_difference(lone, member) -> float:
    worst = 0.0
    for network in ("generator", "discriminator"):
        member_state = getattr(member, network).state_dict()
        for name, value in getattr(lone, network).state_dict().items():
            if value.is_floating_point():
                worst = max(worst, (member_state[name] - value).abs().max().item())
    return worst


@pytest.mark.parametrize("default_dtype", [torch.float64, torch.float32], indirect=True, ids=["float64", "float32"])
@pytest.mark.parametrize("apply_to", ["generator", "discriminator", "both"])
def test_a_member_after_thirty_steps_equals_the_trial_trained_alone(mnist, apply_to, default_dtype):
    data = ImageData(mnist.images.to(default_dtype), mnist.labels, mnist.name, mnist.fingerprint)
    section = TrainSection(batch_size=16, width=8, latent_dim=16, apply_to=apply_to)
    fused = fuse([new_state(section, data.shape, seed, CPU) for seed in SEEDS], LAMS, SEEDS, section, data.shape)
    fused, _ = train_fused(fused, data, section, STEPS, eval_every=100, evaluate=lambda f: {},
                           on_leave=lambda f, leaving: None)
    for index, (seed, lam) in enumerate(zip(SEEDS, LAMS, strict=True)):
        lone = new_state(section, data.shape, seed, CPU)
        train(lone, data, section, lam, STEPS)
        member = unfuse(fused, index, section, data.shape)
        assert member.step == STEPS
        assert member.generator.state_dict()["upsample.0.weight"].dtype == default_dtype
        assert _max_weight_difference(lone, member) <= BOUNDS[default_dtype]
        assert member.generator_optimizer.state_dict()["state"][0]["exp_avg"].shape == \
            lone.generator_optimizer.state_dict()["state"][0]["exp_avg"].shape


def test_members_differ_when_their_lambdas_differ(mnist):
    section = TrainSection(batch_size=16, width=8, latent_dim=16)
    fused = fuse([new_state(section, mnist.shape, 0, CPU) for _ in range(2)], [0.0, 1.0], [0, 0], section,
                 mnist.shape)
    fused, _ = train_fused(fused, mnist, section, 5, 100, lambda f: {}, lambda f, leaving: None)
    first, second = (unfuse(fused, i, section, mnist.shape) for i in range(2))
    kernel = "upsample.0.weight"
    assert second.generator.state_dict()[kernel].norm() < first.generator.state_dict()[kernel].norm()


def test_a_pruned_member_leaves_and_the_others_go_on_unchanged(mnist):
    section = TrainSection(batch_size=16, width=8, latent_dim=16)
    fused = fuse([new_state(section, mnist.shape, seed, CPU) for seed in SEEDS], LAMS, SEEDS, section, mnist.shape)
    left = []
    fused, _ = train_fused(fused, mnist, section, 6, eval_every=3,
                           evaluate=lambda f: {1: "pruned"} if f.step == 3 else {},
                           on_leave=lambda f, leaving: left.extend(leaving.items()))
    assert left == [(1, "pruned")]
    assert fused.members == 2 and fused.seeds == [0, 2]
    lone = new_state(section, mnist.shape, 2, CPU)
    train(lone, mnist, section, LAMS[2], 6)
    _assert_same(lone, unfuse(fused, 1, section, mnist.shape))


def test_select_keeps_the_chosen_members(mnist):
    section = TrainSection(batch_size=16, width=8, latent_dim=16)
    fused = fuse([new_state(section, mnist.shape, seed, CPU) for seed in SEEDS], LAMS, SEEDS, section, mnist.shape)
    kept = select(fused, [2], section, mnist.shape)
    assert kept.lams.tolist() == pytest.approx([LAMS[2]])
    _assert_same(new_state(section, mnist.shape, 2, CPU), unfuse(kept, 0, section, mnist.shape))


def test_a_fused_study_gives_the_fids_of_the_same_trials_run_alone(tiny_study, tmp_path):
    import optuna

    from lambda_search.cli import main

    def study_file(name, fuse):
        path = tiny_study(name=name, n_trials=4, fuse=fuse)
        path.write_text(path.read_text().replace('sampler = "tpe"', 'sampler = "random"'))
        return path

    assert main(["run", str(study_file("alone", 1))]) == 0
    assert main(["run", str(study_file("fused", 3))]) == 0
    alone, fused = (optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / (name + '.db')}").trials
                    for name in ("alone", "fused"))
    assert [t.state.name for t in fused] == ["COMPLETE"] * 4
    assert fused[0].user_attrs["fused_with"] == [0, 1, 2] and fused[3].user_attrs["fused_with"] == [3]
    assert [t.params for t in fused] == [t.params for t in alone]
    assert [t.value for t in fused] == pytest.approx([t.value for t in alone], rel=1e-3)
    assert [t.user_attrs["kid"] for t in fused] == pytest.approx([t.user_attrs["kid"] for t in alone], rel=1e-2)
    # A fused study gets its λ = 0 control too, trained as a lone trial: the same run as the other's.
    controls = [optuna.load_study(study_name=f"{name}.control", storage=f"sqlite:///{tmp_path / (name + '.db')}")
                .trials for name in ("alone", "fused")]
    assert [[(t.state.name, t.params) for t in trials] for trials in controls] == [[("COMPLETE", {"lambda": 0.0})]] * 2
    assert controls[1][0].value == pytest.approx(controls[0][0].value, rel=1e-6)
