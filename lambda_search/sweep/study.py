"""Optuna glue at the study level: open the study with its sampler and pruner, run a worker on it.

`prepare` checks the input and opens (or joins) the study; `run` hands the worker to the
trial loop (`trial`, or `fused_trials` for fused jobs) and to the λ = 0 control (`control`),
then summarizes.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from lambda_search._files import make_writable_dir
from lambda_search.config import StudyConfig, check_limits
from lambda_search.data import ImageData, device_memory, load_images
from lambda_search.errors import ConfigError, StorageError
from lambda_search.gan.factory import Model, check_model, load_model
from lambda_search.gan.train import ProgressFactory, configure_torch, fixed_noise
from lambda_search.metrics.fid import FidProtocol, FidScorer
from lambda_search.metrics.lenet import FeatureNet, LenetFile, cached_lenet, load_lenet, ships_lenet
from lambda_search.names import MODEL, PARAM, builtin_model
from lambda_search.records import keys
from lambda_search.records.trials import FINISHED, best_trial, protocol_differences, protocol_fields
from lambda_search.sections import SEED_MAX
from lambda_search.storage_url import artifact_dir, mask_password, sqlite_folder_problem
from lambda_search.sweep.companions import load_control
from lambda_search.sweep.compatibility import check_compatible
from lambda_search.sweep.control import control_target, run_control
from lambda_search.sweep.fused_trials import run_fused
from lambda_search.sweep.objective import create_study
from lambda_search.sweep.pace import Pace
from lambda_search.sweep.race.driver import run_race
from lambda_search.sweep.race.runs import load_race, race_verdict_line
from lambda_search.sweep.storage import load_file, open_storage, save_file, worker_lock
from lambda_search.sweep.trial import Target, Worker, run_trials, sweep_target

__all__ = [
    "RunSummary",
    "check_input",
    "make_pruner",
    "make_sampler",
    "prepare",
    "run",
    "study_lenet",
    "summarize",
]

# The study attribute naming its own LeNet (datasets the package ships none for) by its sha256.
LENET_ATTR = "feature_net_sha256"


def make_sampler(config: StudyConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded by `seed` for the first worker and `seed + i` for the i-th to join
    (modulo 2**32, numpy's seed range: the seed 2**32 - 1's second worker takes 0)."""
    seed = (config.study.seed + worker_index) % (SEED_MAX + 1)
    if config.study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.study.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if config.study.sampler == "qmc":
        with warnings.catch_warnings():  # "experimental" since Optuna 3.0: the user chose it, no need to say
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
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


def _check_protocol_version(study: optuna.Study, config: StudyConfig, fields: set[str]) -> None:
    stored = study.user_attrs.get(keys.FID_PROTOCOL)
    if stored is not None and set(stored) != fields:
        raise ConfigError(
            f"study {config.study.name!r} was scored by an earlier lambda-search, whose feature network "
            f"({stored.get('feature_net')}) is not named by the sha256 of its weights: its FIDs do not "
            "compare with this version's, use another study name"
        )


def _check_protocol(study: optuna.Study, config: StudyConfig, protocol: dict[str, Any]) -> None:
    stored = study.user_attrs.get(keys.FID_PROTOCOL)
    if stored is None:
        return
    _check_protocol_version(study, config, set(protocol))
    differing = protocol_differences(stored, protocol)
    if differing:
        raise ConfigError(
            f"study {config.study.name!r} scores FID with {protocol_fields(stored, differing)}; this run would use "
            f"{protocol_fields(protocol, differing)}: FIDs of different protocols do not compare, "
            "use another study name"
        )


def _check_model(study: optuna.Study, config: StudyConfig, identity: dict[str, str]) -> None:
    # A study made before `[model]` existed trained the built-in DCGAN.
    stored = study.user_attrs.get(MODEL, builtin_model() if keys.SEARCH in study.user_attrs else None)
    if stored is not None and stored != identity:
        raise ConfigError(
            f"study {config.study.name!r} trains the model {_model(stored)}; this run would train "
            f"{_model(identity)}: FIDs of different networks do not compare, use another study name"
        )


