"""A storage opened for reading only: what `status`, `report`, `export` and `plan` read through.

Optuna's RDBStorage creates its tables and stamps its schema version when it opens a
database, so a read command pointed at some other database would write Optuna's tables
into it. Here the tables are looked for first (SQLAlchemy's inspector) and a database
without them is refused; one with them is opened without creating any, on a read-only
connection: SQLite's ``mode=ro`` (no lock file, so a read-only file in a read-only folder
reads), PostgreSQL's ``default_transaction_read_only``. No lock is taken: a read needs none.

Part of the storage adapter (`sweep.storage`): the one other module that knows Optuna's schema.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb.models import BaseModel
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from lambda_search.errors import ConfigError, StorageError, StudyNotFoundError
from lambda_search.storage_url import CONNECT_TIMEOUT_SECONDS, mask_password, sqlite_file_problem, sqlite_path

# Every table of Optuna's schema: a database lacking one is not a study storage.
OPTUNA_TABLES = frozenset(BaseModel.metadata.tables)


def load_study(storage_url: str, name: str) -> optuna.Study:
    """An existing study, opened read-only (`open_read_only`).

    Raises:
        StudyNotFoundError: no study of that name; the message lists those there are.
        ConfigError: the database is not a study storage (see `open_read_only`).
    """
    if (problem := sqlite_file_problem(storage_url)) is not None:
        raise StudyNotFoundError(f"no study {name!r}: {problem}")
    storage = open_read_only(storage_url)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise StudyNotFoundError(f"no study {name!r} in this storage (studies: {listed})")
    return optuna.load_study(study_name=name, storage=storage)


def open_read_only(url: str) -> BaseStorage:
    """A study storage for reading: nothing is created, locked or written.

    Raises:
        ConfigError: the URL is malformed, or the database lacks Optuna's tables (it is
            left untouched).
        StorageError: the database cannot be reached.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"storage URL is malformed: {mask_password(url)}") from None
    if parsed.get_backend_name() == "grpc":
        from lambda_search.sweep.storage.opening import open_storage  # the proxy's own database holds the tables

        return open_storage(url)
    engine_kwargs = _read_only_engine_kwargs(url)
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise StorageError(f"cannot read storage {mask_password(url)}: {reason}") from None
    finally:
        engine.dispose()
    if missing := OPTUNA_TABLES - tables:
        lacks = "none of Optuna's tables" if missing == OPTUNA_TABLES else f"no table {', '.join(sorted(missing))}"
        raise ConfigError(f"storage {mask_password(url)} is not a lambda-search/Optuna storage: it has {lacks}; "
                          "nothing was written to it")
    return RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=True)


def _read_only_engine_kwargs(url: str) -> dict[str, Any]:
    path = sqlite_path(url)
    if path is not None:
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
        return {"creator": lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)}
    if make_url(url).get_backend_name() == "postgresql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS,
                                 "options": "-c default_transaction_read_only=on"}}
    return {}
