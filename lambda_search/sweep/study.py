"""Optuna glue at the study level: open the study with its sampler and pruner, run a worker on it.

`prepare` checks the input and opens (or joins) the study; `run` hands the worker to the
trial loop (`trial`, or `fused_trials` for fused jobs) and to the λ = 0 control (`control`),
then summarizes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from lambda_search.config import StudyConfig
from lambda_search.data import load_images
from lambda_search.errors import ConfigError
from lambda_search.gan.train import ProgressFactory, fixed_noise, resolve_device
from lambda_search.metrics.fid import FidScorer
from lambda_search.names import PARAM
from lambda_search.results.race_runs import load_race, race_verdict_line
from lambda_search.results.read_model import FINISHED, best_trial, load_control
from lambda_search.sweep.control import open_control, run_control
from lambda_search.sweep.fused_trials import run_fused
from lambda_search.sweep.racing import run_race
from lambda_search.sweep.storage import artifact_dir, mask_password, open_storage, worker_lock
from lambda_search.sweep.trial import Worker, run_trials

__all__ = [
    "RunSummary",
    "make_pruner",
    "make_sampler",
    "prepare",
    "run",
    "summarize",
]


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


def _open_study(config: StudyConfig, storage: RDBStorage, protocol: dict[str, Any]) -> optuna.Study:
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
    # A race's one-line verdict (strategy = "race"); None for a sweep.
    verdict: str | None = None


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
    directory = artifact_dir(config.study.resolved_storage, config.study.name, config.study.artifacts)
    directory.mkdir(parents=True, exist_ok=True)
    noise = fixed_noise(config.fid.n_samples, config.train.latent_dim, config.study.seed, device)
    return Worker(config, study, storage, data, scorer, noise, device, directory,
                  FileSystemArtifactStore(str(directory)), progress)


def run(config: StudyConfig, progress: ProgressFactory | None = None) -> RunSummary:
    """Run trials until the study holds `n_trials` finished ones (this worker's share).

    With ``[study] strategy = "race"`` the runs are the race's (`sweep.racing`), λ = 0's
    among them, and the summary carries its verdict.

    With ``[search] control`` (the default) the worker also trains the λ = 0 control
    if no worker has: the one trial of the companion study ``<name>.control`` (see `control`).

    Raises:
        Interrupted: SIGINT/SIGTERM; the running trial was told FAIL first.
    """
    worker = prepare(config, progress)
    if config.study.strategy == "race":
        trained = run_race(worker)
        finished = sum(run.finished for run in load_race(worker.study)[1])
        return RunSummary(trained, finished, config.study.n_trials, None, None,
                          verdict=race_verdict_line(worker.study))
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
    best = best_trial(study)
    return RunSummary(
        trained=trained,
        finished=len(study.get_trials(deepcopy=False, states=FINISHED)),
        n_trials=n_trials,
        best_value=best.value if best else None,
        best_lambda=best.params[PARAM] if best else None,
    )
