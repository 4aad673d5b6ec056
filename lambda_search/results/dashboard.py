"""optuna-dashboard on a study storage, with the artifact store its trials uploaded to.

Where the artifacts are: what each study's stored config implies (`storage_url.artifact_dir`:
for SQLite, ``NAME.artifacts`` beside ``NAME.db``; else ``[study] artifacts``). With
`--artifacts DIR`, the folder those directories are mounted in: DIR itself and, for each
study, DIR/<its directory's name>, so ``--artifacts /artifacts`` serves the studies that
write under ``/artifacts/<name>`` (docker compose, k8s). When the studies of one storage put
their artifacts in different directories, the dashboard reads from all of them (artifact
ids are UUIDs, so they cannot clash).

Read-only, as every read command: the storage is opened read-only (`sweep.storage.read_only`: no
tables created, no lock file, a read-only file in a read-only folder serves), and every
request that would write (optuna-dashboard's notes, renames, deletions, uploads, "tell")
is refused with 403 and a reason before it reaches the storage or the artifacts.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO
from wsgiref.simple_server import WSGIServer, make_server

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from lambda_search.errors import Interrupted, ResourceError, StudyNotFoundError
from lambda_search.names import DASHBOARD_HOST, DASHBOARD_PORT
from lambda_search.records import keys
from lambda_search.records.trials import stored_config
from lambda_search.storage_url import artifact_dir, sqlite_file_problem
from lambda_search.sweep.storage.read_only import open_read_only

log = logging.getLogger(__name__)


READ_ONLY_REASON = "lambda-search dashboard is read-only: it never writes to the storage or the artifacts"
# The methods a read-only dashboard serves; any other is a write.
READING = frozenset({"GET", "HEAD"})


class UnionArtifactStore:
    """An Optuna ArtifactStore over several directories: reads from whichever holds the id; never writes."""

    def __init__(self, directories: Sequence[Path]) -> None:
        self.directories = list(directories)
        self._stores = [FileSystemArtifactStore(str(directory)) for directory in self.directories]

    def open_reader(self, artifact_id: str) -> BinaryIO:
        for store in self._stores:
            try:
                return store.open_reader(artifact_id)
            except ArtifactNotFound:
                continue
        raise ArtifactNotFound(f"artifact {artifact_id} is in none of {[str(d) for d in self.directories]}")

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        raise PermissionError(READ_ONLY_REASON)

    def remove(self, artifact_id: str) -> None:
        raise PermissionError(READ_ONLY_REASON)


def artifact_dirs(storage: optuna.storages.BaseStorage, storage_url: str) -> list[Path]:
    """The artifact directories the storage's studies use, in study order, without repeats.

    A storage whose studies hold no lambda-search config falls back to `storage_url.artifact_dir`
    with no study named: ``NAME.artifacts`` beside an SQLite ``NAME.db``, else ``./artifacts``.
    """
    directories: list[Path] = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if keys.CONFIG in summary.user_attrs:
            study = stored_config(summary.user_attrs, f"study {summary.study_name!r}").study
            directory = artifact_dir(study.resolved_storage, study.name, study.artifacts)
            if directory not in directories:
                directories.append(directory)
    return directories or [artifact_dir(storage_url)]


def mounted_dirs(mount: Path, directories: Sequence[Path]) -> list[Path]:
    """`mount` and, under it, a folder named as each of the studies' artifact `directories`, without repeats."""
    found = [mount]
    for directory in directories:
        if mount / directory.name not in found:
            found.append(mount / directory.name)
    return found


def check_port_free(host: str, port: int) -> None:
    """Bind the address once and let it go: a busy port fails here, before the server starts.

    Raises:
        ResourceError: the address cannot be bound (in use, or not this machine's).
    """
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise ResourceError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def serve(storage_url: str, host: str = DASHBOARD_HOST, port: int = DASHBOARD_PORT,
          artifacts: Path | None = None) -> None:
    """Run optuna-dashboard until interrupted (blocks).

    Raises:
        StudyNotFoundError: an SQLite storage file that does not exist.
        ConfigError, StorageError: see `read_only.open_read_only` (a database without Optuna's tables is refused).
        ResourceError: the port is busy.
    """
    from optuna_dashboard import wsgi

    if (problem := sqlite_file_problem(storage_url)) is not None:
        raise StudyNotFoundError(f"no storage to show: {problem}")
    storage = open_read_only(storage_url)
    check_port_free(host, port)
    directories = artifact_dirs(storage, storage_url)
    if artifacts is not None:
        directories = mounted_dirs(artifacts, directories)
    log.info("optuna-dashboard on http://%s:%d/, read-only (artifacts: %s)", host, port,
             ", ".join(str(directory) for directory in directories))
    app = read_only(wsgi(storage, artifact_store=UnionArtifactStore(directories)))
    with make_server(host, port, app) as server:
        _serve_until_signalled(server)


def _serve_until_signalled(server: WSGIServer) -> None:
    """`serve_forever` until SIGINT/SIGTERM, which then stop it between requests.

    Raising from the signal handler (the CLI's way) can land inside a request, where wsgiref's
    error handling swallows it and the server goes on serving.

    Raises:
        Interrupted: after the server stopped on a signal.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
        server.serve_forever()
        return
    received: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        threading.Thread(target=server.shutdown, daemon=True).start()  # it waits for serve_forever's loop

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise Interrupted(received[0])


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def read_only(app: WsgiApp) -> WsgiApp:
    """`app` with every request but a read (`READING`) refused: 403 and optuna-dashboard's ``reason`` JSON."""
    def refuse_writes(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] in READING:
            return app(environ, start_response)
        body = json.dumps({"reason": READ_ONLY_REASON}).encode()
        start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    return refuse_writes
