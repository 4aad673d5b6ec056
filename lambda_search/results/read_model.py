"""What a finished study holds, read back: its stored config, best trial, control run and trial files.

The report, the export, the dashboard and `status` read studies through here;
nothing in this module writes to the storage or to the artifact store, and
nothing here imports torch.
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
from lambda_search.names import FID, FID_EMA, control_name
from lambda_search.sweep.storage import artifact_dir, storage_of

# A trial in these states is done and counts toward `n_trials`.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# The single run of λ = 0 is one seed, as is each sweep trial: a difference is a hint, not a verdict.
UNCONFIRMED = ("one training run each, unconfirmed: a single seed cannot separate such a difference from noise; "
               "`lambda-search confirm` re-trains both with several seeds")


def stored_config(attrs: dict[str, Any], owner: str) -> StudyConfig:
    """The resolved config a study (or trial) stored in its ``config`` user attr.

    Raises:
        NoResultError: `owner` holds no config (it was not made by lambda-search).
    """
    if "config" not in attrs:
        raise NoResultError(f"{owner} holds no lambda-search config; was it made by `lambda-search run`?")
    return config_from_dict(attrs["config"])


def study_config(study: optuna.Study) -> StudyConfig:
    """The config the study was created with (see `stored_config`)."""
    return stored_config(study.user_attrs, f"study {study.study_name!r}")


def objective_note(config: StudyConfig) -> str:
    """Which FID a study's values are, said where it is not the default live one; empty for `objective = "fid"`."""
    if config.study.objective != FID_EMA:
        return ""
    return (f"every FID of this study is the EMA generator's ({FID_EMA}, decay {config.train.ema:g}, BatchNorm "
            f"statistics recomputed); the live generator's is stored beside it as user attr {FID!r}")


def study_artifact_dir(study: optuna.Study) -> Path:
    """Where the study's workers uploaded their artifacts (what its config implies)."""
    config = study_config(study).study
    return artifact_dir(config.resolved_storage, config.name, config.artifacts)


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
    for meta in get_all_artifact_meta(trial, storage=storage_of(study)):
        if meta.filename == filename:
            try:
                with store.open_reader(meta.artifact_id) as reader:
                    return reader.read()
            except ArtifactNotFound:
                return None
    return None


def parse_curves(data: bytes) -> list[dict[str, float | None]]:
    """Rows of a curves CSV (see `names.CURVE_COLUMNS`); blank cells become None."""
    reader = csv.DictReader(io.StringIO(data.decode()))
    return [{key: float(value) if value else None for key, value in row.items()} for row in reader]


def control_study(study: optuna.Study) -> optuna.Study | None:
    """The companion ``<name>.control`` that holds the study's λ = 0 runs; None before its first."""
    name = control_name(study.study_name)
    storage = storage_of(study)
    return optuna.load_study(study_name=name, storage=storage) if name in optuna.get_all_study_names(storage) else None


def load_control(study: optuna.Study) -> FrozenTrial | None:
    """The control run of a sweep study, from ``<name>.control`` in its storage.

    The COMPLETE run; else a PRUNED one (it diverged); else one running or waiting
    for a retry; else (no companion study, or only failed runs) None.
    """
    control = control_study(study)
    if control is None:
        return None
    trials = control.get_trials(deepcopy=False)
    for states in ((TrialState.COMPLETE,), (TrialState.PRUNED,), (TrialState.RUNNING, TrialState.WAITING)):
        found = [trial for trial in trials if trial.state in states]
        if found:
            return found[-1]
    return None


def control_fid(control: FrozenTrial | None) -> float | None:
    """The control's FID: None unless it completed with a finite value."""
    if control is None or control.state != TrialState.COMPLETE or control.value is None:
        return None
    return control.value if math.isfinite(control.value) else None


def comparison(best_fid: float | None, control: FrozenTrial | None) -> str:
    """One sentence: the control's FID and the best λ's difference to it, never called a win: one seed each."""
    if control is None:
        return "No λ = 0 control ([search] control = false, or the study predates it)"
    fid = control_fid(control)
    if fid is None:
        if control.state == TrialState.PRUNED:
            reason = control.user_attrs.get("prune_reason", "pruned")
            return f"The λ = 0 control did not finish ({reason}): no FID to compare"
        return f"The λ = 0 control is {control.state.name.lower()}: no FID yet"
    if best_fid is None:
        return f"λ = 0 control: FID {fid:.4f}; no λ completed yet"
    gain = fid - best_fid
    if gain == 0:
        return f"The best λ scored the same FID as the λ = 0 control (FID {fid:.4f}); {UNCONFIRMED}"
    side = "lower" if gain > 0 else "higher"
    return f"The best λ scored {abs(gain):.4f} FID {side} than the λ = 0 control (FID {fid:.4f}); {UNCONFIRMED}"
