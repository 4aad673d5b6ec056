"""A trial on a GPU: CUDA-graph replay and bf16 train what eager fp32 trains.

Skipped without a CUDA device (CI has none); `bench/gpu.sh` runs this file on the GPU machine.
"""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from lambda_search.config import DataSection, TrainSection
from lambda_search.data import load_images
from lambda_search.gan.fused import fuse, train_fused, unfuse
from lambda_search.gan.train import GanState, TrainHooks, configure_torch, new_state, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
SECTION = TrainSection(batch_size=64, width=16, latent_dim=32, apply_to="both", checkpoint_every=0)
STEPS = 20


@pytest.fixture(scope="module")
def mnist():
    return load_images(DataSection()).to(CUDA)


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def _max_difference(first: GanState, second: GanState) -> float:
    differences = []
    for network in ("generator", "discriminator"):
        mine, theirs = getattr(first, network).state_dict(), getattr(second, network).state_dict()
        differences += [_relative_difference(mine[name].cpu(), value.cpu())
                        for name, value in theirs.items() if value.is_floating_point()]
    return max(differences)


def _trained(mnist, section: TrainSection, lam: float = 1e-3, seed: int = 0, steps: int = STEPS,
             hooks: TrainHooks | None = None) -> GanState:
    state = new_state(section, mnist.shape, seed, CUDA)
    train(state, mnist, section, lam, steps, hooks or TrainHooks())
    return state


@pytest.fixture(autouse=True)
def exact_kernels():
    # TF32 convolutions round at 1e-3: the comparisons below are of the arithmetic, not of rounding.
    torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32 = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32 = False, True


def _losses(state: GanState) -> list[float]:
    return [value for entry in state.history for value in entry.values()]


@pytest.mark.parametrize("decay_mode", ["l2", "decoupled"])
def test_graph_replay_trains_what_eager_trains(mnist, decay_mode):
    graphed = _trained(mnist, dataclasses.replace(SECTION, decay_mode=decay_mode, cuda_graph=True))
    eager = _trained(mnist, dataclasses.replace(SECTION, decay_mode=decay_mode, cuda_graph=False))
    assert graphed.step == eager.step == STEPS
    assert _max_difference(graphed, eager) <= 1e-4
    assert _losses(graphed) == pytest.approx(_losses(eager), rel=1e-4)


def test_evaluations_between_replays_change_nothing(mnist):
    def evaluate(state: GanState) -> None:
        state.generator.eval()
        with torch.no_grad():
            state.generator(torch.randn(256, SECTION.latent_dim, device=CUDA))
        state.generator.train()

    evaluated = _trained(mnist, SECTION, hooks=TrainHooks(eval_every=3, on_evaluation=evaluate))
    plain = _trained(mnist, SECTION)
    assert _max_difference(evaluated, plain) <= 1e-4


def test_a_resumed_trial_continues_as_if_never_stopped(mnist):
    stopped = _trained(mnist, SECTION, steps=7)
    saved = io.BytesIO()
    torch.save(stopped.state_dict(), saved)
    saved.seek(0)
    resumed = new_state(SECTION, mnist.shape, 0, CUDA)
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    train(resumed, mnist, SECTION, 1e-3, STEPS)
    assert resumed.generator_optimizer.param_groups[0]["capturable"]
    assert _max_difference(resumed, _trained(mnist, SECTION)) <= 1e-4


def test_graphed_fused_member_equals_the_graphed_trial_alone(mnist):
    seeds, lams = [0, 1, 2], [1e-4, 1e-3, 1e-2]
    fused = fuse([new_state(SECTION, mnist.shape, seed, CUDA) for seed in seeds], lams, seeds, SECTION,
                 mnist.shape)
    fused, _ = train_fused(fused, mnist, SECTION, 5, eval_every=100, evaluate=lambda f: {},
                           on_leave=lambda f, leaving: None)
    for index, (seed, lam) in enumerate(zip(seeds, lams, strict=True)):
        lone = _trained(mnist, SECTION, lam=lam, seed=seed, steps=5)  # 3 eager steps, then 2 replays
        assert _max_difference(unfuse(fused, index, SECTION, mnist.shape), lone) <= 1e-4


def test_bf16_stays_close_to_fp32(mnist):
    bf16 = _trained(mnist, dataclasses.replace(SECTION, precision="bf16"))
    fp32 = _trained(mnist, SECTION)
    assert all(torch.isfinite(torch.tensor(list(entry.values()))).all() for entry in bf16.history)
    assert 0 < _max_difference(bf16, fp32) <= 0.1


def test_the_ema_generator_averages_the_graphed_steps_as_the_eager_ones(mnist):
    section = dataclasses.replace(SECTION, ema=0.9)
    graphed = _trained(mnist, dataclasses.replace(section, cuda_graph=True))
    eager = _trained(mnist, dataclasses.replace(section, cuda_graph=False))
    assert graphed.ema is not None and eager.ema is not None
    assert max(_relative_difference(graphed.ema[name].cpu(), eager.ema[name].cpu()) for name in eager.ema) <= 1e-4
    # The average moved away from the initial weights and is not the live generator.
    start = new_state(section, mnist.shape, 0, CUDA).generator.state_dict()
    assert all(_relative_difference(eager.ema[name].cpu(), start[name].cpu()) > 0 for name in eager.ema)
    live = dict(eager.generator.named_parameters())
    assert any(_relative_difference(eager.ema[name].cpu(), live[name].detach().cpu()) > 1e-3 for name in eager.ema)


def test_deterministic_trials_repeat_bit_for_bit(mnist):
    section = dataclasses.replace(SECTION, deterministic=True)
    configure_torch(section)
    try:
        first, second = _trained(mnist, section), _trained(mnist, section)
    finally:
        torch.use_deterministic_algorithms(False)
    assert _max_difference(first, second) == 0
    assert _losses(first) == _losses(second)
