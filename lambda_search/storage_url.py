"""What a storage URL may be, checked before anything is written, and where its artifacts live: no Optuna, no torch.

`config` refuses a study file whose storage URL this module refuses, so `check` and `run`
refuse it alike, before the artifacts folder or the database is made.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

# SQLite and PostgreSQL hold the worker lock (`sweep.storage`); grpc is the storage proxy.
# Another database Optuna supports (MySQL) would run its workers without a lock.
BACKENDS = ("sqlite", "postgresql", "grpc")
# A database that does not answer within this many seconds is reported unreachable.
CONNECT_TIMEOUT_SECONDS = 10
# The longest file or folder name Linux and macOS file systems hold, in bytes.
NAME_MAX = 255


def mask_password(url: str) -> str:
    """The storage URL as it may be shown: any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable storage URL>"


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL; None for other backends and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def sqlite_folder_problem(url: str) -> str | None:
    """An SQLite URL whose file is a folder here, in a phrase; None otherwise (or not SQLite)."""
    path = sqlite_path(url)
    return f"the SQLite file {path} is a folder, not a database file" if path is not None and path.is_dir() else None


def sqlite_file_problem(url: str) -> str | None:
    """Why an SQLite URL's file cannot be read (it does not exist, or is a folder); None if it can or is not SQLite."""
    path = sqlite_path(url)
    if path is None or path.is_file():
        return None
    return sqlite_folder_problem(url) or f"the SQLite file {path} does not exist"


def storage_url_problem(url: str) -> str | None:
    """Why `url` cannot be a study's storage here, in a phrase; None when it can."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "it is not a URL (e.g. sqlite:///studies/NAME.db); not shown, it may hold a password"
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        return f"{mask_password(url)}: {backend!r} is not one of: {', '.join(BACKENDS)}"
    if backend == "grpc":
        return _proxy_problem(parsed, url)
    if backend == "sqlite" and (problem := _file_name_problem(parsed.database or "")) is not None:
        return f"{mask_password(url)}: {problem}"
    return _driver_problem(parsed, url)


def _file_name_problem(database: str) -> str | None:
    """Why an SQLite file name cannot name a database file (a NUL, a part too long for a file system, a trailing /).

    From the name alone, never the file system: a stored config is checked wherever it is read back.
    None for an in-memory database (no name, or ``:memory:``).
    """
    if database in ("", ":memory:"):
        return None
    if "\x00" in database:
        return "a file name cannot hold a NUL character"
    longest = max((len(part.encode()) for part in Path(database).parts), default=0)
    if longest > NAME_MAX:
        return f"a part of the file name is {longest} bytes long; the file system allows {NAME_MAX}"
    if database.endswith(("/", "\\")):
        return "it names a folder, not a database file"
    return None


def _proxy_problem(parsed: URL, url: str) -> str | None:
    if parsed.host and parsed.port and not parsed.database and not parsed.username:
        return None
    return f"a storage proxy URL is grpc://HOST:PORT, not {mask_password(url)}"


def _driver_problem(parsed: URL, url: str) -> str | None:
    try:
        parsed.get_dialect().import_dbapi()
    except NoSuchModuleError:
        return f"{mask_password(url)}: no such SQLAlchemy driver {parsed.drivername!r}"
    except ImportError as error:
        return f"{mask_password(url)} needs the {error.name} driver; install it"
    return None


def artifact_dir(storage_url: str, study_name: str = "", configured: str = "") -> Path:
    """Where a study's artifacts and checkpoints live: the one rule, for workers, report and dashboard.

    `configured` ([study] artifacts) when set; else ``NAME.artifacts`` beside an SQLite
    ``NAME.db``; else ``artifacts/<study_name>`` (``artifacts`` when no study is named).
    """
    if configured:
        return Path(configured)
    path = sqlite_path(storage_url)
    if path is not None:
        return path.with_name(f"{path.stem}.artifacts")
    return Path("artifacts") / study_name