def _model(identity: dict[str, str]) -> str:
    return f"{identity['factory'] or 'built-in DCGAN'} ({identity['version']})"


def study_lenet(study: optuna.Study, storage: BaseStorage, data: ImageData) -> FeatureNet:
    """The study's own LeNet: the one stored with it, or (first worker) this machine's, stored now.

    Call it under the study's worker lock, so that two first workers never store two.
    A LeNet cached on this machine is used only by a study's first worker: every other
    worker loads the study's file, whatever its own cache holds.

    Raises:
        ConfigError: the study is scored by another feature network.
        StorageError: the study names a LeNet its storage does not hold.
        WeightsError: the stored file does not hash to the name the study gives it.
    """
    sha256 = study.user_attrs.get(LENET_ATTR)
    if sha256 is None and keys.FID_PROTOCOL in study.user_attrs:
        stored = study.user_attrs[keys.FID_PROTOCOL]
        raise ConfigError(f"study {study.study_name!r} scores FID with features={stored['features']}, "
                          f"dataset={stored['dataset']}; this run would use a LeNet of its own for {data.name}: "
                          "FIDs of different protocols do not compare, use another study name")
    if sha256 is None:
        file, sha256 = cached_lenet(data)
        save_file(storage, sha256, file.payload)
        study.set_user_attr(LENET_ATTR, sha256)
        return load_lenet(file, sha256, data)
    payload = load_file(storage, sha256)
    if payload is None:
        raise StorageError(f"study {study.study_name!r} is scored by LeNet sha256 {sha256}, "
                           "which its storage does not hold")
    return load_lenet(LenetFile(payload), sha256, data)


def _open_study(config: StudyConfig, storage: BaseStorage, data: ImageData, device: torch.device,
                scorer: FidScorer | None, model: Model) -> tuple[optuna.Study, FidScorer]:
    """Create or join the study; `scorer` None means it is scored by its own LeNet (`study_lenet`)."""
    with worker_lock(storage, config.study.name):
        study = create_study(config.study.name, storage, config.study.objective, pruner=make_pruner(config))
        check_compatible(config.study.name, study.user_attrs.get(keys.CONFIG), config)
        if scorer is None:
            _check_protocol_version(study, config, {field.name for field in dataclasses.fields(FidProtocol)})
            scorer = FidScorer(config.fid, data, device, lenet=study_lenet(study, storage, data))
        protocol = scorer.protocol.to_dict()
        _check_protocol(study, config, protocol)
        _check_model(study, config, model.identity)
        if keys.SEARCH not in study.user_attrs:
            study.set_user_attr(MODEL, model.identity)
            study.set_user_attr(keys.SEARCH, dataclasses.asdict(config.search))
            study.set_user_attr(keys.FID_PROTOCOL, protocol)
            study.set_user_attr(keys.CONFIG, config.to_dict())
        # Workers seeded alike would propose the same λ values side by side: give each its own stream.
        worker_index = int(study.user_attrs.get(keys.WORKERS_STARTED, 0))
        study.set_user_attr(keys.WORKERS_STARTED, worker_index + 1)
    study.sampler = make_sampler(config, worker_index)
    return study, scorer


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


def check_input(config: StudyConfig) -> tuple[torch.device, ImageData, Model]:
    """The storage's file, the device, the data and the networks, and the limits they set; writes nothing.

    The networks are built once on the CPU and fed a tiny batch (`factory.check_model`).
    """
    if (problem := sqlite_folder_problem(config.study.resolved_storage)) is not None:
        raise ConfigError(f"[study] storage: {problem}")
    device = configure_torch(config.train)
    model = load_model(config.model)
    data = load_images(config.data)
    check_limits(config, len(data.images), device_memory(device))
    check_model(model, data.shape, config.train.latent_dim, config.train.width)
    return device, data.to(device), model


