"""Workers behind Optuna's gRPC storage proxy: the worker lock, counts and heartbeats without SQL.

Through ``grpc://HOST:PORT`` a worker talks to `optuna.storages.run_grpc_proxy_server`
(`lambda-search storage-proxy`), which alone holds database connections: their number
no longer grows with the workers. The proxy serves Optuna's storage API and nothing
else, so the three things a worker does in SQL on a direct connection are done here
with that API:

- **Worker lock.** No advisory lock or flock is reachable. The lock is a token: the
  WAITING trial of the companion study ``<name>.lock``. Taking it is Optuna's own atomic
  WAITING → RUNNING transition (`set_trial_state_values`, a row lock in the database), so
  of many workers exactly one wins; releasing it tells it PRUNED (a COMPLETE trial
  without a value would break Optuna's study summaries) and queues the next
  token. A holder silent for `LOCK_TIMEOUT_SECONDS` (it died inside its claim, which
  takes milliseconds) is broken: its token is told FAIL, and whoever's FAIL succeeds
  queues the next one. Timed by the workers' clocks against the proxy host's: keep
  them in sync (NTP). Exclusive on PostgreSQL and MySQL (row locks); not behind a
  proxy over SQLite.
- **Counting.** The study's trials through the proxy's trial cache, not one GROUP BY.
- **Heartbeats.** Optuna's heartbeat table is not served by the proxy: a worker writes
  the time into the trial's system attribute ``heartbeat``, and a claiming worker
  fails trials whose beat is older than twice the interval and queues their retry
  with Optuna's `RetryHeartbeatStaleTrialCallback` (same λ, same checkpoint, max_retries).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
import warnings
from collections.abc import Iterator

import optuna
from optuna.storages import GrpcStorageProxy, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from lambda_search import names

log = logging.getLogger(__name__)

HEARTBEAT_ATTR = "heartbeat"
# A claim holds the lock for milliseconds; one held this long belongs to a dead worker.
LOCK_TIMEOUT_SECONDS = 60.0
LOCK_POLL_SECONDS = 0.02


class ProxyStorage(GrpcStorageProxy):
    """A gRPC proxy client that knows the study's heartbeat interval and retry limit."""

    def __init__(self, host: str, port: int, heartbeat_seconds: int, max_retries: int) -> None:
        with warnings.catch_warnings():
            # Experimental since Optuna 4.2; one warning per worker says nothing the docs do not.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(host=host, port=port)
        self.heartbeat_seconds = heartbeat_seconds
        self.max_retries = max_retries


def record_heartbeat(storage: ProxyStorage, trial_id: int) -> None:
    storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())


def fail_stale_trials(study: optuna.Study, storage: ProxyStorage) -> None:
    """Fail running trials whose heartbeat stopped (or never began) and queue their retries.

    Call it under `worker_lock`: a trial's first beat is written under the lock that created it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=storage.max_retries, inherit_intermediate_values=True)
    now = time.time()
    for trial in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.system_attrs.get(HEARTBEAT_ATTR)
        if beat is not None and now - float(beat) <= 2 * storage.heartbeat_seconds:
            continue
        try:
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # told meanwhile
        log.warning("trial %d: no heartbeat for %s; FAIL, retried", trial.number,
                    "ever" if beat is None else f"{now - float(beat):.0f} s")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, storage.get_trial(trial._trial_id))


@contextlib.contextmanager
def token_lock(storage: ProxyStorage, name: str) -> Iterator[None]:
    """Hold the lock `name` (see the module docstring) for the `with` block."""
    study_id = _lock_study(storage, name)
    token = _take(storage, study_id)
    try:
        yield
    finally:
        try:
            storage.set_trial_state_values(token, TrialState.PRUNED)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("lock %s was broken while held; not queuing another token", name)
        else:
            _queue_token(storage, study_id)


def _lock_study(storage: ProxyStorage, name: str) -> int:
    lock_name = names.lock_name(name)
    try:
        study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], lock_name)
    except optuna.exceptions.DuplicatedStudyError:
        return storage.get_study_id_from_name(lock_name)
    _queue_token(storage, study_id)  # the creator, and only it, queues the first token
    return study_id


def _queue_token(storage: ProxyStorage, study_id: int) -> None:
    storage.create_new_trial(study_id, template_trial=optuna.create_trial(state=TrialState.WAITING))


def _take(storage: ProxyStorage, study_id: int) -> int:
    while True:
        tokens = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
        for token in tokens:
            if token.state == TrialState.WAITING and _set_running(storage, token._trial_id):
                return token._trial_id
            if token.state == TrialState.RUNNING and _held_too_long(token):
                _break(storage, study_id, token._trial_id)
        time.sleep(LOCK_POLL_SECONDS)


def _set_running(storage: ProxyStorage, token: int) -> bool:
    """Take a token seen WAITING; False if another worker took it first (or took and released it)."""
    try:
        return storage.set_trial_state_values(token, TrialState.RUNNING)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _held_too_long(token: optuna.trial.FrozenTrial) -> bool:
    started = token.datetime_start
    return started is not None and (datetime.datetime.now() - started).total_seconds() > LOCK_TIMEOUT_SECONDS


def _break(storage: ProxyStorage, study_id: int, token: int) -> None:
    try:
        storage.set_trial_state_values(token, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # released or broken by another worker meanwhile
    log.warning("worker lock held over %.0f s by a dead worker; broken", LOCK_TIMEOUT_SECONDS)
    _queue_token(storage, study_id)
