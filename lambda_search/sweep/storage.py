"""The storage under a study (SQL, or a gRPC storage proxy), and the one adapter to Optuna's internals.

Optuna's RDBStorage is the distributed engine; this module makes it dependable:
health-checked connections, a lock so that workers claim trials one at a time,
and a heartbeat per running trial so a killed worker is noticed.

Every use of Optuna's private API (``study._storage``, ``_study_id``,
``trial._trial_id``, its table models, raw SQL on its schema) lives here, behind
small public functions, and in `read_only`, its read side (which knows the table
names); `SUPPORTED_OPTUNA` is the range it was written for.
Imports no torch: the read side opens studies through here, read-only (`load_study`).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import filelock
import grpc
import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from lambda_search.errors import ConfigError, StorageError
from lambda_search.names import PREEMPTED, PREEMPTED_TRIAL
from lambda_search.records import keys
from lambda_search.storage_url import CONNECT_TIMEOUT_SECONDS, mask_password, sqlite_path
from lambda_search.sweep import claim
from lambda_search.sweep.faults import fault_point
from lambda_search.sweep.grpc_proxy import ProxyStorage
from lambda_search.sweep.read_only import load_study as load_study  # re-exported: the read side imports it from here
from lambda_search.sweep.retry import retrying

# Optuna versions this adapter was written and tested for (major.minor, lowest and first excluded);
# pyproject.toml pins the same range and tests/test_storage.py checks the installed version is in it.
SUPPORTED_OPTUNA = ((4, 9), (6, 0))

# SQLite waits this long for another process's write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_SECONDS = 60
# Opening a storage whose connection dies mid-way (not one that cannot connect) is tried again this often.
OPEN_RETRIES = 2


def _engine_kwargs(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}}
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    # pool_pre_ping: a connection dropped while a long trial trained is replaced, not fatal.
    return {"pool_pre_ping": True, "connect_args": connect_args}


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage an open study reads and writes through."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The study's row id in the storage."""
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's row id in the storage (what heartbeats and `get_trial` take): unique across its studies."""
    return trial._trial_id


def frozen(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The stored FrozenTrial of a live trial (its system attrs: a live Trial has none in Optuna 5)."""
    return study._storage.get_trial(trial._trial_id)


def open_storage(url: str, heartbeat_seconds: int = 30, max_retries: int = 2) -> BaseStorage:
    """Connect to (and create the tables of) a study storage, or to a gRPC storage proxy (``grpc://HOST:PORT``).

    Raises:
        ConfigError: the URL is malformed or names a driver that is not installed.
        StorageError: the database cannot be reached.
    """
    try:
        make_url(url)
    except ArgumentError:
        raise ConfigError(f"storage URL is malformed: {mask_password(url)}") from None
    if make_url(url).get_backend_name() == "grpc":
        return _open_proxy(url, heartbeat_seconds, max_retries)
    if (path := sqlite_path(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # A connection that died after it was made (a restart, pg_terminate_backend) is worth
        # another try; one that could not be made is reported now, within the timeout.
        return retrying(lambda: _open(url, heartbeat_seconds, max_retries), OPEN_RETRIES, lost_connection)
    except ModuleNotFoundError as error:
        raise ConfigError(f"storage {mask_password(url)} needs the {error.name} driver; install it") from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, OSError) as error:
        cause = error.__cause__ if isinstance(error, optuna.exceptions.StorageInternalError) else error
        reason = str(getattr(cause, "orig", None) or cause).splitlines()[0]
        raise StorageError(f"cannot reach storage {mask_password(url)}: {_scrub(reason, url)}") from None


def open_database(url: str) -> RDBStorage:
    """The SQL storage itself (for the gRPC proxy to serve); a ``grpc://`` URL is refused."""
    storage = open_storage(url)
    if not isinstance(storage, RDBStorage):
        raise ConfigError(f"the storage proxy serves a database URL, not {mask_password(url)}")
    return storage


PROXY_CONNECT_SECONDS = 10


def _open_proxy(url: str, heartbeat_seconds: int, max_retries: int) -> ProxyStorage:
    parsed = make_url(url)
    if not parsed.host or not parsed.port or parsed.database:
        raise ConfigError(f"a storage proxy URL is grpc://HOST:PORT, not {mask_password(url)}")
    storage = ProxyStorage(parsed.host, parsed.port, heartbeat_seconds, max_retries)
    try:
        storage.wait_server_ready(timeout=PROXY_CONNECT_SECONDS)
    except ConnectionError:
        raise StorageError(f"cannot reach the storage proxy at {parsed.host}:{parsed.port} "
                           f"within {PROXY_CONNECT_SECONDS} s; is `lambda-search storage-proxy` running?") from None
    return storage


def _open(url: str, heartbeat_seconds: int, max_retries: int) -> RDBStorage:
    # Workers started together on an empty database would all create the tables
    # at once; on PostgreSQL that fails with "duplicate key value". One at a time.
    engine = sqlalchemy.create_engine(url, **_engine_kwargs(url))
    try:
        with _exclusive(engine, "lambda-search:create-tables"), _quiet_experimental():
            return RDBStorage(
                url,
                engine_kwargs=_engine_kwargs(url),
                heartbeat_interval=heartbeat_seconds,
                grace_period=2 * heartbeat_seconds,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=max_retries, inherit_intermediate_values=True),
            )
    finally:
        engine.dispose()


def lost_connection(error: BaseException) -> bool:
    """Whether `error` is a database connection that died in use (restart, terminated session)."""
    if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__
    return isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    # Heartbeat and retry are "experimental" since Optuna 2.8 and stable in use; one
    # warning per worker and per trial would bury the log lines that matter.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def retried_trial_number(trial: FrozenTrial) -> int | None:
    """The original trial a retry re-runs (None for a first run).

    Takes the FrozenTrial: in Optuna 5 a live Trial has no ``system_attrs``.
    """
    with _quiet_experimental():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)



