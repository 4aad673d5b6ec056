"""Claiming trials: count them and start the ones a study still needs, atomically, under its lock.

Part of the storage adapter (with `storage`): the SQL on Optuna's schema that a claim runs lives
here. A claim is one database transaction that takes the study's lock, counts the trials,
starts WAITING copies first (a retry, a hand-back, an enqueued run) and then new trials, and
writes each one's first heartbeat. On PostgreSQL the lock is transaction-scoped
(`pg_advisory_xact_lock`): it ends with the transaction that counts and inserts, so a worker
whose session is lost mid-claim loses its inserts with it and can never start a trial from a
stale count. On SQLite it is a file lock beside the database. The worker then samples λ on the
started trials as `Study.ask` would (`start_trials`), so λ sequences are those of `ask`.

The race claims its runs the same way (`claim_one`, `sweep.race.claim`): one transaction under the
lock fails stale trials, starts a WAITING copy first, else the run its rule decides, written
with its fixed λ and user attributes before the commit.

Through a gRPC proxy (``grpc://``) the same claims run inside the proxy (`proxy_server`), one
call per claim; workers never poll for a lock. Imports no torch: bench/storage.py's light
workers claim through here.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb.models import (
    StudyModel,
    TrialHeartbeatModel,
    TrialModel,
    TrialParamModel,
    TrialSystemAttributeModel,
    TrialUserAttributeModel,
)
from optuna.trial import TrialState

from lambda_search.errors import StorageError
from lambda_search.names import PREEMPTED, PREEMPTED_TRIAL
from lambda_search.records import keys
from lambda_search.sweep.faults import fault_point
from lambda_search.sweep.storage.access import quiet_experimental, retry_callback
from lambda_search.sweep.storage.grpc_proxy import ProxyStorage
from lambda_search.sweep.storage.locks import lock_name, transaction_lock
from lambda_search.sweep.storage.retry import retrying

log = logging.getLogger(__name__)


# Claims cut short by a lost connection that are tried again before giving up.
CLAIM_RETRIES = 5
# What cuts a claim short: a connection lost or refused (the database restarting), through Optuna or not.
_LOST = (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError)

_TRIALS = TrialModel.__table__
_BEATS = TrialHeartbeatModel.__table__
_STUDIES = StudyModel.__table__
_SYSTEM_ATTRS = TrialSystemAttributeModel.__table__
_USER_ATTRS = TrialUserAttributeModel.__table__
_PARAMS = TrialParamModel.__table__

T = TypeVar("T")


@dataclass(frozen=True)
class Claimed:
    """What one claim started, and how many trials were running elsewhere when it started none."""

    trial_ids: list[int]
    running: int


def claim(database: RDBStorage, study: optuna.Study, n_trials: int, limit: int, grace_seconds: float,
          retry: RetryHeartbeatStaleTrialCallback) -> Claimed:
    """Start up to `limit` trials of `study` if it holds fewer than `n_trials` finished + running ones.

    Under the study's lock, in one transaction: stale trials are failed and their retries
    queued (`fail_stale`), the trials counted, WAITING ones started first, new ones after,
    each with its first heartbeat. Finished + running + waiting are counted together, so any
    number of workers never start more than `n_trials` in all.
    """
    with transaction_lock(database.engine, lock_name(study.study_name)) as connection:
        fail_stale(study, database, grace_seconds, retry)
        counts = _count(connection, study._study_id)
        finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
        running, waiting = counts[TrialState.RUNNING], counts[TrialState.WAITING]
        slots = min(limit, max(waiting, n_trials - finished - running))
        if slots <= 0:
            return Claimed([], running)
        trial_ids = _pop_waiting(connection, study._study_id, slots)
        trial_ids += [_insert(connection, study._study_id) for _ in range(slots - len(trial_ids))]
        _first_beats(connection, trial_ids)
        return Claimed(trial_ids, running)


@dataclass(frozen=True)
class NewTrial:
    """The trial a claim's decision starts: its fixed params (value and distribution) and user attributes."""

    params: Mapping[str, tuple[float, BaseDistribution]]
    user_attrs: Mapping[str, Any]


