"""optuna-dashboard on a study storage, with the artifact store its trials uploaded to.

Where the artifacts are: what each study's stored config implies (`storage_url.artifact_dir`:
for SQLite, ``NAME.artifacts`` beside ``NAME.db``; else ``[study] artifacts``). With
`--artifacts DIR`, the folder those directories are mounted in: DIR itself and, for each
study, DIR/<its directory's name>, so ``--artifacts /artifacts`` serves the studies that
write under ``/artifacts/<name>`` (docker compose, k8s). When the studies of one storage put
their artifacts in different directories, the dashboard reads from all of them (artifact
ids are UUIDs, so they cannot clash) and stores uploads made in the dashboard in the first.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from lambda_search.errors import ResourceError, StudyNotFoundError
from lambda_search.names import DASHBOARD_HOST, DASHBOARD_PORT
from lambda_search.records import keys
from lambda_search.records.trials import stored_config
from lambda_search.storage_url import artifact_dir, sqlite_path
from lambda_search.sweep.storage import open_storage

log = logging.getLogger(__name__)


class UnionArtifactStore:
    """An Optuna ArtifactStore over several directories: reads from whichever holds the id."""

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
        self._stores[0].write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        for store in self._stores:
            try:
                store.remove(artifact_id)
                return
            except ArtifactNotFound:
                continue
        raise ArtifactNotFound(f"artifact {artifact_id} is in none of {[str(d) for d in self.directories]}")


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
        ConfigError, StorageError: see `storage.open_storage`.
        ResourceError: the port is busy.
    """
    from optuna_dashboard import run_server

    path = sqlite_path(storage_url)
    if path is not None and not path.exists():
        raise StudyNotFoundError(f"no storage to show: the SQLite file {path} does not exist")
    storage = open_storage(storage_url)
    check_port_free(host, port)
    directories = artifact_dirs(storage, storage_url)
    if artifacts is not None:
        directories = mounted_dirs(artifacts, directories)
    log.info("optuna-dashboard on http://%s:%d/ (artifacts: %s)", host, port,
             ", ".join(str(directory) for directory in directories))
    run_server(storage, host=host, port=port, artifact_store=UnionArtifactStore(directories))
