"""Shared by the benchmarks that train lone trials: one run trained and scored as a trial is."""

from __future__ import annotations

from lambda_search.config import StudyConfig
from lambda_search.data import ImageData
from lambda_search.gan.ema import score_ema
from lambda_search.gan.train import GanState, TrainHooks, fixed_noise, new_state, train
from lambda_search.metrics.fid import FidScorer
from lambda_search.names import FID, FID_EMA


def train_and_score(config: StudyConfig, data: ImageData, scorer: FidScorer, lam: float,
                    seed: int) -> tuple[dict[str, float], float]:
    """Train one run on `data`'s device, scoring it at every evaluation as a trial is.

    Returns:
        The last evaluation's FIDs (`fid`, and `fid_ema` when `[train] ema` is on), and the
        seconds spent in training steps (evaluations excluded).
    """
    device = data.images.device
    noise = fixed_noise(config.fid.n_samples, config.train.latent_dim, seed, device)
    last: dict[str, float] = {}

    def evaluate(state: GanState) -> None:
        last[FID] = scorer.score(state.generator, noise)
        if state.ema is not None:
            last[FID_EMA] = score_ema(scorer, state, config, seed, noise)

    state = new_state(config.train, data.shape, seed, device)
    training = train(state, data, config.train, lam, config.train.steps,
                     TrainHooks(eval_every=config.fid.eval_every, on_evaluation=evaluate))
    return last, training
