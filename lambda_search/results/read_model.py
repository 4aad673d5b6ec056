"""A study's trial files read back from its artifact store; nothing here writes. No torch.

The typed read model of the stored trials themselves is `records.trials`.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from lambda_search.records.trials import study_config
from lambda_search.storage_url import artifact_dir
from lambda_search.sweep.storage import storage_of


def study_artifact_dir(study: optuna.Study) -> Path:
    """Where the study's workers uploaded their artifacts (what its config implies)."""
    config = study_config(study).study
    return artifact_dir(config.resolved_storage, config.name, config.artifacts)


def read_artifact(study: optuna.Study, trial: FrozenTrial, store: FileSystemArtifactStore,
                  filename: str) -> bytes | None:
    """The bytes of the trial's artifact named `filename`, or None when it has none (or it is gone)."""
    for meta in get_all_artifact_meta(trial, storage=storage_of(study)):
        if meta.filename == filename:
            try:
                with store.open_reader(meta.artifact_id) as reader:
                    return reader.read()
            except ArtifactNotFound:
                return None
    return None
