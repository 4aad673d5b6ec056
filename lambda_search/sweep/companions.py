"""A study's companion studies, opened from the study's own storage: its ``<name>.control``. No torch.

The sweep, `status`, the report and the export find a study's λ = 0 run through here.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from lambda_search.names import control_name
from lambda_search.records.trials import control_run
from lambda_search.sweep.storage import storage_of


def control_study(study: optuna.Study) -> optuna.Study | None:
    """The companion ``<name>.control`` that holds the study's λ = 0 runs; None before its first."""
    name = control_name(study.study_name)
    storage = storage_of(study)
    return optuna.load_study(study_name=name, storage=storage) if name in optuna.get_all_study_names(storage) else None


def load_control(study: optuna.Study) -> FrozenTrial | None:
    """The control run of a sweep study, from ``<name>.control`` in its storage (see `records.trials.control_run`)."""
    return control_run(control_study(study))
