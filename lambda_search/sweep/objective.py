"""Every study lambda-search makes: one objective, an FID, minimized, and named so (the dashboard shows the name)."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.storages import BaseStorage

from lambda_search.names import FID, OBJECTIVE_NAMES


def create_study(name: str, storage: BaseStorage, objective: str = FID, **options: Any) -> optuna.Study:
    """`optuna.create_study` (joining an existing study), minimizing `objective` ([study] objective), named.

    The name is a study system attribute, so it reaches the dashboard through any storage,
    the gRPC proxy included; a study made before it was named is named by its next worker.
    """
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True,
                                **options)
    label = OBJECTIVE_NAMES[objective]
    if study.metric_names != [label]:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([label])
    return study


def search_distribution(lambda_low: float, lambda_high: float) -> FloatDistribution:
    """The distribution of a sweep's λ: log-uniform on [lambda_low, lambda_high]."""
    return FloatDistribution(lambda_low, lambda_high, log=True)


def distribution_with_zero(lambda_high: float) -> FloatDistribution:
    """λ from 0 to `lambda_high`, not log-scaled, so λ = 0 is representable: the control's and `confirm`'s."""
    return FloatDistribution(0.0, lambda_high)
