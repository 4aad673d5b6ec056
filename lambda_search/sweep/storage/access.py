"""Optuna's private attributes of a study and a trial, read in one place; the Optuna versions they hold for."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

# Optuna versions this adapter was written and tested for (major.minor, lowest and first excluded);
# pyproject.toml pins the same range and tests/test_storage.py checks the installed version is in it.
SUPPORTED_OPTUNA = ((4, 9), (6, 0))


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage an open study reads and writes through."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The study's row id in the storage."""
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's row id in the storage (what heartbeats and `get_trial` take): unique across its studies."""
    return trial._trial_id


def frozen(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The stored FrozenTrial of a live trial (its system attrs: a live Trial has none in Optuna 5)."""
    return study._storage.get_trial(trial._trial_id)


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    # Heartbeat and retry are "experimental" since Optuna 2.8 and stable in use; one
    # warning per worker and per trial would bury the log lines that matter.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def retry_callback(max_retries: int) -> RetryHeartbeatStaleTrialCallback:
    """Optuna's retry of a stale trial: same λ, its intermediate values, at most `max_retries` times."""
    with quiet_experimental():
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retries, inherit_intermediate_values=True)


def retried_trial_number(trial: FrozenTrial) -> int | None:
    """The original trial a retry re-runs (None for a first run).

    Takes the FrozenTrial: in Optuna 5 a live Trial has no ``system_attrs``.
    """
    with quiet_experimental():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
