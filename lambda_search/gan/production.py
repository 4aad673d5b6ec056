"""Production training: train the GAN with an exported λ and config, and score it.

Reuses the sweep's parts (data, `train`, `FidScorer`, the sample grid writer), so
the model trained here is the one the sweep scored, only optionally longer.
Everything it writes lands in one output directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from lambda_search._files import write_atomically
from lambda_search.config import StudyConfig, config_from_dict
from lambda_search.data import load_images
from lambda_search.errors import DataError, TrainingError
from lambda_search.gan import checkpoints
from lambda_search.gan.ema import averaged_generator
from lambda_search.gan.train import (
    Diverged,
    GanState,
    ProgressFactory,
    TrainHooks,
    configure_torch,
    fixed_noise,
    new_state,
    train,
)
from lambda_search.metrics.fid import FidScorer
from lambda_search.names import FID, FID_EMA

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
RESULT_FILE = "result.json"


class ProductionResult(NamedTuple):
    lam: float
    # The export's objective (`[study] objective`): the live generator's FID, or the EMA generator's.
    fid: float
    steps: int
    seconds: float
    device: str
    same_protocol: bool
    directory: Path


def production_config(export: dict[str, Any], steps: int | None = None, device: str | None = None) -> StudyConfig:
    """The exported config, with the optional `--steps` and `--device` overrides applied."""
    overrides = {key: value for key, value in {"steps": steps, "device": device}.items() if value is not None}
    return config_from_dict(export["config"]).with_overrides(train=overrides)


def save_model(path: Path, state: GanState, lam: float, config: StudyConfig, fid: float,
               averaged: nn.Module | None = None) -> None:
    """The checkpoint: generator and discriminator state dicts plus what made them (loads with weights_only).

    `averaged`, the EMA generator (BatchNorm statistics recomputed), goes under ``generator_ema``.
    """
    payload = {"generator": state.generator.state_dict(), "discriminator": state.discriminator.state_dict(),
               "generator_ema": None if averaged is None else averaged.state_dict(),
               "lambda": lam, "step": state.step, "fid": fid, "config": config.to_dict()}
    write_atomically(path, lambda stream: torch.save(payload, stream))


def train_from_export(export: dict[str, Any], directory: Path, steps: int | None = None,
                      device: str | None = None, progress: ProgressFactory | None = None) -> ProductionResult:
    """Train with the export's λ and config, then write checkpoint, samples and result into `directory`.

    Raises:
        DataError: the dataset is not the one the export was found on.
        TrainingError: a loss became NaN or infinite.
    """
    lam = float(export["lambda"])
    config = production_config(export, steps, device)
    torch_device = configure_torch(config.train)
    data = load_images(config.data).to(torch_device)
    expected = export.get("dataset_fingerprint")
    if expected and expected != data.fingerprint:
        raise DataError(f"dataset {config.data.dataset!r} here has fingerprint {data.fingerprint[:16]}…, "
                        f"the export was found on {expected[:16]}…: the images differ")
    scorer = FidScorer(config.fid, data, torch_device)
    state = new_state(config.train, data.shape, config.study.seed, torch_device)
    noise = fixed_noise(config.fid.n_samples, config.train.latent_dim, config.study.seed, torch_device)
    factory = progress(0, lam, config.train.steps) if progress else contextlib.nullcontext()
    with factory as bar:
        try:
            seconds = train(state, data, config.train, lam, config.train.steps, TrainHooks(progress=bar))
        except Diverged as diverged:
            raise TrainingError(f"training with λ={lam:.6g} diverged: {diverged}") from None
    # With [train] ema the product is also the EMA generator; the objective says which one the export's FID judged.
    averaged = (None if state.ema is None else
                averaged_generator(state.generator, state.ema, config.train, config.study.seed, torch_device))
    judged = averaged if averaged is not None and config.study.objective == FID_EMA else state.generator
    fid = scorer.score(judged, noise)
    same_protocol = scorer.protocol.to_dict() == export.get("fid", {}).get("protocol")
    if not same_protocol:
        log.warning("the FID protocol here differs from the export's: the FIDs do not compare")
    directory.mkdir(parents=True, exist_ok=True)
    save_model(directory / CHECKPOINT_FILE, state, lam, config, fid, averaged)
    checkpoints.write_trial_files(directory, state, [{"step": state.step, config.study.objective: fid}], noise)
    result = ProductionResult(lam, fid, state.step, seconds, str(torch_device), same_protocol, directory)
    _write_result(directory / RESULT_FILE, result, export, scorer.protocol.to_dict())
    return result


def _write_result(path: Path, result: ProductionResult, export: dict[str, Any], protocol: dict[str, Any]) -> None:
    record = {
        "lambda": result.lam, "fid": result.fid, "objective": export["config"]["study"].get("objective", FID),
        "steps": result.steps, "train_seconds": result.seconds,
        "device": result.device, "fid_protocol": protocol, "same_protocol_as_export": result.same_protocol,
        "export_fid": export.get("fid", {}).get("value"), "export_study": export.get("study"),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))