def hand_back(study: optuna.Study, trial_id: int) -> int | None:
    """Give a preempted trial back for retry: same λ, its retry count kept; returns the copy's number.

    Optuna has no "preempted" state, so this does what `RetryHeartbeatStaleTrialCallback`
    does for a stale trial, except that it does not count: it queues a WAITING copy
    (params, user attrs, intermediate values, ``failed_trial`` pointing to the original,
    so the copy resumes from the original's checkpoint, and `PREEMPTED_TRIAL` naming
    it) with the original's ``retry_history`` unchanged, so no ``max_retries`` slot is
    spent, then tells the original FAIL with ``fail_reason = "preempted"`` (the sampler
    ignores FAIL trials). The copy is queued first: in between, the study holds one
    trial more, never one less, so no other worker starts an extra trial; a worker
    killed in between leaves the original RUNNING beside its copy, and the next claim
    tells it FAIL instead of retrying it (`claim.fail_stale`). Does nothing (None) to
    a finished trial.
    """
    storage = study._storage
    trial = storage.get_trial(trial_id)
    if trial.state.is_finished():
        return None
    system_attrs = {keys.FAILED_TRIAL: trial.number, keys.RETRY_HISTORY: [], **trial.system_attrs,
                    PREEMPTED_TRIAL: trial.number}
    copy = optuna.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=trial.user_attrs, system_attrs=system_attrs, intermediate_values=trial.intermediate_values)
    copy_id = storage.create_new_trial(study._study_id, template_trial=copy)
    fault_point("hand-back")
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_user_attr(trial_id, keys.FAIL_REASON, PREEMPTED)
        storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)
    return storage.get_trial_number_from_id(copy_id)


def _scrub(text: str, url: str) -> str:
    password = make_url(url).password
    return text.replace(str(password), "***") if password else text


def worker_lock(storage: BaseStorage, study_name: str) -> contextlib.AbstractContextManager[None]:
    """Serialise a study's decisions across its workers (open it, the race's next run); claims take it too.

    Through a gRPC proxy: held in the proxy (`grpc_proxy.ProxyStorage.hold`).
    """
    if isinstance(storage, ProxyStorage):
        return storage.hold(study_name)
    assert isinstance(storage, RDBStorage)
    return _exclusive(storage.engine, claim.lock_name(study_name))


def record_heartbeat(storage: BaseStorage, trial_id: int) -> None:
    """One heartbeat of a running trial in Optuna's heartbeat table (through a proxy: in the proxy)."""
    if isinstance(storage, ProxyStorage):
        storage.beat([trial_id])
    else:
        assert isinstance(storage, RDBStorage)
        storage.record_heartbeat(trial_id)


