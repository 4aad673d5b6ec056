"""Train one GAN for one λ. Knows nothing of Optuna: the caller passes hooks.

The loss is the non-saturating GAN loss plus, with `decay_mode = "l2"`, λ·Σ‖w‖²
on the network(s) that `apply_to` names; with "decoupled" the loss carries no
penalty and those tensors shrink by lr·λ·w before each step (see `penalty`).
Optimizer: Adam(β1=0.5), no weight_decay of its own.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.nn import functional as F

from lambda_search.config import TrainSection
from lambda_search.data import ImageData
from lambda_search.errors import ConfigError
from lambda_search.gan.cuda_graphs import Step, autocast
from lambda_search.gan.ema import EmaWeights, start_ema, update_ema_
from lambda_search.gan.factory import BUILTIN, Model, build_networks
from lambda_search.gan.penalty import decayed_parameters, decoupled_decay_, penalized_networks, penalty

# Losses are read back to the host every this many steps, not every step:
# each read is a device sync.
LOG_EVERY = 10


class Diverged(Exception):
    """A loss became NaN or infinite; the trial cannot continue."""

    def __init__(self, step: int, losses: dict[str, float]) -> None:
        super().__init__(f"loss not finite at step {step}: {losses}")
        self.step = step
        self.losses = losses


class Progress(Protocol):
    def update(self, step: int, losses: dict[str, float]) -> None: ...


# Opens a progress display for (trial number, λ, total steps); the CLI passes a tqdm bar or log lines.
ProgressFactory = Callable[[int, float, int], contextlib.AbstractContextManager[Progress]]


def configure_torch(section: TrainSection) -> torch.device:
    """The training device, with the study file's CPU thread count and, on CUDA, deterministic algorithms if asked.

    Raises:
        ConfigError: a CUDA device was named and is not there.
    """
    device = resolve_device(section.device)
    torch.set_num_threads(section.threads)
    if section.deterministic and device.type == "cuda":
        # cuBLAS reads this when it first starts; ":4096:8" is the setting its docs give for reproducibility.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return device


def resolve_device(name: str) -> torch.device:
    """`auto` → the first CUDA device when there is one, else the CPU.

    Raises:
        ConfigError: a CUDA device was named and is not there.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device(name)
    # The index is checked before torch parses it: torch.device("cuda:99999999999") overflows.
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no CUDA device is available here; use cpu or auto")
    count = torch.cuda.device_count()
    _, _, index = name.partition(":")
    if index and int(index) >= count:
        there = ", ".join(f"cuda:{number}" for number in range(count))
        raise ConfigError(f"device {name!r} is not here; this machine has {count} CUDA device(s): {there}")
    return torch.device(name)


@dataclass
class GanState:
    """Everything a training run is: networks, optimizers, step, RNG and EMA weights (what a checkpoint holds)."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    generator_optimizer: torch.optim.Adam
    discriminator_optimizer: torch.optim.Adam
    rng: torch.Generator
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    # The generator's moving average (`[train] ema`), None when it is off; see `gan.ema`.
    ema: EmaWeights | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "ema": self.ema,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "rng": self.rng.get_state(),
            "step": self.step,
            "history": self.history,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.generator.load_state_dict(saved["generator"])
        self.discriminator.load_state_dict(saved["discriminator"])
        load_optimizer(self.generator_optimizer, saved["generator_optimizer"])
        load_optimizer(self.discriminator_optimizer, saved["discriminator_optimizer"])
        self.rng.set_state(saved["rng"].cpu())
        self.step = int(saved["step"])
        self.history = list(saved["history"])
        if self.ema is not None:
            self.ema = {name: value.to(self.rng.device) for name, value in saved["ema"].items()}


def load_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """`optimizer.load_state_dict`, keeping this run's `capturable` (a checkpoint carries its writer's).

    Capturable Adam keeps its step counter on the parameters' device, the other kind on the CPU.
    """
    capturable = [group["capturable"] for group in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, value in zip(optimizer.param_groups, capturable, strict=True):
        group["capturable"] = value
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            if "step" in state:
                device = parameter.device if value else torch.device("cpu")
                state["step"] = state["step"].to(device=device, dtype=torch.float32)


def adam(parameters: Iterator[torch.nn.Parameter], section: TrainSection, device: torch.device) -> torch.optim.Adam:
    """DCGAN's Adam; `capturable` on CUDA, so a CUDA graph can replay its step."""
    betas = (0.5, 0.999)  # DCGAN's β1: the default 0.9 makes GAN training oscillate
    return torch.optim.Adam(parameters, lr=section.lr, betas=betas, capturable=device.type == "cuda")


def new_state(section: TrainSection, shape: tuple[int, int, int], seed: int,
              device: torch.device, model: Model = BUILTIN) -> GanState:
    """Fresh networks (`model`'s, by default the built-in DCGAN) and optimizers.

    Initial weights depend only on `seed`, not the device.
    """
    torch.manual_seed(seed)
    generator, discriminator = build_networks(model, shape, section.latent_dim, section.width)
    generator.to(device)
    discriminator.to(device)
    return GanState(
        generator=generator,
        discriminator=discriminator,
        generator_optimizer=adam(generator.parameters(), section, device),
        discriminator_optimizer=adam(discriminator.parameters(), section, device),
        rng=torch.Generator(device=device).manual_seed(seed),
        ema=start_ema(generator) if section.ema else None,
    )


def fixed_noise(n_samples: int, latent_dim: int, seed: int, device: torch.device) -> torch.Tensor:
    """The noise every FID evaluation of a study feeds the generator (common random numbers)."""
    return torch.randn(n_samples, latent_dim, generator=torch.Generator().manual_seed(seed + 1)).to(device)