def claim_one(database: RDBStorage, studies: Sequence[optuna.Study],
              decide: Callable[[], tuple[int, NewTrial] | None], grace_seconds: float,
              retry: RetryHeartbeatStaleTrialCallback) -> tuple[int, int] | None:
    """Start one trial of one of `studies` (a race and its control), decided under the first one's lock.

    In one transaction under the lock of ``studies[0]``: stale trials of every study are
    failed and their retries queued, the oldest WAITING trial of the first study that has
    one is started, else the trial `decide()` returns (the index of its study and what it
    holds), written whole with its first heartbeat. A lost session loses the whole claim.

    Returns:
        The index of the study and the trial id started; None when `decide()` started none.
    """
    with transaction_lock(database.engine, lock_name(studies[0].study_name)) as connection:
        for study in studies:
            fail_stale(study, database, grace_seconds, retry)
        for index, study in enumerate(studies):
            if waiting := _pop_waiting(connection, study._study_id, 1):
                _first_beats(connection, waiting)
                return index, waiting[0]
        decided = decide()
        if decided is None:
            return None
        index, new = decided
        trial_id = _insert(connection, studies[index]._study_id)
        if new.params:
            connection.execute(_PARAMS.insert(), [
                {"trial_id": trial_id, "param_name": name, "param_value": distribution.to_internal_repr(value),
                 "distribution_json": distribution_to_json(distribution)}
                for name, (value, distribution) in new.params.items()])
        if new.user_attrs:
            connection.execute(_USER_ATTRS.insert(), [
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                for key, value in new.user_attrs.items()])
        _first_beats(connection, [trial_id])
        return index, trial_id


def _first_beats(connection: sqlalchemy.Connection, trial_ids: list[int]) -> None:
    # The beat's time is the database's, as in `RDBStorage.record_heartbeat`, and the time of this
    # statement: PostgreSQL's `now()` is the transaction's start, before the claim waited for its
    # lock and decided, which would make a just-claimed trial look stale to the next claim.
    now = (sqlalchemy.func.clock_timestamp() if connection.dialect.name == "postgresql"
           else sqlalchemy.func.current_timestamp())
    for trial_id in trial_ids:
        connection.execute(_BEATS.insert().values(trial_id=trial_id, heartbeat=now))


def _count(connection: sqlalchemy.Connection, study_id: int) -> dict[TrialState, int]:
    query = (sqlalchemy.select(_TRIALS.c.state, sqlalchemy.func.count())
             .where(_TRIALS.c.study_id == study_id).group_by(_TRIALS.c.state))
    counts = dict.fromkeys(TrialState, 0)
    counts.update({TrialState[str(getattr(state, "name", state))]: int(count)
                   for state, count in connection.execute(query)})
    return counts


def _pop_waiting(connection: sqlalchemy.Connection, study_id: int, limit: int) -> list[int]:
    """Start the oldest WAITING trials (Optuna's `ask` pops them in this order)."""
    waiting = connection.execute(
        sqlalchemy.select(_TRIALS.c.trial_id).where(_TRIALS.c.study_id == study_id,
                                                    _TRIALS.c.state == TrialState.WAITING)
        .order_by(_TRIALS.c.trial_id).limit(limit)).scalars().all()
    if waiting:
        connection.execute(_TRIALS.update().where(_TRIALS.c.trial_id.in_(waiting))
                           .values(state=TrialState.RUNNING, datetime_start=datetime.datetime.now()))
    return list(waiting)


def _insert(connection: sqlalchemy.Connection, study_id: int) -> int:
    """A new RUNNING trial, numbered as Optuna numbers it (its trials before it in the study)."""
    # Optuna numbers a study's trials under this row lock (`RDBStorage._create_new_trial`): so do we.
    connection.execute(sqlalchemy.select(_STUDIES.c.study_id).where(_STUDIES.c.study_id == study_id)
                       .with_for_update())
    result = connection.execute(_TRIALS.insert().values(study_id=study_id, state=TrialState.RUNNING,
                                                        datetime_start=datetime.datetime.now()))
    key = result.inserted_primary_key
    assert key is not None
    trial_id = int(key[0])
    earlier = (sqlalchemy.select(sqlalchemy.func.count()).select_from(_TRIALS)
               .where(_TRIALS.c.study_id == study_id, _TRIALS.c.trial_id < trial_id).scalar_subquery())
    connection.execute(_TRIALS.update().where(_TRIALS.c.trial_id == trial_id).values(number=earlier))
    return trial_id


def fail_stale(study: optuna.Study, database: RDBStorage, grace_seconds: float,
               retry: RetryHeartbeatStaleTrialCallback) -> None:
    """Fail running trials whose heartbeat is older than `grace_seconds` and queue their retries.

    Call it under the study's lock: then a RUNNING trial with no heartbeat at all is an orphan
    (a claim writes the first beat in the transaction that starts the trial, so something
    started it without one: Optuna's own `ask`, cut short). It is failed, not retried; it has no λ.
    A RUNNING trial whose `PREEMPTED_TRIAL` copy is queued was handed back by a worker killed
    before it told it FAIL (`storage.hand_back`): it is told FAIL now, not retried (its copy is).
    """
    beats = (sqlalchemy.select(_TRIALS.c.trial_id, _TRIALS.c.number, _BEATS.c.heartbeat)
             .select_from(_TRIALS.outerjoin(_BEATS, _BEATS.c.trial_id == _TRIALS.c.trial_id))
             .where(_TRIALS.c.study_id == study._study_id, _TRIALS.c.state == TrialState.RUNNING))
    with database.engine.connect() as connection:
        now = connection.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar_one().replace(tzinfo=None)
        running = connection.execute(beats).all()
        handed_back = _handed_back(connection, study._study_id)
    storage = study._storage
    for trial_id, number, beat in running:
        if number in handed_back:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_user_attr(trial_id, keys.FAIL_REASON, PREEMPTED)
                storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
                log.warning("trial id %d was handed back by a worker killed before telling it; FAIL", trial_id)
            continue
        if beat is not None and now - beat <= datetime.timedelta(seconds=grace_seconds):
            continue
        if beat is None:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_user_attr(trial_id, keys.FAIL_REASON, "claim cut short: never started")
                storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
                log.warning("trial id %d was claimed but never started; FAIL", trial_id)
            continue
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # told meanwhile
        log.warning("trial id %d: no heartbeat for %.0f s; FAIL, retried", trial_id, (now - beat).total_seconds())
        with quiet_experimental():
            retry(study, storage.get_trial(trial_id))


