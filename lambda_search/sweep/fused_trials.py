"""Optuna glue for fused jobs: ask K trials, train them as one, tell each its own result.

Each member reports its own intermediate FIDs and is pruned on its own: a pruned
member leaves the fused job and the others go on. Every member uses the study
seed, so a fused trial is the same trial it would be alone (`fused` checks this).
"""

from __future__ import annotations

import logging
import time

import optuna
from optuna.trial import TrialState

from lambda_search.gan.fused import FusedGan, fuse, train_fused, unfuse
from lambda_search.gan.train import Diverged, GanState, new_state
from lambda_search.names import PARAM
from lambda_search.sweep.storage import Heartbeat, trial_id
from lambda_search.sweep.trial import (
    Worker,
    claim_trials,
    evaluate_trial,
    finish_trial,
    record_setup,
    trial_outcome,
)

log = logging.getLogger(__name__)


def run_fused(worker: Worker) -> int:
    """Run fused groups of `[train] fuse` trials until the study is done; returns trials trained."""
    trained = 0
    while trials := claim_trials(worker, worker.config.train.fuse):
        _run_group(worker, trials)
        trained += len(trials)
    return trained


class _Group:
    """The trials of one fused job, aligned with its member indices as members leave."""

    def __init__(self, worker: Worker, trials: list[optuna.Trial]) -> None:
        self.worker = worker
        self.members = list(trials)
        self.curves: dict[int, list[dict[str, float]]] = {trial.number: [] for trial in trials}
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
                trial.set_user_attr("prune_reason", reason)
            self.finish(trial, self.state(fused, index), TrialState.PRUNED)
        self.members = [trial for index, trial in enumerate(self.members) if index not in leaving]

    def finish(self, trial: optuna.Trial, state: GanState, outcome: TrialState) -> None:
        finish_trial(self.worker, trial, state, self.curves[trial.number], self.started, outcome)



def _run_group(worker: Worker, trials: list[optuna.Trial]) -> None:
    # Setup writes to the storage too: a connection lost there hands the trials back, as for a lone trial.
    with trial_outcome(worker, trials):
        _train_group(worker, trials)


def _train_group(worker: Worker, trials: list[optuna.Trial]) -> None:
    config = worker.config
    lams = [trial.params[PARAM] for trial in trials]  # suggested when the trials were claimed, as for a lone one
    for trial in trials:
        record_setup(worker, trial, config.study.seed)
        trial.set_user_attr("fused_with", [t.number for t in trials])
    seeds = [config.study.seed] * len(trials)
    shape = worker.data.shape
    fused = fuse([new_state(config.train, shape, seed, worker.device) for seed in seeds],
                 lams, seeds, config.train, shape)
    group = _Group(worker, trials)
    log.info("fused job of %d trial%s: %s", len(trials), "" if len(trials) == 1 else "s",
             ", ".join(str(t.number) for t in trials))
    # Members that left early were told PRUNED; `trial_outcome` leaves finished trials alone.
    with Heartbeat(worker.storage, [trial_id(t) for t in trials], config.study.heartbeat_seconds):
        fused, seconds = train_fused(fused, worker.data, config.train, config.train.steps,
                                     config.fid.eval_every, group.evaluate, group.leave)
        for index, trial in enumerate(group.members):
            trial.set_user_attr("train_seconds", seconds)
            group.finish(trial, group.state(fused, index), TrialState.COMPLETE)
