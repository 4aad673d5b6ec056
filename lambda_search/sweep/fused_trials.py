"""Optuna glue for fused jobs: ask K trials, train them as one, tell each its own result.

Each member reports its own intermediate FIDs and is pruned on its own: a pruned
member leaves the fused job and the others go on. Each member writes its own
checkpoint (every `checkpoint_every` steps and on SIGTERM), the file a lone run
of that trial would write, so a preempted group resumes fused or its members alone. Every member uses the study
seed, so a fused trial is the same trial it would be alone (`fused` checks this).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from typing import NamedTuple

import optuna
from optuna.trial import TrialState

from lambda_search.errors import Interrupted
from lambda_search.gan import checkpoints
from lambda_search.gan.checkpoints import CheckpointOwner
from lambda_search.gan.fused import FusedGan, fuse, train_fused, unfuse
from lambda_search.gan.train import Diverged, GanState, new_state
from lambda_search.names import PARAM
from lambda_search.records import keys
from lambda_search.sweep import faults
from lambda_search.sweep.faults import fault_point
from lambda_search.sweep.preemption import Stop
from lambda_search.sweep.storage import Heartbeat, trial_id
from lambda_search.sweep.trial import (
    Target,
    Worker,
    checkpoint_owner,
    claim_trials,
    complete_evaluations,
    evaluate_trial,
    finish_trial,
    record_setup,
    resume,
    trial_outcome,
)

log = logging.getLogger(__name__)


def run_fused(worker: Worker, target: Target) -> int:
    """Run fused groups of `[train] fuse` trials until the target is done; returns trials trained."""
    trained = 0
    while trials := claim_trials(worker, target, worker.config.train.fuse):
        numbers = ", ".join(str(trial.number) for trial in trials)
        label = f"a fused job of trials {numbers}" if len(trials) > 1 else f"trial {numbers}, alone in its job"
        with worker.pace.run(label, len(trials)) if worker.pace is not None else contextlib.nullcontext():
            _run_claimed(worker, target, trials)
        trained += len(trials)
    return trained


def _run_claimed(worker: Worker, target: Target, trials: list[optuna.Trial]) -> None:
    """Train claimed trials fused, each group starting from one step.

    A fused job's members all stand at one step: fresh trials at 0, a preempted
    group's retries where it stopped. Claimed trials at different steps train as
    one fused job per step, one after the other (a job of one is a lone trial).
    Every claimed trial beats its heartbeat until it is told; how the others end is
    `trial.trial_outcome`'s policy, as for a lone trial.
    """
    # Setup reads and writes the storage too: all of it inside `trial_outcome`, as for a lone trial.
    with trial_outcome(worker, trials) as stop:
        starts = {trial.number: _start(worker, target, trial) for trial in trials}
        by_step: dict[int, list[optuna.Trial]] = collections.defaultdict(list)
        for trial in trials:
            by_step[starts[trial.number].state.step].append(trial)
        with Heartbeat(worker.storage, [trial_id(t) for t in trials], worker.config.study.heartbeat_seconds):
            for _, members in sorted(by_step.items()):
                if stop.signum is not None:
                    raise Interrupted(stop.signum)
                _run_group(worker, target, members, [starts[t.number] for t in members], stop)


class _Start(NamedTuple):
    """A claimed trial's checkpoint owner, state and FID evaluations: fresh, or resumed from its checkpoint."""

    owner: CheckpointOwner
    state: GanState
    curve: list[dict[str, float]]


def _start(worker: Worker, target: Target, trial: optuna.Trial) -> _Start:
    config = worker.config
    owner = checkpoint_owner(worker, trial)
    state = new_state(config.train, worker.data.shape, config.study.seed, worker.device)
    return _Start(owner, state, resume(target, trial, owner, state))


