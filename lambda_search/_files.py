"""Atomic file writes and the on-disk cache location."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from lambda_search.errors import ConfigError, ResourceError


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a file through `write`, then rename it into place: readers never see half a file.

    Raises:
        ConfigError: `path` is a folder.
    """
    if path.is_dir():
        raise ConfigError(f"{path} is a folder: give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp makes the file 0600; give it the mode a plain open() would have.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def make_writable_dir(directory: Path, what: str) -> Path:
    """Create `directory` and prove it writable (a probe file written and removed), before any work.

    Raises:
        ResourceError: the folder cannot be made, or a file cannot be written in it; `what` names it.
    """
    probe = directory / f".lambda-search-probe-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as error:
        raise ResourceError(f"{what} {directory} is not writable: {error.strerror or error}") from None
    return directory


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def cache_dir() -> Path:
    """Where trained feature networks and real-image statistics are cached.

    ``$LAMBDA_SEARCH_CACHE``, else ``$XDG_CACHE_HOME/lambda-search``, else ``~/.cache/lambda-search``.
    """
    if explicit := os.environ.get("LAMBDA_SEARCH_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lambda-search"