def _handed_back(connection: sqlalchemy.Connection, study_id: int) -> set[int]:
    """Numbers of the study's trials that a hand-back copy names (`PREEMPTED_TRIAL`, stored as JSON)."""
    query = (sqlalchemy.select(_SYSTEM_ATTRS.c.value_json)
             .select_from(_SYSTEM_ATTRS.join(_TRIALS, _TRIALS.c.trial_id == _SYSTEM_ATTRS.c.trial_id))
             .where(_TRIALS.c.study_id == study_id, _SYSTEM_ATTRS.c.key == PREEMPTED_TRIAL))
    return {int(json.loads(value)) for value in connection.execute(query).scalars()}


def start_trials(study: optuna.Study, trial_ids: list[int],
                 distributions: Mapping[str, BaseDistribution]) -> list[optuna.Trial]:
    """The claimed trials as `Study.ask(distributions)` returns them: λ sampled (or kept) the same way."""
    # As `ask` pops a waiting trial: read the study's new trials into the storage's cache, which
    # must know a trial before its λ can be set.
    study._storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
    trials = []
    for trial_id in trial_ids:
        study._thread_local.cached_all_trials = None  # as `ask` does: sample from the study as it is now
        trial = optuna.Trial(study, trial_id)
        for name, distribution in distributions.items():
            trial._suggest(name, distribution)
        trials.append(trial)
    return trials


def _claim_once(study: optuna.Study, storage: BaseStorage, n_trials: int, limit: int, heartbeat_seconds: int,
                max_retries: int) -> Claimed:
    if isinstance(storage, ProxyStorage):
        trial_ids, running = storage.claim(study.study_name, n_trials, limit)
        return Claimed(trial_ids, running)
    assert isinstance(storage, RDBStorage)
    return claim(storage, study, n_trials, limit, 2 * heartbeat_seconds, retry_callback(max_retries))


def _lost(error: Exception) -> bool:
    return isinstance(error, _LOST)


def claim_trials(study: optuna.Study, storage: BaseStorage, n_trials: int, limit: int,
                 distributions: Mapping[str, BaseDistribution], heartbeat_seconds: int, max_retries: int,
                 wait: bool = True) -> list[optuna.Trial]:
    """Start up to `limit` trials if the study still needs them (`claim`); empty when it is done.

    A trial still running elsewhere is waited for (unless `wait` is False): its worker may
    die, and its retry needs a worker. A connection lost mid-claim is retried: the lost
    transaction started nothing. One lost while λ is set on the claimed trials is retried too.
    """
    while True:
        claimed = retry_lost(lambda: _claim_once(study, storage, n_trials, limit, heartbeat_seconds, max_retries))
        if claimed.trial_ids:
            return start_claimed(study, claimed.trial_ids, distributions)
        if not claimed.running or not wait:
            return []
        log.info("%d trial(s) still running elsewhere; waiting for them (or their retry)", claimed.running)
        time.sleep(heartbeat_seconds)


def retry_lost(claim_once: Callable[[], T]) -> T:
    """`claim_once()`, tried again when the connection is lost mid-claim: the lost transaction started nothing."""
    try:
        return retrying(claim_once, CLAIM_RETRIES, _lost, "storage connection lost while claiming a trial; retrying")
    except _LOST as error:
        raise StorageError(f"lost the storage while claiming a trial ({type(error).__name__}), "
                           f"{CLAIM_RETRIES + 1} times; is the database up?") from None


def start_claimed(study: optuna.Study, trial_ids: list[int],
                  distributions: Mapping[str, BaseDistribution]) -> list[optuna.Trial]:
    """The trials a claim started, given their λ (`start_trials`) after the fault point "claim".

    A connection lost while λ is set is retried: setting it again is safe, a trial that got it
    keeps it (`Trial._suggest` reads it back).
    """
    fault_point("claim")
    return retrying(functools.partial(start_trials, study, trial_ids, distributions), CLAIM_RETRIES,
                    _lost, "storage connection lost while starting a claimed trial; retrying")
