"""The race inside Optuna: each of its runs is one trial, decided and claimed under the worker lock.

`lambda_search.sweep.race` decides which run comes next from the runs so far; this module
reads those runs from the storage, makes the trial the rule asks for, and hands it to the
sweep's trial machinery (heartbeat, checkpoints, stale retry and resume), which trains it
with the seed in its user attrs.

Where the runs live:

- Runs of λ > 0 are trials of the study itself, with param ``lambda`` and user attrs
  ``seed`` and ``role`` (``"search"`` or ``"verdict"``). A search run's λ is asked from the
  study's sampler; the verdict's runs of the kept λ are enqueued with that λ fixed.
- Runs of λ = 0 are trials of the companion study ``<name>.control``, as the sweep's
  control: a log-uniform distribution cannot hold 0, and the sampler must not model
  λ = 0, which is the reference and not a candidate.

The decision (read every run, apply the rule, make the trial) happens under the study's
worker lock, so the budget ``n_trials`` counts the runs of both studies exactly, and any
number of workers run the same rule. A failed run (a worker that died) is retried before
anything new is decided: the retry keeps the run's λ, seed and role.
"""

from __future__ import annotations

import logging
import time

import optuna
from optuna.trial import TrialState

from lambda_search.names import CONTROL, PARAM
from lambda_search.records import keys
from lambda_search.sweep.control import open_control
from lambda_search.sweep.race import SEARCH, Done, Propose, Repeat, next_run
from lambda_search.sweep.race_runs import race_runs
from lambda_search.sweep.storage import fail_stale_trials, worker_lock
from lambda_search.sweep.trial import Worker, ask_trial, run_trial

log = logging.getLogger(__name__)


def run_race(worker: Worker) -> int:
    """Claim and train the race's runs until its budget is spent; returns the runs trained here."""
    control = open_control(worker)
    trained = 0
    while (claimed := _claim(worker, control)) is not None:
        owner, trial = claimed
        log.info("race: trial %d of %s, λ = %.6g, seed %s, %s", trial.number, owner.study.study_name,
                 trial.params[PARAM], trial.user_attrs.get(keys.SEED), trial.user_attrs.get(keys.ROLE))
        run_trial(owner, trial)
        trained += 1
    return trained


def _claim(worker: Worker, control: Worker) -> tuple[Worker, optuna.Trial] | None:
    """The next run of the race, started; None when every run is done (waiting for those running elsewhere)."""
    config = worker.config.study
    while True:
        with worker_lock(worker.storage, worker.study.study_name):
            for owner in (worker, control):
                fail_stale_trials(owner.study, owner.storage)
            for owner in (worker, control):
                if owner.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                    return owner, ask_trial(owner)  # a run whose worker died: its retry comes first
            runs = race_runs(worker.study, control.study)
            action = next_run(runs, config.n_trials, config.seed, config.verdict_seeds)
            if isinstance(action, Propose):
                return worker, _start(worker, None, action.seed, SEARCH)
            if isinstance(action, Repeat):
                owner = control if action.lam == CONTROL else worker
                return owner, _start(owner, action.lam, action.seed, action.role)
        if isinstance(action, Done) and all(run.finished for run in runs):
            return None
        # Runs in progress elsewhere decide what comes next (or may die and need a retry): wait for them.
        time.sleep(worker.config.study.heartbeat_seconds)


def _start(owner: Worker, lam: float | None, seed: int, role: str) -> optuna.Trial:
    attrs = {keys.SEED: seed, keys.ROLE: role}
    if lam is not None and not owner.control:
        # A λ already in the race: fixed, not sampled. Enqueued and asked at once, under the lock.
        owner.study.enqueue_trial({PARAM: lam}, user_attrs=attrs)
    trial = ask_trial(owner)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return trial
