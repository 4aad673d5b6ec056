"""Optuna glue at the study level: open the study with its sampler and pruner, run a worker on it.

`prepare` checks the input and opens (or joins) the study; `run` hands the worker to the
trial loop (`trial`, or `fused_trials` for fused jobs) and to the λ = 0 control (`control`),
then summarizes. `PARAM` and `ProgressFactory` live in `trial` and are exported here as
part of the study API.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from lambda_search.config import StudyConfig
from lambda_search.data import load_images
from lambda_search.errors import ConfigError, StudyNotFoundError
from lambda_search.gan.train import fixed_noise
from lambda_search.metrics.fid import FidScorer
from lambda_search.sweep.control import load_control, open_control, run_control
from lambda_search.sweep.fused_trials import run_fused
from lambda_search.sweep.storage import mask_password, open_storage, sqlite_path, worker_lock
from lambda_search.sweep.trial import PARAM, ProgressFactory, Worker, run_trials

__all__ = [
    "FINISHED",
    "PARAM",
    "ProgressFactory",
    "RunSummary",
    "artifact_dir",
    "load_study",
    "make_pruner",
    "make_sampler",
    "prepare",
    "resolve_device",
    "run",
    "summarize",
]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def resolve_device(name: str) -> torch.device:
    """`auto` → the first CUDA device when there is one, else the CPU.

    Raises:
        ConfigError: a CUDA device was named and is not there.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: no CUDA device is available here; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def artifact_dir(config: StudyConfig) -> Path:
    """Where a study's artifacts and checkpoints live (see [study] artifacts)."""
    if config.study.artifacts:
        return Path(config.study.artifacts)
    path = sqlite_path(config.study.resolved_storage)
    if path is not None:
        return path.with_name(f"{path.stem}.artifacts")
    return Path("artifacts") / config.study.name


def make_sampler(config: StudyConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded by `seed` for the first worker and `seed + i` for the i-th to join."""
    seed = config.study.seed + worker_index
    if config.study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.study.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if config.study.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    # One parameter: a handful of random trials is enough to start TPE's model.
    startup = min(10, max(3, config.study.n_trials // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    every, steps = config.fid.eval_every, config.train.steps
    if config.study.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=every)
    if config.study.pruner == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=every, reduction_factor=3)
    if config.study.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=every, max_resource=steps, reduction_factor=3)
    return optuna.pruners.NopPruner()


def load_study(storage_url: str, name: str) -> optuna.Study:
    """An existing study, read through the same storage settings a worker uses.

    Raises:
        StudyNotFoundError: no study of that name; the message lists those there are.
    """
    path = sqlite_path(storage_url)
    if path is not None and not path.exists():
        raise StudyNotFoundError(f"no study {name!r}: the SQLite file {path} does not exist")
    storage = open_storage(storage_url)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise StudyNotFoundError(f"no study {name!r} in this storage (studies: {listed})")
    return optuna.load_study(study_name=name, storage=storage)


def _check_compatible(study: optuna.Study, config: StudyConfig, protocol: dict[str, Any]) -> None:
    attrs = study.user_attrs
    search = dataclasses.asdict(config.search)
    # The λ range only: whether a worker also trains the λ = 0 control changes no sweep trial.
    if "search" in attrs and any(attrs["search"].get(key) != search[key] for key in ("lambda_low", "lambda_high")):
        raise ConfigError(
            f"study {config.study.name!r} searches λ in [{attrs['search']['lambda_low']}, "
            f"{attrs['search']['lambda_high']}]; this file asks for [{search['lambda_low']}, "
            f"{search['lambda_high']}]: use another study name"
        )
    if "fid_protocol" in attrs and attrs["fid_protocol"] != protocol:
        raise ConfigError(
            f"study {config.study.name!r} scores FID with {attrs['fid_protocol']}; this file asks "
            f"for {protocol}: FIDs of different protocols do not compare, use another study name"
        )


def _open_study(config: StudyConfig, storage: BaseStorage, protocol: dict[str, Any]) -> optuna.Study:
    with worker_lock(storage, config.study.name):
        study = optuna.create_study(
            study_name=config.study.name,
            storage=storage,
            pruner=make_pruner(config),
            direction="minimize",
            load_if_exists=True,
        )
        _check_compatible(study, config, protocol)
        if "search" not in study.user_attrs:
            study.set_user_attr("search", dataclasses.asdict(config.search))
            study.set_user_attr("fid_protocol", protocol)
            study.set_user_attr("config", config.to_dict())
        # Workers seeded alike would propose the same λ values side by side: give each its own stream.
        worker_index = int(study.user_attrs.get("workers_started", 0))
        study.set_user_attr("workers_started", worker_index + 1)
    study.sampler = make_sampler(config, worker_index)
    return study


@dataclass(frozen=True)
class RunSummary:
    trained: int
    finished: int
    n_trials: int
    best_value: float | None
    best_lambda: float | None
    # λ = 0 control runs this worker trained (0 or 1, more only if one failed), and the control run.
    control_trained: int = 0
    control: FrozenTrial | None = None


def prepare(config: StudyConfig, progress: ProgressFactory | None = None) -> Worker:
    """Validate everything that can be wrong with the input, then open the study.

    Data, device and feature network come first: bad input fails before the
    storage is touched.
    """
    device = resolve_device(config.train.device)
    data = load_images(config.data).to(device)
    scorer = FidScorer(config.fid, data, device)
    storage = open_storage(config.study.resolved_storage, config.study.heartbeat_seconds,
                           config.study.max_retries)
    # The config is stored on the study and every trial (and exported from there):
    # from here on it holds the storage URL without its password.
    config = dataclasses.replace(config, study=dataclasses.replace(
        config.study, storage=mask_password(config.study.resolved_storage)))
    study = _open_study(config, storage, scorer.protocol.to_dict())
    directory = artifact_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    noise = fixed_noise(config.fid.n_samples, config.train.latent_dim, config.study.seed, device)
    return Worker(config, study, storage, data, scorer, noise, device, directory,
                  FileSystemArtifactStore(str(directory)), progress)


def run(config: StudyConfig, progress: ProgressFactory | None = None) -> RunSummary:
    """Run trials until the study holds `n_trials` finished ones (this worker's share).

    With ``[search] control`` (the default) the worker also trains the λ = 0 control
    if no worker has: the one trial of the companion study ``<name>.control`` (see `control`).

    Raises:
        Interrupted: SIGINT/SIGTERM; the running trial was told FAIL first.
    """
    worker = prepare(config, progress)
    control: Worker | None = None
    control_trained = 0
    if config.search.control:
        control = open_control(worker)
        # First, unless another worker has it: it then trains beside the sweep's first trials.
        control_trained = run_control(control, wait=False)
    trained = run_fused(worker) if config.train.fuse > 1 else run_trials(worker)
    summary = summarize(worker.study, trained, config.study.n_trials)
    if control is None:
        return summary
    # Last, waiting for it if it runs elsewhere: its worker may die, and its retry needs a worker.
    control_trained += run_control(control, wait=True)
    return dataclasses.replace(summary, control_trained=control_trained, control=load_control(worker.study))


def summarize(study: optuna.Study, trained: int, n_trials: int) -> RunSummary:
    best = _best_trial(study)
    return RunSummary(
        trained=trained,
        finished=_count(study, FINISHED),
        n_trials=n_trials,
        best_value=best.value if best else None,
        best_lambda=best.params[PARAM] if best else None,
    )


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda trial: trial.value, default=None)  # type: ignore[arg-type, return-value]


def _count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))
