"""Production training: train the GAN with an exported λ and config, and score it.

Reuses the sweep's parts (data, networks, `train`, `FidScorer`, the sample grid writer),
so the model trained here is the one the sweep scored, only optionally longer.
It trains on the export's `seed`, the seed of the run whose FID was exported (a race's
or a confirmation's first fresh seed: their exported FID is a mean over seeds), so with
the same config on the same kind of machine it gets that run's FID back (`Export.seed_fid`).
Everything it writes lands in one output directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import NamedTuple

import torch

from lambda_search._files import make_writable_dir, write_atomically
from lambda_search.config import StudyConfig
from lambda_search.data import load_images
from lambda_search.errors import ConfigError, DataError, TrainingError
from lambda_search.gan import checkpoints
from lambda_search.gan.ema import generator_scores
from lambda_search.gan.factory import Model, check_model, load_model
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
from lambda_search.names import EMA_GENERATOR, JUDGED_GENERATOR
from lambda_search.records.export import Export
from lambda_search.records.trials import protocol_differences, protocol_fields

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
RESULT_FILE = "result.json"


class ProductionResult(NamedTuple):
    lam: float
    # The FID the study judges (`[study] objective`: the live generator's, or its EMA's), as the export's.
    fid: float
    steps: int
    seconds: float
    device: str
    same_protocol: bool
    directory: Path
    seed: int
    # The export's FID of its run on `seed` (None if it has none), and whether this run got it back.
    seed_fid: float | None
    reproduces: bool | None
    # Both FIDs: {"fid": live, "fid_ema": the EMA generator's, with [train] ema}.
    fids: dict[str, float]
    # The judged generator's KID, as the export's: {"value", "std", "generator": "live" or "ema"}.
    kid: dict[str, float | str | None]


def production_config(export: Export, steps: int | None = None, device: str | None = None) -> StudyConfig:
    """The exported config, with the optional `--steps` and `--device` overrides applied."""
    overrides = {key: value for key, value in {"steps": steps, "device": device}.items() if value is not None}
    return export.config.with_overrides(train=overrides)


def export_model(export: Export, config: StudyConfig) -> Model:
    """The networks the export was found with, loaded here (`[model] factory`).

    Raises:
        ConfigError: the factory here is not the export's (another path, version or source).
    """
    model = load_model(config.model)
    if model.identity != export.model:
        raise ConfigError(f"the export was found with the model {export.model}; here [model] factory gives "
                          f"{model.identity}: the networks differ, restore the export's factory source")
    return model


def save_model(path: Path, state: GanState, lam: float, config: StudyConfig, fid: float) -> None:
    """The checkpoint: generator and discriminator state dicts plus what made them (loads with weights_only)."""
    payload = {"generator": state.generator.state_dict(), "discriminator": state.discriminator.state_dict(),
               "lambda": lam, "step": state.step, "fid": fid, "config": config.to_dict()}
    write_atomically(path, lambda stream: torch.save(payload, stream))


def train_from_export(export: Export, directory: Path, steps: int | None = None,
                      device: str | None = None, progress: ProgressFactory | None = None) -> ProductionResult:
    """Train with the export's λ, config, networks and seed, then write checkpoint, samples and result into `directory`.

    Raises:
        ConfigError: the networks here are not the export's.
        DataError: the dataset is not the one the export was found on.
        ResourceError: `directory` cannot be made or written.
        TrainingError: a loss became NaN or infinite.
    """
    lam, seed = export.lam, export.seed
    config = production_config(export, steps, device)
    model = export_model(export, config)
    torch_device = configure_torch(config.train)
    make_writable_dir(directory, "output folder")  # before the training, not after it
    data = load_images(config.data).to(torch_device)
    expected = export.protocol.get("dataset_fingerprint")
    if expected and expected != data.fingerprint:
        raise DataError(f"dataset {config.data.dataset!r} here has fingerprint {data.fingerprint[:16]}…, "
                        f"the export was found on {expected[:16]}…: the images differ")
    check_model(model, data.shape, config.train.latent_dim, config.train.width)
    scorer = FidScorer(config.fid, data, torch_device)
    # The seed fixes the initial weights, the batches and the FID's noise, as it did for the exported run.
    state = new_state(config.train, data.shape, seed, torch_device, model)
    noise = fixed_noise(config.fid.n_samples, config.train.latent_dim, seed, torch_device)
    factory = progress(0, lam, config.train.steps) if progress else contextlib.nullcontext()
    with factory as bar:
        try:
            seconds = train(state, data, config.train, lam, config.train.steps, TrainHooks(progress=bar))
        except Diverged as diverged:
            raise TrainingError(f"training with λ={lam:.6g} diverged: {diverged}") from None
    fids, kid = _final_scores(scorer, state, config, seed, noise)
    fid = fids[config.study.objective]
    differing = protocol_differences(export.protocol, scorer.protocol.to_dict())
    same_protocol = not differing
    if differing:
        log.warning("the FID protocol here differs from the export's (%s here, %s there): the FIDs do not compare",
                    protocol_fields(scorer.protocol.to_dict(), differing), protocol_fields(export.protocol, differing))
    save_model(directory / CHECKPOINT_FILE, state, lam, config, fid)
    checkpoints.write_trial_files(directory, state, [{"step": state.step, "fid": fid}], noise)
    result = ProductionResult(lam, fid, state.step, seconds, str(torch_device), same_protocol, directory, seed,
                              export.seed_fid, _reproduces(fid, export, config), fids, kid)
    _write_result(directory / RESULT_FILE, result, export, scorer.protocol.to_dict())
    return result


def _final_scores(scorer: FidScorer, state: GanState, config: StudyConfig, seed: int,
                  noise: torch.Tensor) -> tuple[dict[str, float], dict[str, float | str | None]]:
    """Both FIDs and the judged generator's KID (`[study] objective`), as a sweep's last evaluation has them."""
    scores = generator_scores(scorer, state, config, seed, noise, kid=True)
    generator = JUDGED_GENERATOR[config.study.objective]
    judged = scores.ema if scores.ema is not None and generator == EMA_GENERATOR else scores.live
    return scores.fids, {"value": judged.kid, "std": judged.kid_std, "generator": generator}


# Same FID as the export's run, up to float noise: bit for bit on the CPU at the same thread count and
# on a GPU with deterministic algorithms; without them a GPU rerun differs (by up to 11 FID on an H200).
REPRODUCED_REL = 1e-6


def _reproduces(fid: float, export: Export, config: StudyConfig) -> bool | None:
    """Whether `fid` is the export's FID of the same seed; None when it cannot be (no such FID, other steps)."""
    if export.seed_fid is None or config.train.steps != export.config.train.steps:
        return None
    return abs(fid - export.seed_fid) <= REPRODUCED_REL * abs(export.seed_fid)