class _Group:
    """The trials of one fused job, aligned with its member indices as members leave."""

    def __init__(self, worker: Worker, target: Target, trials: list[optuna.Trial], starts: list[_Start]) -> None:
        self.worker = worker
        self.target = target
        self.members = list(trials)
        self.owners = {trial.number: start.owner for trial, start in zip(trials, starts, strict=True)}
        self.curves = {trial.number: start.curve for trial, start in zip(trials, starts, strict=True)}
        self.started = time.perf_counter()

    def state(self, fused: FusedGan, index: int) -> GanState:
        return unfuse(fused, index, self.worker.config.train, self.worker.data.shape)

    def evaluate(self, fused: FusedGan) -> dict[int, str]:
        """Score every member as a lone trial would be scored; the ones to prune or drop leave."""
        leaving = {}
        for index, trial in enumerate(self.members):
            try:
                evaluate_trial(self.worker, trial, self.state(fused, index), self.curves[trial.number])
            except optuna.TrialPruned:
                leaving[index] = "pruned"
            except Diverged as diverged:
                leaving[index] = str(diverged)
        return leaving

    def leave(self, fused: FusedGan, leaving: dict[int, str]) -> None:
        for index, reason in leaving.items():
            trial = self.members[index]
            if reason != "pruned":
                trial.set_user_attr(keys.PRUNE_REASON, reason)
            self.finish(trial, self.state(fused, index), TrialState.PRUNED)
        self.members = [trial for index, trial in enumerate(self.members) if index not in leaving]

    def finish(self, trial: optuna.Trial, state: GanState, outcome: TrialState) -> None:
        finish_trial(self.worker, self.target, trial, state, self.curves[trial.number], self.started, outcome)
        checkpoints.remove_checkpoint(self.target.trial_dir, self.owners[trial.number])

    def checkpoint(self, fused: FusedGan) -> dict[int, int]:
        """Every member's own checkpoint, as a lone trial would write it; {trial number: step}."""
        for index, trial in enumerate(self.members):
            checkpoints.save_checkpoint(self.target.trial_dir, self.owners[trial.number], self.state(fused, index),
                                        self.curves[trial.number])
        return {trial.number: fused.step for trial in self.members}

    def after_step(self, fused: FusedGan, stop: Stop) -> None:
        every, steps = self.worker.config.train.checkpoint_every, self.worker.config.train.steps
        faults.after_step(fused.step, steps)
        if every and fused.step % every == 0 and fused.step < steps:
            self.checkpoint(fused)
        stop.check(lambda: self.checkpoint(fused))


def _run_group(worker: Worker, target: Target, trials: list[optuna.Trial], starts: list[_Start],
               stop: Stop) -> None:
    config = worker.config
    lams = [trial.params[PARAM] for trial in trials]  # suggested when the trials were asked for
    for trial in trials:
        record_setup(worker, trial, config.study.seed)
        trial.set_user_attr(keys.FUSED_WITH, [t.number for t in trials])
    fault_point("setup")
    seeds = [config.study.seed] * len(trials)
    shape = worker.data.shape
    fused = fuse([start.state for start in starts], lams, seeds, config.train, shape)
    group = _Group(worker, target, trials, starts)
    log.info("fused job of %d trials from step %d: %s", len(trials), fused.step,
             ", ".join(str(t.number) for t in trials))
    fused, seconds = train_fused(fused, worker.data, config.train, config.train.steps, config.fid.eval_every,
                                 group.evaluate, group.leave, lambda job: group.after_step(job, stop))
    for index, trial in enumerate(group.members):
        state = group.state(fused, index)
        try:
            complete_evaluations(worker, trial, state, group.curves[trial.number])
        except Diverged as diverged:
            trial.set_user_attr(keys.PRUNE_REASON, str(diverged))
            group.finish(trial, state, TrialState.PRUNED)
            continue
        trial.set_user_attr(keys.TRAIN_SECONDS, seconds)
        group.finish(trial, state, TrialState.COMPLETE)
