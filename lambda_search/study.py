"""Optuna glue: the study, its sampler and pruner, and the worker loop that runs trials.

The only module that talks to the storage. A worker claims trials one at a time
under a lock (so `n_trials` holds exactly across workers), beats a heartbeat while
it trains, checkpoints, and tells Optuna how each trial ended.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.distributions import FloatDistribution
from optuna.storages import RDBStorage
from optuna.storages._rdb.models import TrialModel
from optuna.trial import FrozenTrial, TrialState

from lambda_search import artifacts
from lambda_search.config import StudyConfig
from lambda_search.data import ImageData, load_images
from lambda_search.errors import ConfigError, Interrupted, StorageError, StudyNotFoundError
from lambda_search.fid import FidScorer
from lambda_search.storage import (
    Heartbeat,
    fail_stale_trials,
    lost_connection,
    mask_password,
    open_storage,
    retried_trial_number,
    sqlite_path,
    worker_lock,
)
from lambda_search.train import Diverged, GanState, Progress, TrainHooks, fixed_noise, new_state, train

log = logging.getLogger(__name__)

PARAM = "lambda"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Claims cut short by a lost connection that are tried again before giving up.
CLAIM_ATTEMPTS = 5
ProgressFactory = Callable[[int, float, int], contextlib.AbstractContextManager[Progress]]


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
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
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


def _state_counts(storage: RDBStorage, study: optuna.Study) -> collections.Counter[TrialState]:
    """Trials per state in one GROUP BY query: claiming stays O(1) as the study grows."""
    trials = TrialModel.__table__
    query = (sqlalchemy.select(trials.c.state, sqlalchemy.func.count())
             .where(trials.c.study_id == study._study_id).group_by(trials.c.state))
    with storage.engine.connect() as connection:
        return collections.Counter({TrialState[str(state.name if isinstance(state, TrialState) else state)]: count
                                    for state, count in connection.execute(query)})


def _count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


@dataclass
class Worker:
    """What one `run` process holds for the whole study: data, scorer, noise on the device."""

    config: StudyConfig
    study: optuna.Study
    storage: RDBStorage
    data: ImageData
    scorer: FidScorer
    noise: torch.Tensor
    device: torch.device
    store: FileSystemArtifactStore
    progress: ProgressFactory | None = None
    # True for the view of the λ = 0 control study (`control.open_control`): one trial, λ = 0.
    control: bool = False

    @property
    def n_trials(self) -> int:
        """Finished trials this worker's study should hold: the sweep's `n_trials`, or the one control run."""
        return 1 if self.control else self.config.study.n_trials

    @property
    def trial_dir(self) -> Path:
        """Checkpoints and staged uploads; the control's trial numbers restart at 0, so it has its own."""
        directory = artifact_dir(self.config)
        return directory / "control" if self.control else directory


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
    return Worker(config, study, storage, data, scorer, noise, device,
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
        from lambda_search.control import load_control, open_control, run_control

        control = open_control(worker)
        # First, unless another worker has it: it then trains beside the sweep's first trials.
        control_trained = run_control(control, wait=False)
    if config.train.fuse > 1:
        from lambda_search.fused_study import run_fused

        trained = run_fused(worker)
    else:
        trained = 0
        while (trial := _claim_trial(worker)) is not None:
            _run_trial(worker, trial)
            trained += 1
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


def _claim_trial(worker: Worker) -> optuna.Trial | None:
    claimed = claim_trials(worker, 1)
    return claimed[0] if claimed else None


def claim_trials(worker: Worker, limit: int, wait: bool = True) -> list[optuna.Trial]:
    """Start up to `limit` trials if the study still needs them; empty when it is done.

    Finished + running + waiting trials are counted under the worker lock, so N
    workers never start more than `n_trials` in all. A trial still running
    elsewhere is waited for (unless `wait` is False): its worker may die, and its
    retry needs a worker.
    """
    study, n_trials = worker.study, worker.n_trials
    lost = 0
    while True:
        try:
            with worker_lock(worker.storage, study.study_name):
                fail_stale_trials(study, worker.storage)
                counts = _state_counts(worker.storage, study)
                finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
                running, waiting = counts[TrialState.RUNNING], counts[TrialState.WAITING]
                slots = min(limit, max(waiting, n_trials - finished - running))
                if slots > 0:
                    return [_ask(worker) for _ in range(slots)]
        except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as error:
            # A connection dropped mid-claim (database restart, pg_terminate_backend): try
            # again; the next claim fails the trial this one may have half created.
            lost += 1
            if lost > CLAIM_ATTEMPTS:
                raise StorageError(f"lost the storage while claiming a trial ({type(error).__name__}), "
                                   f"{CLAIM_ATTEMPTS} times; is the database up?") from None
            log.warning("storage connection lost while claiming a trial; retrying")
            time.sleep(1)
            continue
        if not running or not wait:
            return []
        log.info("%d trial(s) still running elsewhere; waiting for them (or their retry)", running)
        time.sleep(worker.config.study.heartbeat_seconds)


def _ask(worker: Worker) -> optuna.Trial:
    with warnings.catch_warnings():
        # We beat the heartbeat ourselves (storage.Heartbeat), so ask/tell is fine.
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        trial = worker.study.ask({PARAM: _distribution(worker)})
    worker.storage.record_heartbeat(trial._trial_id)
    return trial


def _distribution(worker: Worker) -> FloatDistribution:
    search = worker.config.search
    if worker.control:
        # λ = 0 must be representable: from 0, not log-scaled (as in `confirm`); its sampler proposes only 0.
        return FloatDistribution(0.0, search.lambda_high)
    return FloatDistribution(search.lambda_low, search.lambda_high, log=True)


def _frozen(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    # The retry callback reads system_attrs, which only a FrozenTrial has (Optuna 5).
    return study._storage.get_trial(trial._trial_id)


def _run_trial(worker: Worker, trial: optuna.Trial) -> None:
    """Train one claimed trial and tell Optuna how it ended; it never stays RUNNING.

    Raises:
        Interrupted, KeyboardInterrupt: SIGTERM/SIGINT; the trial was told FAIL
            with ``fail_reason = "interrupted"`` first.
    """
    try:
        _train_trial(worker, trial)
    except (Interrupted, KeyboardInterrupt):
        _tell_failed(worker, trial, "interrupted")
        raise
    except Exception as error:
        if lost_connection(error):
            # The database blinked mid-trial. Told nothing, the trial goes stale and is
            # retried from its checkpoint, with the same λ; this worker carries on.
            log.warning("trial %d: storage connection lost (%s); it will be retried from its checkpoint",
                        trial.number, type(error).__name__)
            return
        _tell_failed(worker, trial, f"{type(error).__name__}: {error}")
        raise


def _tell_failed(worker: Worker, trial: optuna.Trial, reason: str) -> None:
    if worker.storage.get_trial(trial._trial_id).state.is_finished():
        return  # the signal came after the trial was told; nothing is left running
    trial.set_user_attr("fail_reason", reason)
    worker.study.tell(trial, state=TrialState.FAIL)
    log.info("trial %d: failed (%s)", trial.number, reason)


def _record_setup(worker: Worker, trial: optuna.Trial) -> None:
    """The user attributes every trial carries: what it was trained with, where and by whom."""
    trial.set_user_attr("config", worker.config.to_dict())
    trial.set_user_attr("fid_protocol", worker.scorer.protocol.to_dict())
    trial.set_user_attr("kid_protocol", worker.scorer.kid.protocol.to_dict())
    trial.set_user_attr("device", str(worker.device))
    trial.set_user_attr("seed", worker.config.study.seed)
    # Which process trains it: a stale trial's worker is the one that died.
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")


def _train_trial(worker: Worker, trial: optuna.Trial) -> None:
    config = worker.config
    lam = trial.params[PARAM]  # suggested when the trial was asked for (`_ask`)
    origin = retried_trial_number(_frozen(worker.study, trial))
    checkpoint = artifacts.checkpoint_path(worker.trial_dir, trial.number if origin is None else origin)
    _record_setup(worker, trial)
    state = new_state(config.train, worker.data.shape, config.study.seed, worker.device)
    if origin is not None and artifacts.load_checkpoint(checkpoint, state, lam):
        trial.set_user_attr("resumed_from_step", state.step)
        log.info("trial %d resumes trial %d from step %d", trial.number, origin, state.step)
    curve: list[dict[str, float]] = []
    started = time.perf_counter()
    with Heartbeat(worker.storage, [trial._trial_id], config.study.heartbeat_seconds), \
            _progress(worker, trial.number, lam) as progress:
        try:
            seconds = train(state, worker.data, config.train, lam, config.train.steps, TrainHooks(
                eval_every=config.fid.eval_every,
                on_evaluation=lambda s: _evaluate(worker, trial, s, curve),
                checkpoint_every=config.train.checkpoint_every,
                on_checkpoint=lambda s: artifacts.save_checkpoint(checkpoint, s, lam),
                progress=progress,
            ))
        except optuna.TrialPruned:
            _finish(worker, trial, state, curve, started, TrialState.PRUNED)
        except Diverged as diverged:
            trial.set_user_attr("prune_reason", str(diverged))
            _finish(worker, trial, state, curve, started, TrialState.PRUNED)
        else:
            trial.set_user_attr("train_seconds", seconds)
            _finish(worker, trial, state, curve, started, TrialState.COMPLETE)
    artifacts.remove_checkpoint(checkpoint)


def _progress(worker: Worker, number: int, lam: float) -> contextlib.AbstractContextManager[Progress | None]:
    if worker.progress is None:
        return contextlib.nullcontext()
    return worker.progress(number, lam, worker.config.train.steps)


def _evaluate(worker: Worker, trial: optuna.Trial, state: GanState, curve: list[dict[str, float]]) -> None:
    # KID at the last evaluation only: FID drives pruning, and KID's kernel sums cost about 2 FID evaluations.
    scores = worker.scorer.scores(state.generator, worker.noise, kid=state.step >= worker.config.train.steps)
    fid = scores.fid
    curve.append({"step": state.step, "fid": fid})
    if not math.isfinite(fid):
        raise Diverged(state.step, {"fid": fid})
    if scores.kid is not None:
        trial.set_user_attr("kid", scores.kid)
        trial.set_user_attr("kid_std", scores.kid_std)
    trial.report(fid, state.step)
    if state.step < worker.config.train.steps and trial.should_prune():
        raise optuna.TrialPruned(f"pruned at step {state.step} with FID {fid:.3f}")


def _finish(worker: Worker, trial: optuna.Trial, state: GanState, curve: list[dict[str, float]],
            started: float, outcome: TrialState) -> None:
    trial.set_user_attr("steps", state.step)
    trial.set_user_attr("seconds", time.perf_counter() - started)
    _upload(worker, trial, state, curve)
    lam = trial.params[PARAM]
    if outcome == TrialState.COMPLETE:
        worker.study.tell(trial, curve[-1]["fid"])
        log.info("trial %d: λ=%.3g FID=%.3f (%d steps)", trial.number, lam, curve[-1]["fid"], state.step)
    else:
        worker.study.tell(trial, state=outcome)
        log.info("trial %d: λ=%.3g pruned at step %d", trial.number, lam, state.step)


def _upload(worker: Worker, trial: optuna.Trial, state: GanState, curve: list[dict[str, float]]) -> None:
    """Sample grid (PNG) and curves (CSV) as Optuna artifacts: the dashboard shows them."""
    for path in artifacts.write_trial_files(worker.trial_dir / "staging" / str(trial.number),
                                            state, curve, worker.noise):
        upload_artifact(artifact_store=worker.store, file_path=str(path), study_or_trial=trial)
        path.unlink()