@dataclass(frozen=True)
class TrainHooks:
    """Callbacks at evaluation and checkpoint steps; both may raise to stop training."""

    eval_every: int = 0
    on_evaluation: Callable[[GanState], None] | None = None
    checkpoint_every: int = 0
    on_checkpoint: Callable[[GanState], None] | None = None
    # After every step, at a consistent state: where a noted SIGTERM stops the run (`preemption`).
    after_step: Callable[[GanState], None] | None = None
    progress: Progress | None = None


def train(state: GanState, data: ImageData, section: TrainSection, lam: float,
          steps: int, hooks: TrainHooks = TrainHooks()) -> float:
    """Train from `state.step` up to `steps`, in place.

    Returns:
        Seconds spent in training steps (evaluations and checkpoints excluded).

    Raises:
        Diverged: a loss became NaN or infinite.
    """
    step = make_step(state, data.images, section, lam)
    running = torch.zeros(3, device=data.images.device)
    seconds = 0.0
    state.generator.train()
    state.discriminator.train()
    while state.step < steps:
        started = time.perf_counter()
        running += step()
        if state.ema is not None:
            update_ema_(state.ema, state.generator, section.ema)
        state.step += 1
        if state.step % LOG_EVERY == 0 or state.step == steps:
            _record(state, running, hooks.progress)
            running.zero_()
        seconds += time.perf_counter() - started
        if hooks.on_evaluation and _due(state.step, hooks.eval_every, steps, at_end=True):
            hooks.on_evaluation(state)
        if hooks.on_checkpoint and _due(state.step, hooks.checkpoint_every, steps, at_end=False):
            hooks.on_checkpoint(state)
        if hooks.after_step:
            hooks.after_step(state)
    return seconds


def _due(step: int, every: int, steps: int, at_end: bool) -> bool:
    if not every:
        return False
    return (step % every == 0 and step < steps) or (at_end and step == steps)


def make_step(state: GanState, images: torch.Tensor, section: TrainSection, lam: float) -> Step:
    """One step of `state` per call, returning (generator loss, discriminator loss, generator penalty).

    On CUDA with ``[train] cuda_graph`` the step is replayed from a CUDA graph (see `cuda_graphs`).
    """
    device = images.device
    penalize_generator, penalize_discriminator = penalized_networks(section.apply_to)
    generator_decayed = decayed_parameters(state.generator, section.penalize) if penalize_generator else None
    discriminator_decayed = (decayed_parameters(state.discriminator, section.penalize)
                             if penalize_discriminator else None)
    indices = torch.empty(section.batch_size, dtype=torch.long, device=device)
    noise = torch.empty(section.batch_size, section.latent_dim, device=device)

    def draw() -> None:
        indices.copy_(torch.randint(len(images), (section.batch_size,), device=device, generator=state.rng))
        noise.copy_(torch.randn(section.batch_size, section.latent_dim, device=device, generator=state.rng))

    def body() -> torch.Tensor:
        return _update(state, images[indices], noise, section, lam, generator_decayed, discriminator_decayed)

    return Step(draw, body, device, graphed=section.cuda_graph)


def _update(state: GanState, batch: torch.Tensor, noise: torch.Tensor, section: TrainSection, lam: float,
            generator_decayed: list[torch.nn.Parameter] | None,
            discriminator_decayed: list[torch.nn.Parameter] | None) -> torch.Tensor:
    # "l2" puts λ in the loss; "decoupled" shrinks the weights beside the step instead.
    in_loss = section.decay_mode == "l2"

    # Discriminator: real → 1, fake → 0. Autocast covers the forward passes only: λ·Σ‖w‖² stays fp32.
    with autocast(batch.device, section.precision):
        fake = state.generator(noise)
        discriminator_loss = (F.softplus(-state.discriminator(batch)).mean()
                              + F.softplus(state.discriminator(fake.detach())).mean()).float()
    if discriminator_decayed is not None and in_loss:
        discriminator_loss = discriminator_loss + penalty(lam, discriminator_decayed)
    state.discriminator_optimizer.zero_grad(set_to_none=True)
    discriminator_loss.backward()
    if discriminator_decayed is not None and not in_loss:
        decoupled_decay_(lam, section.lr, discriminator_decayed)
    state.discriminator_optimizer.step()

    # Generator, non-saturating: maximise log D(G(z)).
    with autocast(batch.device, section.precision):
        gan_loss = F.softplus(-state.discriminator(fake)).mean().float()
    generator_penalty = (penalty(lam, generator_decayed) if generator_decayed is not None and in_loss
                         else torch.zeros((), device=batch.device))
    generator_loss = gan_loss + generator_penalty
    state.generator_optimizer.zero_grad(set_to_none=True)
    generator_loss.backward()
    if generator_decayed is not None and not in_loss:
        decoupled_decay_(lam, section.lr, generator_decayed)
    state.generator_optimizer.step()
    return torch.stack([generator_loss.detach(), discriminator_loss.detach(), generator_penalty.detach()])


def _record(state: GanState, running: torch.Tensor, progress: Progress | None) -> None:
    steps_in_window = state.step % LOG_EVERY or LOG_EVERY
    generator_loss, discriminator_loss, generator_penalty = (running / steps_in_window).tolist()
    losses = {"generator_loss": generator_loss, "discriminator_loss": discriminator_loss,
              "generator_penalty": generator_penalty}
    if not all(math.isfinite(value) for value in losses.values()):
        raise Diverged(state.step, losses)
    state.history.append({"step": state.step, **losses})
    if progress is not None:
        progress.update(state.step, losses)
