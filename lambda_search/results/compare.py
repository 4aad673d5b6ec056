"""Several studies of one storage on one page: their FID against λ overlaid, with their controls.

Two steps, as the single-study report: `gather_comparison` reads every study first
(an unknown name, or FIDs of different protocols, fail before anything is written)
into a `Comparison`; `render_comparison` draws it into one offline HTML page.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import optuna

from lambda_search._files import write_atomically
from lambda_search.config import TrainSection
from lambda_search.errors import ConfigError
from lambda_search.names import PARAM
from lambda_search.records import keys
from lambda_search.records.trials import (
    best_trial,
    comparison,
    control_fid,
    finished_trials,
    protocol_differences,
    study_config,
)
from lambda_search.results import figures
from lambda_search.results.html import (
    decay_description,
    decay_setting,
    format_cell,
    page_html,
    settings_html,
    table_html,
)
from lambda_search.results.trial_rows import TrialRow, scored_rows, trial_table
from lambda_search.sweep.companions import load_control
from lambda_search.sweep.storage import load_study

FIGURE_ID = "compare-fid-vs-lambda"


class ComparedStudy(NamedTuple):
    name: str
    train: TrainSection
    # Finished trials with a FID (a pruned one's: its last reported value).
    points: list[TrialRow]
    best_number: int | None
    best_lam: float | None
    best_fid: float | None
    control_fid: float | None
    # `records.trials.comparison`: the control's FID and this study's best λ's difference to it.
    control_comparison: str


class Comparison(NamedTuple):
    studies: list[ComparedStudy]
    # The FID protocol all of them share.
    protocol: dict[str, Any]


def _compared(study: optuna.Study) -> ComparedStudy:
    finished_trials(study)  # a study with nothing finished has nothing to compare: NoResultError
    best = best_trial(study)
    control = load_control(study)
    config = study_config(study)
    return ComparedStudy(
        name=study.study_name,
        train=config.train,
        points=scored_rows(trial_table(study, config.study.objective)),
        best_number=best.number if best else None,
        best_lam=best.params[PARAM] if best else None,
        best_fid=best.value if best else None,
        control_fid=control_fid(control),
        control_comparison=comparison(best.value if best else None, control),
    )


def gather_comparison(storage_url: str, names: Sequence[str]) -> Comparison:
    """The studies `names` of one storage, read for the comparison page.

    Raises:
        ConfigError: fewer than two names, a name given twice, or studies whose FID
            protocols differ (their FIDs do not compare).
        StudyNotFoundError: a name is not a study of the storage.
        NoResultError: a study has no finished trial.
    """
    if len(names) < 2:
        raise ConfigError(f"report --compare needs two or more study names, got {len(names)}: {', '.join(names)}")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ConfigError(f"report --compare names {', '.join(map(repr, repeated))} more than once")
    studies = [load_study(storage_url, name) for name in names]
    first = studies[0]
    protocol = dict(first.user_attrs.get(keys.FID_PROTOCOL, {}))
    for study in studies[1:]:
        other = dict(study.user_attrs.get(keys.FID_PROTOCOL, {}))
        differing = protocol_differences(protocol, other)
        if differing:
            raise ConfigError(f"studies {first.study_name!r} and {study.study_name!r} score FID with different "
                              f"protocols (they differ in {', '.join(differing)}): their FIDs do not compare")
    return Comparison([_compared(study) for study in studies], protocol)


def _table_html(data: Comparison) -> str:
    head = ("study", "apply_to", "decay_mode", "penalize", "steps", "finished", "best λ", "best FID",
            "λ = 0 control FID")
    rows = [((study.name, study.train.apply_to, study.train.decay_mode, study.train.penalize,
              str(study.train.steps), str(len(study.points)), format_cell(study.best_lam, ".4g"),
              format_cell(study.best_fid, ".4f"), format_cell(study.control_fid, ".4f")), False)
            for study in data.studies]
    return table_html(head, rows, numeric=(False,) * 4 + (True,) * 5)


def _verdicts_html(data: Comparison) -> str:
    items = "".join(
        f"<li><b>{html.escape(study.name)}</b> ({html.escape(decay_setting(study.train))}: "
        f"{html.escape(decay_description(study.train))}). {html.escape(study.control_comparison)}.</li>"
        for study in data.studies)
    return f"<ul>{items}</ul>"


def render_comparison(data: Comparison) -> str:
    """The comparison as one HTML page with plotly.js inlined."""
    figure = figures.compare_fid_against_lambda(data)
    plot = figure.to_html(full_html=False, include_plotlyjs=True, div_id=FIGURE_ID)
    return page_html(
        f"lambda-search: {', '.join(study.name for study in data.studies)} compared",
        _table_html(data), _verdicts_html(data), plot,
        "<h2>How FID was measured (the same for every study here)</h2>", settings_html("FID protocol", data.protocol),
    )


def write_comparison(storage_url: str, names: Sequence[str], path: Path) -> Comparison:
    """Gather, draw and write the comparison of `names` to `path` (atomically; nothing on any error).

    Raises:
        See `gather_comparison`.
    """
    data = gather_comparison(storage_url, names)
    page = render_comparison(data)
    write_atomically(path, lambda stream: stream.write(page.encode("utf-8")))
    return data
