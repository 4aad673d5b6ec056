"""The EMA generator: an exponential moving average of the generator's weights, scored beside it.

With ``[train] ema = d`` every training step ends with ``w_ema ← d·w_ema + (1 − d)·w`` on the
generator's parameters — `torch.optim.swa_utils.get_ema_multi_avg_fn`, the update `AveragedModel`
applies — starting from the initial weights. The BatchNorm buffers are NOT averaged (averaged
buffers broke EMA 0.99: FID 468, issue 19): before each evaluation the EMA generator's BatchNorm
statistics are recomputed from scratch, as `swa_utils.update_bn` does, over a fixed, seeded set
of latent batches, so the same weights always give the same FID. At a trial's final evaluation
the EMA generator's KID is taken from the same pass (`ema_scores`), as the live generator's is.

The average is a dict of tensors named like the generator's parameters: a fused job keeps one
of fused tensors, sliced per member like its weights (`gan.fused`), and a checkpoint holds it.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn, update_bn

from lambda_search.names import FID, FID_EMA

if TYPE_CHECKING:
    from lambda_search.config import StudyConfig
    from lambda_search.gan.train import GanState
    from lambda_search.metrics.fid import FidScorer, Scores

# Latent batches (of the training batch size) the EMA generator's BatchNorm statistics are recomputed
# on: 16 × 64 = 1,024 draws, a few percent of an evaluation's cost.
BN_BATCHES = 16

EmaWeights = dict[str, torch.Tensor]


def start_ema(generator: nn.Module) -> EmaWeights:
    """The average at step 0: a copy of the generator's parameters (BatchNorm buffers excluded)."""
    return {name: parameter.detach().clone() for name, parameter in generator.named_parameters()}


@torch.no_grad()
def update_ema_(ema: EmaWeights, generator: nn.Module, decay: float) -> None:
    """One step of the average, in place: ema ← decay·ema + (1 − decay)·w (a fused generator too)."""
    named = list(generator.named_parameters())
    get_ema_multi_avg_fn(decay)([ema[name] for name, _ in named], [parameter.detach() for _, parameter in named],
                                None)


def bn_noise(batches: int, batch_size: int, latent_dim: int, seed: int, device: torch.device) -> list[torch.Tensor]:
    """The latent batches BatchNorm statistics are recomputed on: drawn on the CPU from `seed`, so any device agrees."""
    draws = torch.Generator().manual_seed(seed + 2)  # seed + 1 draws the FID's fixed noise (`train.fixed_noise`)
    return [torch.randn(batch_size, latent_dim, generator=draws).to(device) for _ in range(batches)]


def ema_generator(generator: nn.Module, ema: EmaWeights, noise: list[torch.Tensor]) -> nn.Module:
    """A copy of `generator` holding the averaged weights, its BatchNorm statistics recomputed on `noise`.

    `update_bn` resets the running statistics and takes their cumulative average (momentum None) over
    forward passes in train mode; the copy is returned in eval mode, as the scorer uses it.
    """
    averaged = copy.deepcopy(generator)  # a copy, not a new network: building one would draw from the global RNG
    with torch.no_grad():
        for name, parameter in averaged.named_parameters():
            parameter.copy_(ema[name])
    update_bn(noise, averaged)
    return averaged.eval()


def score_ema(scorer: FidScorer, state: GanState, config: StudyConfig, seed: int, noise: torch.Tensor) -> float:
    """FID of the EMA generator, its BatchNorm statistics recomputed on the seed's fixed latent batches (`gan.ema`)."""
    return ema_scores(scorer, state, config, seed, noise).fid


def ema_scores(scorer: FidScorer, state: GanState, config: StudyConfig, seed: int, noise: torch.Tensor,
               kid: bool = False) -> Scores:
    """`score_ema`'s FID, and the EMA generator's KID if `kid`: from the features its FID pass computes."""
    assert state.ema is not None
    device = noise.device
    batches = bn_noise(BN_BATCHES, config.train.batch_size, config.train.latent_dim, seed, device)
    return scorer.scores(ema_generator(state.generator, state.ema, batches), noise, kid=kid)


class GeneratorScores(NamedTuple):
    """One evaluation of a trial: the live generator's scores, and the EMA generator's with `[train] ema`."""

    live: Scores
    ema: Scores | None

    @property
    def fids(self) -> dict[str, float]:
        """``{"fid": live FID, "fid_ema": the EMA generator's}`` (the second only with an EMA)."""
        return {FID: self.live.fid} if self.ema is None else {FID: self.live.fid, FID_EMA: self.ema.fid}


def generator_scores(scorer: FidScorer, state: GanState, config: StudyConfig, seed: int, noise: torch.Tensor,
                     kid: bool = False) -> GeneratorScores:
    """Both generators scored on `noise` (the EMA one only where `state` has an EMA), with their KIDs if `kid`."""
    live = scorer.scores(state.generator, noise, kid=kid)
    return GeneratorScores(live, None if state.ema is None else ema_scores(scorer, state, config, seed, noise, kid))
