"""What a finished study holds, read back: its stored config, artifact store, and trial files.

The report, the export and the dashboard read studies through here; nothing in
this module writes to the storage or to the artifact store.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from lambda_search.config import StudyConfig, config_from_dict
from lambda_search.errors import NoResultError
from lambda_search.sweep.study import artifact_dir

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def stored_config(attrs: dict[str, Any], owner: str) -> StudyConfig:
    """The resolved config a study (or trial) stored in its ``config`` user attr.

    Raises:
        NoResultError: `owner` holds no config (it was not made by lambda-search).
    """
    if "config" not in attrs:
        raise NoResultError(f"{owner} holds no lambda-search config; was it made by `lambda-search run`?")
    return config_from_dict(attrs["config"])


def default_artifact_dir(study: optuna.Study) -> Path:
    """Where the study's workers uploaded their artifacts (what its config implies)."""
    return artifact_dir(stored_config(study.user_attrs, f"study {study.study_name!r}"))


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE and PRUNED trials, in trial order.

    Raises:
        NoResultError: there is none yet.
    """
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    if not trials:
        raise NoResultError(
            f"study {study.study_name!r} has no finished trial yet; run `lambda-search run` first"
        )
    return trials


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The COMPLETE trial with the lowest FID, or None when no trial completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda trial: math.inf if trial.value is None else trial.value, default=None)


def read_artifact(study: optuna.Study, trial: FrozenTrial, store: FileSystemArtifactStore,
                  filename: str) -> bytes | None:
    """The bytes of the trial's artifact named `filename`, or None when it has none (or it is gone)."""
    for meta in get_all_artifact_meta(trial, storage=study._storage):
        if meta.filename == filename:
            try:
                with store.open_reader(meta.artifact_id) as reader:
                    return reader.read()
            except ArtifactNotFound:
                return None
    return None


def parse_curves(data: bytes) -> list[dict[str, float | None]]:
    """Rows of a curves CSV (see `checkpoints.CURVE_COLUMNS`); blank cells become None."""
    reader = csv.DictReader(io.StringIO(data.decode()))
    return [{key: float(value) if value else None for key, value in row.items()} for row in reader]