def reproduction_line(result: ProductionResult) -> str:
    """Whether the run got the export's FID of its seed back, in one line."""
    if result.reproduces is None:
        return f"not compared with the export: it holds no FID of seed {result.seed} at {result.steps} steps"
    if result.reproduces:
        return f"the export's run on seed {result.seed} scored the same FID ({result.seed_fid:.4f}): reproduced"
    return (f"the export's run on seed {result.seed} scored FID {result.seed_fid:.4f}: not reproduced here "
            "(another machine, thread count or device changes the arithmetic; on a GPU, so does every run "
            "without [train] deterministic = true)")


def _write_result(path: Path, result: ProductionResult, export: Export, protocol: dict[str, object]) -> None:
    record = {
        # `fid` is the objective's (as the export's FID), `fids` both: the live generator's and its EMA's.
        "lambda": result.lam, "fid": result.fid, "objective": export.config.study.objective, "fids": result.fids,
        "kid": result.kid,
        "steps": result.steps, "train_seconds": result.seconds,
        "device": result.device, "fid_protocol": protocol, "same_protocol_as_export": result.same_protocol,
        "export_fid": export.fid.value, "export_study": export.study.to_dict(),
        "seed": result.seed, "seed_note": export.seed_note,
        # The export's FID of its run on `seed`, and whether this run got it back (null: not comparable).
        "export_seed_fid": result.seed_fid, "reproduces_export_seed_fid": result.reproduces,
        "model": export.model,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))
