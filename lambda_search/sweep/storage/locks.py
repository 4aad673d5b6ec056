"""A study's lock, seen by every process using its storage: a PostgreSQL advisory lock, or a file lock
beside an SQLite database. Claims take it (`claim`), and so does every `worker_lock` block."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import filelock
import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage

from lambda_search.errors import StorageError
from lambda_search.sweep.storage.grpc_proxy import ProxyStorage

# A claim holds its study's lock for milliseconds; a worker waiting this long reports it, not hangs.
LOCK_WAIT_SECONDS = 120


# PostgreSQL's SQLSTATE for a lock wait that ran past lock_timeout.
_LOCK_NOT_AVAILABLE = "55P03"


def lock_name(study_name: str) -> str:
    """The name of a study's lock: one for claims and for every other `storage.worker_lock`."""
    return f"lambda-search:{study_name}"


def lock_key(name: str) -> int:
    """The PostgreSQL advisory-lock key of a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_file(engine: sqlalchemy.Engine) -> Path | None:
    """The lock file beside an SQLite database (SQLite is one machine by nature); None for others."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).with_name(Path(database).name + ".lock")


def lock_timed_out(error: BaseException) -> bool:
    """Whether `error` is PostgreSQL giving up a lock wait at ``lock_timeout``."""
    return getattr(getattr(error, "orig", None), "sqlstate", None) == _LOCK_NOT_AVAILABLE


def waited_too_long(name: str) -> StorageError:
    return StorageError(f"waited {LOCK_WAIT_SECONDS} s for the lock {name!r}; another worker holds it "
                        "(a claim takes milliseconds: is a worker or the database stuck?)")


def worker_lock(storage: BaseStorage, study_name: str) -> contextlib.AbstractContextManager[None]:
    """Serialise a study's decisions across its workers (open it, the race's next run); claims take it too.

    Through a gRPC proxy: held in the proxy (`grpc_proxy.ProxyStorage.hold`).
    """
    if isinstance(storage, ProxyStorage):
        return storage.hold(study_name)
    assert isinstance(storage, RDBStorage)
    return exclusive(storage.engine, lock_name(study_name))


@contextlib.contextmanager
def exclusive(engine: sqlalchemy.Engine, name: str) -> Iterator[None]:
    """Hold a lock named `name` that every process using this storage sees.

    PostgreSQL: a session advisory lock keyed by the name. SQLite: a file lock beside the
    database (SQLite is one machine by nature). Others: none. A wait past
    `locks.LOCK_WAIT_SECONDS` is a StorageError.
    """
    if (path := lock_file(engine)) is not None:
        with _file_lock(path, name):
            yield
        return
    if engine.dialect.name != "postgresql":
        yield
        return
    key = lock_key(name)
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
                       {"ms": f"{LOCK_WAIT_SECONDS * 1000}"})
    try:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
    except sqlalchemy.exc.OperationalError as error:
        connection.rollback()
        if lock_timed_out(error):
            raise waited_too_long(name) from None
        raise
    connection.execute(sqlalchemy.text("SELECT set_config('lock_timeout', '0', false)"))
    connection.commit()


@contextlib.contextmanager
def transaction_lock(engine: sqlalchemy.Engine, name: str) -> Iterator[sqlalchemy.Connection]:
    """A connection in one transaction that holds the lock `name`; the commit releases it.

    PostgreSQL: a transaction-scoped advisory lock, so a lost session loses the lock and the
    transaction's writes together. SQLite: the file lock of `exclusive`, held around the transaction.
    """
    if (path := lock_file(engine)) is not None:
        with _file_lock(path, name), engine.begin() as connection:
            yield connection
        return
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sqlalchemy.text("SELECT set_config('lock_timeout', :ms, true)"),
                               {"ms": f"{LOCK_WAIT_SECONDS * 1000}"})
            try:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
            except sqlalchemy.exc.OperationalError as error:
                if lock_timed_out(error):
                    raise waited_too_long(name) from None
                raise
        yield connection


@contextlib.contextmanager
def _file_lock(path: Path, name: str) -> Iterator[None]:
    try:
        with filelock.FileLock(path, timeout=LOCK_WAIT_SECONDS):
            yield
    except filelock.Timeout:
        raise waited_too_long(name) from None
