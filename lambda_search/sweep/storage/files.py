"""Files in the study's own database (the feature network's weights), content-addressed by sha256."""

from __future__ import annotations

import contextlib

import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage

from lambda_search.errors import ConfigError

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
