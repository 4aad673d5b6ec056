"""The race inside Optuna: each of its runs is one trial, decided and started in one atomic claim.

`race.rule` decides which run comes next from the runs so far; this module
reads those runs from the storage, makes the trial the rule asks for, and hands it to the
sweep's trial machinery (heartbeat, checkpoints, stale retry and resume), which trains it
with the seed in its user attrs.

Where the runs live:

- Runs of λ > 0 are trials of the study itself, with param ``lambda`` and user attrs
  ``seed`` and ``role`` (``"search"`` or ``"verdict"``). A search run's λ is asked from the
  study's sampler; the verdict's runs of the kept λ are started with that λ fixed.
- Runs of λ = 0 are trials of the companion study ``<name>.control``, as the sweep's
  control: a log-uniform distribution cannot hold 0, and the sampler must not model
  λ = 0, which is the reference and not a candidate.

A claim decides and starts a run in one transaction under the study's lock (`race.claim`,
through a gRPC proxy inside the proxy), so the budget ``n_trials`` counts the runs of both
studies exactly whatever the workers, and a worker that loses its session loses its claim
with it. A failed run (a worker that died, or one handed back) is retried before anything
new is decided: the retry keeps the run's λ, seed and role.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import optuna
from optuna.storages import RDBStorage

from lambda_search.names import PARAM
from lambda_search.records import keys
from lambda_search.sweep.control import control_target
from lambda_search.sweep.race.claim import ClaimedRun, RaceRules, claim_run
from lambda_search.sweep.storage import claim
from lambda_search.sweep.storage.access import retry_callback
from lambda_search.sweep.storage.grpc_proxy import ProxyStorage
from lambda_search.sweep.trial import Target, Worker, run_trial

log = logging.getLogger(__name__)


def run_race(worker: Worker, search: Target) -> int:
    """Claim and train the race's runs until its budget is spent; returns the runs trained here.

    Its runs of λ > 0 are trials of `search`, the study's own target; its runs of λ = 0 are the
    control's (`control.control_target`).
    """
    control = control_target(worker)
    trained = 0
    while (claimed := _claim(worker, search, control)) is not None:
        target, trial = claimed
        log.info("race: trial %d of %s, λ = %.6g, seed %s, %s", trial.number, target.study.study_name,
                 trial.params[PARAM], trial.user_attrs.get(keys.SEED), trial.user_attrs.get(keys.ROLE))
        run_trial(worker, target, trial)
        trained += 1
    return trained


def _claim(worker: Worker, search: Target, control: Target) -> tuple[Target, optuna.Trial] | None:
    """The next run of the race, started; None when every run is done (waiting for those running elsewhere)."""
    while True:
        claimed = claim.retry_lost(lambda: _claim_once(worker, search, control))
        if claimed.trial_id is not None:
            target = control if claimed.control else search
            [trial] = claim.start_claimed(target.study, [claimed.trial_id], {PARAM: target.distribution})
            return target, trial
        if claimed.finished:
            return None
        # Runs in progress elsewhere decide what comes next (or may die and need a retry): wait for them.
        time.sleep(worker.config.study.heartbeat_seconds)


def _claim_once(worker: Worker, search: Target, control: Target) -> ClaimedRun:
    config = worker.config
    rules = RaceRules(config.study.n_trials, config.study.seed, config.study.verdict_seeds,
                      config.search.lambda_low, config.search.lambda_high)
    if isinstance(worker.storage, ProxyStorage):
        return ClaimedRun(**worker.storage.claim_run(search.study.study_name, dataclasses.asdict(rules)))
    assert isinstance(worker.storage, RDBStorage)
    return claim_run(worker.storage, search.study, control.study, rules, 2 * config.study.heartbeat_seconds,
                     retry_callback(config.study.max_retries))