def prepare(config: StudyConfig, progress: ProgressFactory | None = None) -> tuple[Worker, Target]:
    """Validate everything that can be wrong with the input, then open the study: the worker and its sweep's target.

    Device, data, limits, feature network and the artifacts folder come first: bad
    input, or a folder that cannot be written, fails before the storage is touched.
    A dataset the package ships no LeNet for is scored by the study's own, read (or,
    by the first worker, stored) under the worker lock.
    """
    device, data, model = check_input(config)
    own_lenet = config.fid.features == "lenet" and not ships_lenet(data)
    scorer = None if own_lenet else FidScorer(config.fid, data, device)
    directory = make_writable_dir(
        artifact_dir(config.study.resolved_storage, config.study.name, config.study.artifacts), "artifacts folder")
    storage = open_storage(config.study.resolved_storage, config.study.heartbeat_seconds,
                           config.study.max_retries)
    # The config is stored on the study and every trial (and exported from there):
    # from here on it holds the storage URL without its password.
    config = dataclasses.replace(config, study=dataclasses.replace(
        config.study, storage=mask_password(config.study.resolved_storage)))
    study, scorer = _open_study(config, storage, data, device, scorer, model)
    noise = fixed_noise(config.fid.n_samples, config.train.latent_dim, config.study.seed, device)
    worker = Worker(config, storage, data, scorer, noise, device, directory, FileSystemArtifactStore(str(directory)),
                    model, progress)
    return worker, sweep_target(worker, study)


def run(config: StudyConfig, progress: ProgressFactory | None = None) -> RunSummary:
    """Run trials until the study holds `n_trials` finished ones (this worker's share).

    With ``[study] strategy = "race"`` the runs are the race's (`sweep.race.driver`), λ = 0's
    among them, and the summary carries its verdict.

    With ``[search] control`` (the default) the worker also trains the λ = 0 control
    if no worker has: the one trial of the companion study ``<name>.control`` (see `control`).

    Raises:
        Interrupted: SIGINT/SIGTERM; each running trial was handed back (`Preempted`: checkpointed at the step
            it stopped), to resume with the same λ on the next run (`trial.trial_outcome`).
    """
    worker, sweep = prepare(config, progress)
    worker = _paced(worker, sweep.study)
    if config.study.strategy == "race":
        trained = run_race(worker, sweep)
        finished = sum(run.finished for run in load_race(sweep.study)[1])
        return RunSummary(trained, finished, config.study.n_trials, None, None,
                          verdict=race_verdict_line(sweep.study))
    control: Target | None = None
    control_trained = 0
    if config.search.control:
        control = control_target(worker)
        # First, unless another worker has it: it then trains beside the sweep's first trials.
        control_trained = run_control(worker, control, wait=False)
    trained = run_fused(worker, sweep) if config.train.fuse > 1 else run_trials(worker, sweep)
    summary = summarize(sweep.study, trained, config.study.n_trials)
    if control is None:
        return summary
    # Last, waiting for it if it runs elsewhere: its worker may die, and its retry needs a worker.
    control_trained += run_control(worker, control, wait=True)
    return dataclasses.replace(summary, control_trained=control_trained, control=load_control(sweep.study))


def _paced(worker: Worker, study: optuna.Study) -> Worker:
    """The worker, logging run k of N as each run starts: N counts every run, λ = 0's included."""
    config = worker.config
    if config.study.strategy == "race":
        pace = Pace(config.study.n_trials, lambda: sum(run.finished for run in load_race(study)[1]))
    else:
        def finished() -> int:
            control = load_control(study) if config.search.control else None
            return len(study.get_trials(deepcopy=False, states=FINISHED)) + int(
                control is not None and control.state in FINISHED)

        pace = Pace(config.study.n_trials + int(config.search.control), finished)
    return dataclasses.replace(worker, pace=pace)


def summarize(study: optuna.Study, trained: int, n_trials: int) -> RunSummary:
    best = best_trial(study)
    return RunSummary(
        trained=trained,
        finished=len(study.get_trials(deepcopy=False, states=FINISHED)),
        n_trials=n_trials,
        best_value=best.value if best else None,
        best_lambda=best.params[PARAM] if best else None,
    )