@contextlib.contextmanager
def _exclusive(engine: sqlalchemy.Engine, name: str) -> Iterator[None]:
    """Hold a lock named `name` that every process using this storage sees.

    PostgreSQL: a session advisory lock keyed by the name. SQLite: a file lock beside the
    database (SQLite is one machine by nature). Others: none. A wait past
    `claim.LOCK_WAIT_SECONDS` is a StorageError.
    """
    if (path := claim.lock_file(engine)) is not None:
        try:
            with filelock.FileLock(path, timeout=claim.LOCK_WAIT_SECONDS):
                yield
        except filelock.Timeout:
            raise claim.waited_too_long(name) from None
        return
    if engine.dialect.name != "postgresql":
        yield
        return
    key = claim.lock_key(name)
    with engine.connect() as connection:
        _advisory_lock(connection, name, key)
        try:
            yield
        finally:
            try:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
            except sqlalchemy.exc.DBAPIError as error:
                if not error.connection_invalidated:
                    raise
                # The session was terminated (database restart, pg_terminate_backend):
                # its advisory lock ended with it, so there is nothing left to release.
                optuna.logging.get_logger(__name__).warning("worker lock connection was lost; carrying on")


def _advisory_lock(connection: sqlalchemy.Connection, name: str, key: int) -> None:
    connection.execute(sqlalchemy.text("SELECT set_config('lock_timeout', :ms, false)"),
                       {"ms": f"{claim.LOCK_WAIT_SECONDS * 1000}"})
    try:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
    except sqlalchemy.exc.OperationalError as error:
        connection.rollback()
        if claim.lock_timed_out(error):
            raise claim.waited_too_long(name) from None
        raise
    connection.execute(sqlalchemy.text("SELECT set_config('lock_timeout', '0', false)"))
    connection.commit()


# Feature-network weights files, content-addressed, in the study's own database: every worker
# that reaches the database reaches them (the artifact folder need not be shared; see `save_file`).
_FILES = sqlalchemy.Table(
    "lambda_search_files", sqlalchemy.MetaData(),
    sqlalchemy.Column("sha256", sqlalchemy.String(64), primary_key=True),
    sqlalchemy.Column("payload", sqlalchemy.LargeBinary, nullable=False),
)


def _database(storage: BaseStorage) -> RDBStorage:
    if not isinstance(storage, RDBStorage):
        raise ConfigError("a study scored by its own LeNet (a dataset other than mnist-5k) keeps it in the "
                          "database: run its workers against the database URL, not through a gRPC proxy")
    return storage


def save_file(storage: BaseStorage, sha256: str, payload: bytes) -> None:
    """Store a file under its sha256 (a few MB at most: a LeNet is 1.7 MB), once.

    In the database, not an Optuna artifact store: the artifact folder is per machine
    unless it is shared, and a study's ruler must reach every worker that reaches its trials.
    """
    storage = _database(storage)
    # Callers hold their study's worker lock; the first workers of two studies may still meet here.
    try:
        _FILES.create(storage.engine, checkfirst=True)
    except sqlalchemy.exc.DatabaseError:
        if not sqlalchemy.inspect(storage.engine).has_table(_FILES.name):
            raise
    if load_file(storage, sha256) is not None:
        return
    with contextlib.suppress(sqlalchemy.exc.IntegrityError), storage.engine.begin() as connection:
        connection.execute(_FILES.insert().values(sha256=sha256, payload=payload))


def load_file(storage: BaseStorage, sha256: str) -> bytes | None:
    """The file stored under `sha256`, or None."""
    storage = _database(storage)
    if not sqlalchemy.inspect(storage.engine).has_table(_FILES.name):
        return None
    with storage.engine.connect() as connection:
        row = connection.execute(sqlalchemy.select(_FILES.c.payload).where(_FILES.c.sha256 == sha256)).first()
    return None if row is None else bytes(row[0])


class Heartbeat:
    """Records a heartbeat for some running trials every `interval` seconds, in a thread.

    Optuna beats only inside `study.optimize`; the ask/tell loop here beats itself,
    for one trial or for a fused group of them.
    """

    def __init__(self, storage: BaseStorage, trial_ids: list[int], interval: float) -> None:
        self._storage = storage
        self._trial_ids = list(trial_ids)
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_stopped, daemon=True, name="heartbeat")

    def __enter__(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _beat(self) -> None:
        for trial_id in self._trial_ids:
            record_heartbeat(self._storage, trial_id)

    def _beat_until_stopped(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._beat()
            except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ConnectionError,
                    grpc.RpcError):
                # The database blinked: the next beat retries; a long outage makes the trial stale.
                optuna.logging.get_logger(__name__).warning("heartbeat failed; retrying")
