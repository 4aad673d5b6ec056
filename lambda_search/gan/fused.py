"""K λ-trials fused into one job: K generators and K discriminators as grouped layers.

On a GPU one small DCGAN leaves most of the chip idle; K of them side by side, as
grouped convolutions (HFTA's horizontal fusion), fill it. Member k of every fused
tensor is the contiguous slice ``tensor.view(K, -1)[k]`` — the same numbers, in the
same order, as the matching tensor of a lone `models.Generator`/`Discriminator` —
so members move in and out of a fused job by slicing (`fuse`, `unfuse`), and each
keeps its own weights, λ, seed-driven RNG, Adam state and EMA weights. Adam and the
EMA update are elementwise, so one of each over the fused tensors is K independent ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from lambda_search.config import TrainSection
from lambda_search.data import ImageData
from lambda_search.gan.batched_conv import BatchedConv2d, BatchedConvTranspose2d
from lambda_search.gan.cuda_graphs import Step, autocast
from lambda_search.gan.ema import EmaWeights, update_ema_
from lambda_search.gan.penalty import penalized_networks
from lambda_search.gan.train import LOG_EVERY, GanState, adam, new_state


class GroupedLinear(nn.Module):
    """K independent Linear layers: (K, B, in) → (K, B, out)."""

    def __init__(self, members: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(members, out_features)) if bias else None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = torch.bmm(inputs, self.weight.transpose(1, 2))
        return outputs if self.bias is None else outputs + self.bias.unsqueeze(1)


class FusedGenerator(nn.Module):
    """K `models.Generator`s; parameter names match theirs one to one."""

    def __init__(self, members: int, latent_dim: int, shape: tuple[int, int, int], width: int,
                 batched: bool = False) -> None:
        super().__init__()
        transposed_conv = BatchedConvTranspose2d if batched else nn.ConvTranspose2d
        channels, height, width_px = shape
        self.members = members
        self.start = (2 * width, height // 4, width_px // 4)
        projected = 2 * width * (height // 4) * (width_px // 4)
        self.project = nn.Sequential(
            GroupedLinear(members, latent_dim, projected, bias=False),
            nn.BatchNorm1d(members * projected),
            nn.ReLU(inplace=True),
        )
        self.upsample = nn.Sequential(
            # state size. (K·2w) x H/4 x W/4
            transposed_conv(members * 2 * width, members * width, 4, 2, 1, bias=False, groups=members),
            nn.BatchNorm2d(members * width),
            nn.ReLU(inplace=True),
            # state size. (K·w) x H/2 x W/2
            transposed_conv(members * width, members * channels, 4, 2, 1, groups=members),
            nn.Tanh(),
            # state size. (K·C) x H x W
        )

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        # noise: (K, B, latent_dim)
        linear = self.project[0](noise)  # (K, B, F)
        batch = noise.shape[1]
        flat = linear.transpose(0, 1).reshape(batch, -1)  # (B, K·F), member-major like the BN channels
        projected = self.project[2](self.project[1](flat))
        return self.upsample(projected.view(batch, self.members * self.start[0], *self.start[1:]))


class FusedDiscriminator(nn.Module):
    """K `models.Discriminator`s: (B, K·C, H, W) → logits (B, K)."""

    def __init__(self, members: int, shape: tuple[int, int, int], width: int, batched: bool = False) -> None:
        super().__init__()
        conv = BatchedConv2d if batched else nn.Conv2d
        channels, height, width_px = shape
        self.members = members
        self.features = nn.Sequential(
            conv(members * channels, members * width, 4, 2, 1, groups=members),
            nn.LeakyReLU(0.2, inplace=True),
            conv(members * width, members * 2 * width, 4, 2, 1, bias=False, groups=members),
            nn.BatchNorm2d(members * 2 * width),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.classify = GroupedLinear(members, 2 * width * (height // 4) * (width_px // 4), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images)  # (B, K·2w, H/4, W/4)
        batch = features.shape[0]
        per_member = features.reshape(batch, self.members, -1).transpose(0, 1)  # (K, B, D); channels_last copies
        return self.classify(per_member).squeeze(2).transpose(0, 1)  # (B, K)


def _stack(tensors: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.stack([t.reshape(-1) for t in tensors]).view_as(like)


def _member(tensor: torch.Tensor, index: int, members: int, shape: torch.Size) -> torch.Tensor:
    if tensor.dim() == 0:  # Adam's step count and BN's num_batches_tracked are shared
        return tensor.clone()
    return tensor.reshape(members, -1)[index].reshape(shape).clone()


def _fuse_module(fused: nn.Module, singles: list[nn.Module]) -> None:
    states = [single.state_dict() for single in singles]
    fused.load_state_dict({
        name: states[0][name] if value.dim() == 0 else _stack([state[name] for state in states], value)
        for name, value in fused.state_dict().items()
    })


def _fuse_optimizer(fused: torch.optim.Adam, singles: list[torch.optim.Adam]) -> None:
    states = [single.state_dict() for single in singles]
    merged = fused.state_dict()
    params = [p for group in fused.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        if index not in states[0]["state"]:
            continue
        merged["state"][index] = {
            key: value if value.dim() == 0 else _stack([s["state"][index][key] for s in states], param)
            for key, value in states[0]["state"][index].items()
        }
    fused.load_state_dict(merged)


@dataclass
class FusedGan:
    """K GAN trainings in one: fused networks and optimizers, one RNG and λ per member."""

    generator: FusedGenerator
    discriminator: FusedDiscriminator
    generator_optimizer: torch.optim.Adam
    discriminator_optimizer: torch.optim.Adam
    rngs: list[torch.Generator]
    lams: torch.Tensor  # (K,)
    seeds: list[int]
    step: int = 0
    histories: list[list[dict[str, float]]] = field(default_factory=list)
    # The members' EMA weights as fused tensors, named like the fused generator's parameters; None when off.
    ema: EmaWeights | None = None

    @property
    def members(self) -> int:
        return len(self.rngs)


def fuse(states: list[GanState], lams: list[float], seeds: list[int], section: TrainSection,
         shape: tuple[int, int, int]) -> FusedGan:
    """Fuse lone GAN states (all at the same step) into one job."""
    members = len(states)
    device = states[0].rng.device
    batched = section.fused_conv == "batched"
    generator = FusedGenerator(members, section.latent_dim, shape, section.width, batched).to(device)
    discriminator = FusedDiscriminator(members, shape, section.width, batched).to(device)
    _fuse_module(generator, [s.generator for s in states])
    _fuse_module(discriminator, [s.discriminator for s in states])
    optimizers = []
    for fused_net, singles in ((generator, [s.generator_optimizer for s in states]),
                               (discriminator, [s.discriminator_optimizer for s in states])):
        optimizer = adam(fused_net.parameters(), section, device)
        _fuse_optimizer(optimizer, singles)
        optimizers.append(optimizer)
    return FusedGan(generator, discriminator, optimizers[0], optimizers[1],
                    [s.rng for s in states], torch.tensor(lams, device=device), list(seeds),
                    states[0].step, [list(s.history) for s in states], _fuse_ema(generator, states))


def _fuse_ema(generator: FusedGenerator, states: list[GanState]) -> EmaWeights | None:
    emas = [state.ema for state in states]
    if any(ema is None for ema in emas):
        return None
    return {name: _stack([ema[name] for ema in emas if ema is not None], parameter)
            for name, parameter in generator.named_parameters()}


def unfuse(fused: FusedGan, index: int, section: TrainSection, shape: tuple[int, int, int]) -> GanState:
    """Member `index` as a lone GanState (weights, optimizer state, RNG, step, history)."""
    device = fused.rngs[index].device
    state = new_state(section, shape, fused.seeds[index], device)
    members = fused.members
    for single, fused_net in ((state.generator, fused.generator), (state.discriminator, fused.discriminator)):
        fused_state = fused_net.state_dict()
        single.load_state_dict({
            name: _member(fused_state[name], index, members, value.shape)
            for name, value in single.state_dict().items()
        })
    for single_opt, fused_opt in ((state.generator_optimizer, fused.generator_optimizer),
                                  (state.discriminator_optimizer, fused.discriminator_optimizer)):
        shapes = [p.shape for group in single_opt.param_groups for p in group["params"]]
        saved = fused_opt.state_dict()
        saved["state"] = {
            i: {key: _member(value, index, members, shapes[i]) for key, value in entry.items()}
            for i, entry in saved["state"].items()
        }
        single_opt.load_state_dict(saved)
    state.rng = fused.rngs[index]
    state.step = fused.step
    state.history = list(fused.histories[index])
    if fused.ema is not None and state.ema is not None:
        state.ema = {name: _member(fused.ema[name], index, members, value.shape) for name, value in state.ema.items()}
    return state


def select(fused: FusedGan, keep: list[int], section: TrainSection, shape: tuple[int, int, int]) -> FusedGan:
    """A fused job of only the members in `keep` (pruned members leave the batch)."""
    states = [unfuse(fused, index, section, shape) for index in keep]
    return fuse(states, [float(fused.lams[i]) for i in keep], [fused.seeds[i] for i in keep], section, shape)


def _member_squared_norms(module: nn.Module, members: int, penalize: str) -> torch.Tensor:
    """(K,) Σ‖w‖² of each member, over the tensors a lone model would decay (see `penalty`)."""
    norms = []
    for layer in module.modules():
        for parameter in layer.parameters(recurse=False):
            lone_dims = parameter.dim() - 1 if isinstance(layer, GroupedLinear) else parameter.dim()
            if penalize == "all" or lone_dims >= 2:
                norms.append(parameter.reshape(members, -1).pow(2).sum(1))
    return torch.stack(norms).sum(0)


def make_fused_step(fused: FusedGan, images: torch.Tensor, section: TrainSection) -> Step:
    """One step of every member per call, returning (K, 3): generator loss, discriminator loss, generator penalty.

    Graphed on CUDA like a lone trial's step (`train.make_step`); a job that loses members needs a new one.
    """
    members, batch_size, device = fused.members, section.batch_size, images.device
    indices = torch.empty(members, batch_size, dtype=torch.long, device=device)
    noise = torch.empty(members, batch_size, section.latent_dim, device=device)

    def draw() -> None:
        for member, rng in enumerate(fused.rngs):  # the same draws, in the same order, as a lone trial's
            indices[member].copy_(torch.randint(len(images), (batch_size,), device=device, generator=rng))
            noise[member].copy_(torch.randn(batch_size, section.latent_dim, device=device, generator=rng))

    def body() -> torch.Tensor:
        real = images[indices].transpose(0, 1).flatten(1, 2)  # (B, K·C, H, W)
        return _fused_update(fused, real, noise, section)

    return Step(draw, body, device, graphed=section.cuda_graph)


def _fused_update(fused: FusedGan, real: torch.Tensor, noise: torch.Tensor, section: TrainSection) -> torch.Tensor:
    members, device = fused.members, real.device
    penalize_generator, penalize_discriminator = penalized_networks(section.apply_to)
    with autocast(device, section.precision):
        fake = fused.generator(noise)
        discriminator_loss = (F.softplus(-fused.discriminator(real)).mean(0)
                              + F.softplus(fused.discriminator(fake.detach())).mean(0)).float()  # (K,)
    total = discriminator_loss
    if penalize_discriminator:
        total = total + fused.lams * _member_squared_norms(fused.discriminator, members, section.penalize)
    fused.discriminator_optimizer.zero_grad(set_to_none=True)
    total.sum().backward()
    fused.discriminator_optimizer.step()

    generator_penalty = (fused.lams * _member_squared_norms(fused.generator, members, section.penalize)
                         if penalize_generator else torch.zeros(members, device=device))
    with autocast(device, section.precision):
        gan_loss = F.softplus(-fused.discriminator(fake)).mean(0).float()
    generator_loss = gan_loss + generator_penalty
    fused.generator_optimizer.zero_grad(set_to_none=True)
    generator_loss.sum().backward()
    fused.generator_optimizer.step()
    return torch.stack([generator_loss.detach(), total.detach(), generator_penalty.detach()], 1)


# evaluate(fused) → {member index: reason} for members that must leave (pruned or diverged).
Evaluate = Callable[[FusedGan], dict[int, str]]
# on_leave(fused, {member index: reason}) runs before those members are removed from the job.
OnLeave = Callable[[FusedGan, dict[int, str]], None]


def train_fused(fused: FusedGan, data: ImageData, section: TrainSection, steps: int,
                eval_every: int, evaluate: Evaluate, on_leave: OnLeave,
                after_step: Callable[[FusedGan], None] | None = None) -> tuple[FusedGan, float]:
    """Train every member to `steps`; members leave on NaN losses or when `evaluate` says so.

    `after_step` sees the job after every step, members that left already gone (it
    checkpoints, and may raise to stop).

    Returns the final job (its members all reached `steps`) and the seconds spent
    in training steps.
    """
    step = make_fused_step(fused, data.images, section)
    running = torch.zeros(fused.members, 3, device=data.images.device)
    seconds = 0.0
    shape = data.shape
    while fused.step < steps and fused.members:
        started = time.perf_counter()
        running += step()
        if fused.ema is not None:
            update_ema_(fused.ema, fused.generator, section.ema)
        fused.step += 1
        leaving: dict[int, str] = {}
        if fused.step % LOG_EVERY == 0 or fused.step == steps:
            leaving.update(_record(fused, running))
            running.zero_()
        seconds += time.perf_counter() - started
        if not leaving and (fused.step % eval_every == 0 or fused.step == steps):
            leaving.update(evaluate(fused))
        if leaving:
            on_leave(fused, leaving)
            keep = [i for i in range(fused.members) if i not in leaving]
            if keep:
                fused = select(fused, keep, section, shape)
                step = make_fused_step(fused, data.images, section)
            else:
                fused.rngs = []
            running = torch.zeros(len(keep), 3, device=data.images.device)
        if after_step and fused.members:
            after_step(fused)
    return fused, seconds


def _record(fused: FusedGan, running: torch.Tensor) -> dict[int, str]:
    window = fused.step % LOG_EVERY or LOG_EVERY
    diverged = {}
    for index, values in enumerate((running / window).tolist()):
        losses = dict(zip(("generator_loss", "discriminator_loss", "generator_penalty"), values, strict=True))
        if not all(math.isfinite(v) for v in losses.values()):
            diverged[index] = f"loss not finite at step {fused.step}: {losses}"
        fused.histories[index].append({"step": fused.step, **losses})
    return diverged
