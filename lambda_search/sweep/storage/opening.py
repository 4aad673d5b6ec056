"""Opening a study storage: an SQL database (tables created one worker at a time, a connection lost while
opening tried again) or a gRPC storage proxy (``grpc://HOST:PORT``)."""

from __future__ import annotations

from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from lambda_search.errors import ConfigError, StorageError
from lambda_search.storage_url import CONNECT_TIMEOUT_SECONDS, mask_password, sqlite_folder_problem, sqlite_path
from lambda_search.sweep.storage.access import quiet_experimental, retry_callback
from lambda_search.sweep.storage.grpc_proxy import ProxyStorage
from lambda_search.sweep.storage.locks import exclusive
from lambda_search.sweep.storage.retry import retrying

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


def open_storage(url: str, heartbeat_seconds: int = 30, max_retries: int = 2) -> BaseStorage:
    """Connect to (and create the tables of) a study storage, or to a gRPC storage proxy (``grpc://HOST:PORT``).

    Raises:
        ConfigError: the URL is malformed, names a driver that is not installed, or an SQLite file that is a folder.
        StorageError: the database cannot be reached.
    """
    try:
        make_url(url)
    except ArgumentError:
        raise ConfigError(f"storage URL is malformed: {mask_password(url)}") from None
    if make_url(url).get_backend_name() == "grpc":
        return _open_proxy(url, heartbeat_seconds, max_retries)
    if (problem := sqlite_folder_problem(url)) is not None:
        raise ConfigError(f"storage {mask_password(url)}: {problem}")
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
        with exclusive(engine, "lambda-search:create-tables"), quiet_experimental():
            return RDBStorage(
                url,
                engine_kwargs=_engine_kwargs(url),
                heartbeat_interval=heartbeat_seconds,
                grace_period=2 * heartbeat_seconds,
                heartbeat_stale_trial_callback=retry_callback(max_retries),
            )
    finally:
        engine.dispose()


def lost_connection(error: BaseException) -> bool:
    """Whether `error` is a database connection that died in use (restart, terminated session)."""
    if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__
    return isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated


def _scrub(text: str, url: str) -> str:
    password = make_url(url).password
    return text.replace(str(password), "***") if password else text
