"""A worker's trial loop: claim trials, train each one, tell Optuna how it ended.

A `Worker` is what trains (data, scorer, networks, storage); a `Target` is what it trains
for (a study, its budget, λ's distribution, its checkpoints' folder): the sweep and its
λ = 0 control are two targets of one worker. A worker claims a target's trials under a
lock (so `n_trials` holds exactly across workers), beats a heartbeat while it trains,
checkpoints, and tells Optuna how each trial ended. `study` builds the worker and the
sweep's target; `control` the control's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.distributions import FloatDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from lambda_search.config import StudyConfig
from lambda_search.data import ImageData
from lambda_search.errors import Interrupted
from lambda_search.gan import checkpoints
from lambda_search.gan.checkpoints import CheckpointOwner
from lambda_search.gan.ema import GeneratorScores, generator_scores
from lambda_search.gan.factory import Model
from lambda_search.gan.train import (
    Diverged,
    GanState,
    Progress,
    ProgressFactory,
    TrainHooks,
    fixed_noise,
    new_state,
    train,
)
from lambda_search.metrics.fid import FidScorer
from lambda_search.names import EVALUATIONS, FID, FID_EMA, MODEL, PARAM
from lambda_search.records import keys
from lambda_search.sweep import faults
from lambda_search.sweep.faults import fault_point
from lambda_search.sweep.identity import worker_identity
from lambda_search.sweep.objective import search_distribution
from lambda_search.sweep.pace import Pace
from lambda_search.sweep.preemption import Stop, noted_signals
from lambda_search.sweep.storage import (
    Heartbeat,
    claim,
    frozen,
    hand_back,
    lost_connection,
    retried_trial_number,
    trial_id,
)

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """What one `run` process trains with, whatever it trains for: data, scorer, noise and networks on the device."""

    config: StudyConfig
    storage: BaseStorage
    data: ImageData
    scorer: FidScorer
    noise: torch.Tensor
    device: torch.device
    # The study's artifact directory (`storage_url.artifact_dir`); `store` keeps its artifacts there.
    artifact_dir: Path
    store: FileSystemArtifactStore
    # The networks it trains: the built-in DCGAN or `[model] factory`'s (`gan.factory`).
    model: Model
    progress: ProgressFactory | None = None
    # Run k of N and the time left, logged as each run starts (`study.run` sets it; one for all its targets).
    pace: Pace | None = None


@dataclass(frozen=True)
class Target:
    """What a worker trains for: a study, the finished trials it should hold, λ's distribution, its checkpoints' folder.

    A sweep (or a race's λ > 0 runs) is one target (`sweep_target`); the λ = 0 control, the one
    trial of the companion study ``<name>.control``, is another (`control.control_target`).
    """

    study: optuna.Study
    n_trials: int
    distribution: FloatDistribution
    # Checkpoints and staged uploads, by trial number: each target's numbers start at 0, so each has its own.
    trial_dir: Path


def sweep_target(worker: Worker, study: optuna.Study) -> Target:
    """The sweep's target: `n_trials` trials of λ log-uniform on [lambda_low, lambda_high]."""
    config = worker.config
    return Target(study, config.study.n_trials,
                  search_distribution(config.search.lambda_low, config.search.lambda_high), worker.artifact_dir)


def run_trials(worker: Worker, target: Target) -> int:
    """Claim and train the target's trials one at a time until it is done; returns trials trained."""
    trained = 0
    while claimed := claim_trials(worker, target, 1):
        run_trial(worker, target, claimed[0])
        trained += 1
    return trained


def claim_trials(worker: Worker, target: Target, limit: int, wait: bool = True) -> list[optuna.Trial]:
    """Start up to `limit` trials if the target still needs them; empty when it is done (`claim.claim_trials`).

    Finished + running + waiting trials are counted and the trials started in one
    transaction under the study's lock, so N workers never start more than `n_trials` in
    all. A trial still running elsewhere is waited for (unless `wait` is False): its worker
    may die, and its retry needs a worker.
    """
    study = worker.config.study
    return claim.claim_trials(target.study, worker.storage, target.n_trials, limit, {PARAM: target.distribution},
                              study.heartbeat_seconds, study.max_retries, wait)


def run_trial(worker: Worker, target: Target, trial: optuna.Trial) -> None:
    """Train one claimed trial of `target`, tell Optuna how it ended; it never stays RUNNING (see `trial_outcome`)."""
    with trial_outcome(worker, [trial]) as stop:
        _train_trial(worker, target, trial, stop)


@contextlib.contextmanager
def trial_outcome(worker: Worker, trials: list[optuna.Trial]) -> Iterator[Stop]:
    """The one policy for how claimed trials end, lone or fused, when training does not tell them itself.

    Training tells COMPLETE or PRUNED (`finish_trial`). Around it: SIGTERM/SIGINT are noted
    (`preemption.noted_signals`) and acted on at the next step boundary, where training
    checkpoints every running trial; each trial still running is then handed back for retry,
    same λ, retry count kept, and the interrupt goes on; on a lost storage connection the
    trials are told nothing: they go stale and are retried with the same λ (from a checkpoint
    where one was saved), and this worker carries on; on any other error they are told FAIL
    with the error as reason, and it goes on.

    Raises:
        Preempted: SIGTERM/SIGINT while they trained; each was checkpointed at the step it
            stopped and handed back for retry (`storage.hand_back`).
        Interrupted: SIGTERM/SIGINT outside training (a second signal, or before the first
            step); they were handed back, to resume from their last checkpoint if any.
    """
    try:
        with noted_signals() as stop:
            yield stop
    except Interrupted:
        hand_back_trials(trials)
        raise
    except Exception as error:
        if lost_connection(error):
            log.warning("trial(s) %s: storage connection lost (%s); they will be retried",
                        ", ".join(str(trial.number) for trial in trials), type(error).__name__)
            return
        for trial in trials:
            tell_failed(worker, trial, f"{type(error).__name__}: {error}")
        raise


def hand_back_trials(trials: list[optuna.Trial]) -> None:
    """Hand interrupted trials back for retry with their λ and retry count (`storage.hand_back`)."""
    for trial in trials:
        copy = hand_back(trial.study, trial_id(trial))
        if copy is not None:
            log.info("trial %d: handed back for retry as trial %d", trial.number, copy)


def checkpoint_owner(worker: Worker, trial: optuna.Trial) -> CheckpointOwner:
    """The trial's checkpoint: its original's, for a retry or a preempted trial's copy."""
    origin = retried_trial_number(frozen(trial.study, trial))
    return CheckpointOwner(trial.study.study_name, trial.number if origin is None else origin,
                           trial.params[PARAM], {**worker.config.training_identity(), MODEL: worker.model.identity})


def resume(target: Target, trial: optuna.Trial, owner: CheckpointOwner, state: GanState) -> list[dict[str, float]]:
    """Load the owner's checkpoint into `state` if this trial re-runs another and it has one.

    Returns:
        The FID evaluations the checkpoint carries (its curve up to the restored step);
        empty when the trial starts from step 0.
    """
    if owner.trial == trial.number:
        return []
    evaluations = checkpoints.load_checkpoint(target.trial_dir, owner, state)
    if evaluations is None:
        return []
    trial.set_user_attr(keys.RESUMED_FROM_STEP, state.step)
    log.info("trial %d resumes trial %d from step %d", trial.number, owner.trial, state.step)
    return evaluations


def tell_failed(worker: Worker, trial: optuna.Trial, reason: str) -> None:
    """Tell a trial FAIL with its `fail_reason`, unless it has already been told."""
    if worker.storage.get_trial(trial_id(trial)).state.is_finished():
        return  # the error came after the trial was told; nothing is left running
    trial.set_user_attr(keys.FAIL_REASON, reason)
    trial.study.tell(trial, state=TrialState.FAIL)
    log.info("trial %d: failed (%s)", trial.number, reason)


def trial_seed(worker: Worker, trial: optuna.Trial) -> int:
    """The seed a trial trains with: its own user attr `seed` (a race's runs), else the study seed."""
    return int(trial.user_attrs.get(keys.SEED, worker.config.study.seed))


def record_setup(worker: Worker, trial: optuna.Trial, seed: int) -> None:
    """The user attributes every trial carries: what it was trained with, where and by whom."""
    trial.set_user_attr(keys.CONFIG, worker.config.to_dict())
    trial.set_user_attr(keys.FID_PROTOCOL, worker.scorer.protocol.to_dict())
    trial.set_user_attr(keys.KID_PROTOCOL, worker.scorer.kid.protocol.to_dict())
    trial.set_user_attr(MODEL, worker.model.identity)
    trial.set_user_attr(keys.DEVICE, str(worker.device))
    trial.set_user_attr(keys.TORCH_THREADS, torch.get_num_threads())
    trial.set_user_attr(keys.SEED, seed)
    # Which process trains it: a stale trial's worker is the one that died.
    trial.set_user_attr(keys.WORKER, f"{socket.gethostname()}:{os.getpid()}")
    # And where a scheduler started it (SLURM job/array task, pod): `status --workers` shows it.
    trial.set_user_attr(keys.WORKER_IDENTITY, worker_identity())


def _train_trial(worker: Worker, target: Target, trial: optuna.Trial, stop: Stop) -> None:
    config = worker.config
    lam = trial.params[PARAM]  # sampled or fixed when the trial was claimed (`claim.start_trials`)
    owner = checkpoint_owner(worker, trial)
    seed = trial_seed(worker, trial)
    record_setup(worker, trial, seed)
    if seed != config.study.seed:
        # The seed fixes the FID's noise too (as in `confirm`): a run is the same computation wherever it runs.
        worker = dataclasses.replace(worker, noise=fixed_noise(config.fid.n_samples, config.train.latent_dim,
                                                               seed, worker.device))
    state = new_state(config.train, worker.data.shape, seed, worker.device, worker.model)
    curve = resume(target, trial, owner, state)
    fault_point("setup")

    def save(saved: GanState) -> None:
        checkpoints.save_checkpoint(target.trial_dir, owner, saved, curve)

    def save_at_stop(saved: GanState) -> dict[int, int]:
        save(saved)
        return {trial.number: saved.step}

    def after_step(saved: GanState) -> None:
        faults.after_step(saved.step, config.train.steps)
        stop.check(lambda: save_at_stop(saved))

    started = time.perf_counter()
    with _pace(worker, trial, lam), \
            Heartbeat(worker.storage, [trial_id(trial)], config.study.heartbeat_seconds), \
            _progress(worker, trial.number, lam) as progress:
        try:
            seconds = train(state, worker.data, config.train, lam, config.train.steps, TrainHooks(
                eval_every=config.fid.eval_every,
                on_evaluation=lambda s: evaluate_trial(worker, trial, s, curve),
                checkpoint_every=config.train.checkpoint_every,
                on_checkpoint=save,
                after_step=after_step,
                progress=progress,
            ))
            complete_evaluations(worker, trial, state, curve)
        except optuna.TrialPruned:
            finish_trial(worker, target, trial, state, curve, started, TrialState.PRUNED)
        except Diverged as diverged:
            trial.set_user_attr(keys.PRUNE_REASON, str(diverged))
            finish_trial(worker, target, trial, state, curve, started, TrialState.PRUNED)
        else:
            trial.set_user_attr(keys.TRAIN_SECONDS, seconds)
            finish_trial(worker, target, trial, state, curve, started, TrialState.COMPLETE)
    checkpoints.remove_checkpoint(target.trial_dir, owner)


def _pace(worker: Worker, trial: optuna.Trial, lam: float) -> contextlib.AbstractContextManager[None]:
    if worker.pace is None:
        return contextlib.nullcontext()
    return worker.pace.run(f"trial {trial.number} of {trial.study.study_name}, λ = {lam:.3g}")


def _progress(worker: Worker, number: int, lam: float) -> contextlib.AbstractContextManager[Progress | None]:
    if worker.progress is None:
        return contextlib.nullcontext()
    return worker.progress(number, lam, worker.config.train.steps)


def complete_evaluations(worker: Worker, trial: optuna.Trial, state: GanState,
                         curve: list[dict[str, float]]) -> None:
    """Give a trial whose training is done its final evaluation if `curve` stops short of its last step.

    Training evaluates at its last step, and a checkpoint carries the evaluations made
    up to it; only a trial resumed at its last step from a checkpoint without them
    (one written before checkpoints carried them) reaches here without: it is scored
    now, as it would have been (same generator, same fixed noise).
    """
    if not curve or curve[-1]["step"] < state.step:
        evaluate_trial(worker, trial, state, curve)


def kid_attrs(scores: GeneratorScores) -> dict[str, float | None]:
    """A final evaluation's KIDs as user attrs: the live generator's, and with `[train] ema` the EMA generator's."""
    attrs = {keys.KID: scores.live.kid, keys.KID_STD: scores.live.kid_std}
    if scores.ema is not None:
        attrs.update({keys.KID_EMA: scores.ema.kid, keys.KID_EMA_STD: scores.ema.kid_std})
    return attrs


def evaluate_trial(worker: Worker, trial: optuna.Trial, state: GanState, curve: list[dict[str, float]]) -> None:
    """Score the generator (and its EMA), append to `curve`, report the objective; raises to prune or on divergence.

    The final evaluation also stores each generator's KID (`kid_attrs`).
    """
    config = worker.config
    final = state.step >= config.train.steps
    if final:
        fault_point("last-step")
    # KID at the last evaluation only: FID drives pruning (KID costs ~0.4 of an FID evaluation at quickstart size).
    scores = generator_scores(worker.scorer, state, config, trial_seed(worker, trial), worker.noise, kid=final)
    evaluation = {"step": state.step, **scores.fids}
    if final:
        fault_point("final-evaluation")
    curve.append(evaluation)
    trial.set_user_attr(EVALUATIONS, curve)
    if not all(math.isfinite(value) for value in evaluation.values()):
        raise Diverged(state.step, {key: value for key, value in evaluation.items() if key != "step"})
    if final:
        for key, kid in kid_attrs(scores).items():
            trial.set_user_attr(key, kid)
    value = evaluation[config.study.objective]
    trial.report(value, state.step)
    if state.step < config.train.steps and trial.should_prune():
        raise optuna.TrialPruned(f"pruned at step {state.step} with {config.study.objective} {value:.3f}")


def finish_trial(worker: Worker, target: Target, trial: optuna.Trial, state: GanState,
                 curve: list[dict[str, float]], started: float, outcome: TrialState) -> None:
    """Record steps, seconds and both FIDs, upload the trial's files, and tell Optuna `outcome` (COMPLETE or PRUNED).

    A COMPLETE trial's value is its last evaluation's objective FID (`[study] objective`).
    """
    trial.set_user_attr(keys.STEPS, state.step)
    trial.set_user_attr(keys.SECONDS, time.perf_counter() - started)
    if curve:
        for key in (FID, FID_EMA):
            if key in curve[-1]:
                trial.set_user_attr(key, curve[-1][key])
    _upload(worker, target, trial, state, curve)
    fault_point("tell")
    lam = trial.params[PARAM]
    if outcome == TrialState.COMPLETE:
        value = curve[-1][worker.config.study.objective]
        trial.study.tell(trial, value)
        log.info("trial %d: λ=%.3g %s=%.3f (%d steps)", trial.number, lam, worker.config.study.objective, value,
                 state.step)
    else:
        trial.study.tell(trial, state=outcome)
        log.info("trial %d: λ=%.3g pruned at step %d", trial.number, lam, state.step)


def _upload(worker: Worker, target: Target, trial: optuna.Trial, state: GanState,
            curve: list[dict[str, float]]) -> None:
    """Sample grid (PNG) and curves (CSV) as Optuna artifacts: the dashboard shows them."""
    for path in checkpoints.write_trial_files(target.trial_dir / "staging" / str(trial.number),
                                            state, curve, worker.noise):
        upload_artifact(artifact_store=worker.store, file_path=str(path), study_or_trial=trial)
        path.unlink()
