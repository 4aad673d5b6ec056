"""A study's trials as rows (small NamedTuples): what `status` lists, and the report and the comparison table and plot.

Each row's KID is of the generator the study judges where the trial stored it
(`records.trials.judged_kid`); `kid_generators` says which generator(s) the rows' KIDs are of,
so that no page shows the live generator's KID as the EMA generator's. No torch.
"""

from __future__ import annotations

from typing import NamedTuple

import optuna
from optuna.trial import TrialState

from lambda_search.config import StudyConfig
from lambda_search.names import GENERATOR_NAMES, PARAM
from lambda_search.records import keys
from lambda_search.records.trials import TrialKid, judged_generator, judged_kid
from lambda_search.sweep.identity import worker_label


class TrialRow(NamedTuple):
    number: int
    state: str
    lam: float | None
    fid: float | None
    steps: int | None
    seconds: float | None
    # KID at the final evaluation, of the generator the study judges where stored (`judged_kid`): COMPLETE trials only.
    kid: TrialKid | None = None
    # Who trained it (`sweep.identity.worker_label`): host:pid, SLURM task or pod.
    worker: str = "-"
    # A race's run: the seed it trained with and its role ("search" or "verdict"); None in a sweep.
    seed: int | None = None
    role: str | None = None


def trial_table(study: optuna.Study, objective: str) -> list[TrialRow]:
    """One row per trial, in trial order (FID of a pruned trial: its last reported value; KID: `objective`'s)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        fid = trial.value
        if fid is None and trial.intermediate_values and trial.state == TrialState.PRUNED:
            fid = trial.intermediate_values[max(trial.intermediate_values)]
        seconds = trial.duration.total_seconds() if trial.duration else None
        attrs = trial.user_attrs
        rows.append(TrialRow(trial.number, trial.state.name, trial.params.get(PARAM), fid,
                             attrs.get(keys.STEPS), seconds, judged_kid(attrs, objective),
                             worker_label(attrs.get(keys.WORKER_IDENTITY)), attrs.get(keys.SEED), attrs.get(keys.ROLE)))
    return rows


def scored_rows(table: list[TrialRow]) -> list[TrialRow]:
    """The finished rows with a FID: what the λ–FID figures plot (a pruned trial at its last report)."""
    return [row for row in table if row.state in ("COMPLETE", "PRUNED") and row.fid is not None]


def kid_generators(config: StudyConfig, rows: list[TrialRow]) -> list[str]:
    """The generators the rows' KIDs are of, sorted (`names.GENERATOR_NAMES`' keys); empty without `[train] ema`.

    The one the study judges, unless trials stored before the EMA generator's KID was measured
    hold the live one's in its place: then the live one, or both.
    """
    if not config.train.ema:
        return []  # one generator: nothing to tell apart
    return sorted({row.kid.generator for row in rows if row.kid is not None} or {judged_generator(config)})


def of_generators(generators: list[str]) -> str:
    """`kid_generators` in words, to follow "KID": " of the EMA generator", " of the EMA generator or the live
    generator"; empty for none."""
    return "".join(f" {'or' if index else 'of'} the {GENERATOR_NAMES[generator]}"
                   for index, generator in enumerate(generators))
