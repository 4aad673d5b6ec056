"""Study results as data (small NamedTuples) and, from them, tables, figures and one HTML report.

Two steps, as Optuna's plots do: `gather_report` reads the study and its
artifacts into a `ReportData`; `render_report` draws it (see `figures`)
into one self-contained page with plotly.js inlined, so it opens offline.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, NamedTuple

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial, TrialState

from lambda_search._files import write_atomically
from lambda_search.config import StudyConfig
from lambda_search.names import CURVES_FILE, GENERATOR_NAMES, PARAM, SAMPLES_FILE, control_name
from lambda_search.records import keys
from lambda_search.records.confirmation import Confirmation, LambdaResult, verdict
from lambda_search.records.trials import (
    best_trial,
    comparison,
    control_fid,
    finished_trials,
    objective_note,
    parse_curves,
    study_config,
)
from lambda_search.results import figures
from lambda_search.results.confirmation import load_confirmation
from lambda_search.results.html import (
    decay_description,
    decay_setting,
    format_cell,
    page_html,
    section_html,
    settings_html,
    table_html,
)
from lambda_search.results.read_model import read_artifact, study_artifact_dir
from lambda_search.results.trial_rows import TrialRow, kid_generators, of_generators, scored_rows, trial_table
from lambda_search.sweep.companions import load_control
from lambda_search.sweep.race.rule import SEARCH, VERDICT, RaceSummary
from lambda_search.sweep.race.runs import is_race, race_summary
from lambda_search.sweep.storage import storage_of

CONTROL_LABEL = "λ = 0 control"


class FidCurve(NamedTuple):
    number: int
    lam: float
    steps: list[int]
    fids: list[float]


class LossCurve(NamedTuple):
    label: str
    number: int
    lam: float
    steps: list[float]
    generator: list[float]
    discriminator: list[float]


class SampleGrid(NamedTuple):
    label: str
    number: int
    lam: float
    png: bytes | None


class HistoryPoint(NamedTuple):
    """A COMPLETE trial's FID, in trial order: what the optimization history plots (a race's search runs only)."""

    number: int
    fid: float


class ControlRun(NamedTuple):
    """The study's λ = 0 control run (`sweep.companions.load_control`), as the report shows it."""

    study: str
    number: int
    state: str
    fid: float | None
    png: bytes | None


class ReportData(NamedTuple):
    study_name: str
    best_number: int | None
    best_fid: float | None
    points: list[TrialRow]
    fid_curves: list[FidCurve]
    losses: list[LossCurve]
    grids: list[SampleGrid]
    table: list[TrialRow]
    protocol: dict[str, Any]
    config: StudyConfig
    # None when the study has no control run ([search] control = false, or made before controls).
    control: ControlRun | None
    # One sentence: the control's FID and the best λ's difference to it (`records.trials.comparison`).
    control_comparison: str
    history: list[HistoryPoint]
    # Of the trials' KIDs; None when no trial stored one (a study from before KID).
    kid_protocol: dict[str, Any] | None = None
    # The paired-seed runs of `lambda-search confirm` (<name>.confirm); None until it has run.
    confirmation: Confirmation | None = None
    # A race's search and verdict (strategy = "race"); None for a sweep.
    race: RaceSummary | None = None


def featured_trials(trials: list[FrozenTrial], best: FrozenTrial | None) -> list[tuple[str, FrozenTrial]]:
    """The trials the report shows in detail: the best, the lowest λ and the highest λ (no repeats)."""
    by_lambda = sorted(trials, key=lambda trial: trial.params[PARAM])
    candidates = [("best", best), ("lowest λ", by_lambda[0]), ("highest λ", by_lambda[-1])]
    featured: list[tuple[str, FrozenTrial]] = []
    for label, trial in candidates:
        if trial is not None and all(trial.number != chosen.number for _, chosen in featured):
            featured.append((label, trial))
    return featured


def _loss_curve(label: str, trial: FrozenTrial, curves: bytes | None) -> LossCurve | None:
    if curves is None:
        return None
    rows = [row for row in parse_curves(curves) if row["generator_loss"] is not None]
    return LossCurve(label, trial.number, trial.params[PARAM], [float(row["step"] or 0) for row in rows],
                     [float(row["generator_loss"] or 0) for row in rows],
                     [float(row["discriminator_loss"] or 0) for row in rows])


def gather_report(study: optuna.Study, store: FileSystemArtifactStore) -> ReportData:
    """Everything the report shows, read from the study and its artifact store.

    Raises:
        NoResultError: the study has no finished (COMPLETE or PRUNED) trial.
    """
    trials = finished_trials(study)
    race = race_summary(study) if is_race(study) else None
    # A race's verdict runs are on other seeds than its search: its best is the search run of the λ it kept.
    best = best_trial(study) if race is None else _kept_trial(trials, race)
    config = study_config(study)
    table = trial_table(study, config.study.objective)
    featured = featured_trials(trials, best)
    # A race's λ = 0 runs are many, each on its seed: its verdict replaces the single control's sentence.
    control = None if race is not None else load_control(study)
    # The control's losses beside the featured trials': same seed and batches, no decay.
    shown = featured + ([(CONTROL_LABEL, control)] if control is not None and control.state.is_finished() else [])
    losses = [_loss_curve(label, trial, read_artifact(study, trial, store, CURVES_FILE)) for label, trial in shown]
    return ReportData(
        study_name=study.study_name,
        best_number=best.number if best else None,
        best_fid=best.value if best else None,
        points=[row for row in scored_rows(table) if row.role != VERDICT],
        fid_curves=[FidCurve(trial.number, trial.params[PARAM], sorted(trial.intermediate_values),
                             [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)])
                    for trial in trials if trial.intermediate_values],
        losses=[curve for curve in losses if curve is not None],
        grids=[SampleGrid(label, trial.number, trial.params[PARAM], read_artifact(study, trial, store, SAMPLES_FILE))
               for label, trial in featured],
        table=table,
        protocol=dict(study.user_attrs.get(keys.FID_PROTOCOL, {})),
        config=config,
        kid_protocol=next((trial.user_attrs[keys.KID_PROTOCOL] for trial in trials
                           if keys.KID_PROTOCOL in trial.user_attrs), None),
        control=None if control is None else ControlRun(
            control_name(study.study_name), control.number, control.state.name, control_fid(control),
            read_artifact(study, control, store, SAMPLES_FILE)),
        control_comparison=race.verdict_text if race is not None else comparison(best.value if best else None, control),
        # A race's verdict runs are on fresh seeds, not the search's: in its history they would be a "best so far".
        history=[HistoryPoint(trial.number, trial.value) for trial in trials
                 if trial.state == TrialState.COMPLETE and trial.value is not None
                 and trial.user_attrs.get(keys.ROLE) != VERDICT],
        confirmation=load_confirmation(storage_of(study), study.study_name),
        race=race,
    )


FIGURE_IDS = ("fid-vs-lambda", "kid-vs-lambda", "optimization-history", "fid-curves", "loss-curves")
CONFIRMATION_ID = "confirmation"
RACE_ID = "race"

def _kid(row: TrialRow, named: bool) -> str:
    # '.4g': LeNet KIDs run in the hundreds, Inception KIDs in the thousandths.
    if row.kid is None:
        return "–"
    generator = f" ({GENERATOR_NAMES[row.kid.generator]})" if named else ""
    return f"{row.kid.value:.4g} ± {format_cell(row.kid.std, '.2g')}{generator}"


def _table_html(data: ReportData) -> str:
    # Each KID's generator is named in its cell where the heading names two (`trial_rows.kid_generators`).
    generators = kid_generators(data.config, data.table)
    head = ("trial", "state", "λ", "FID", f"KID{of_generators(generators)} (± sd over subsets)", "steps", "seconds")
    rows = [((str(row.number), row.state, format_cell(row.lam, ".4g"), format_cell(row.fid, ".4f"),
              _kid(row, len(generators) > 1), format_cell(row.steps, "d"), format_cell(row.seconds, ".1f")),
             row.number == data.best_number) for row in data.table]
    return table_html(head, rows, numeric=(True, False, True, True, True, True, True))


def _grids_html(data: ReportData) -> str:
    shown = [(f"{grid.label}: trial {grid.number}, λ = {grid.lam:.3g}", grid.png) for grid in data.grids]
    if data.control is not None:
        shown.append((f"{CONTROL_LABEL} (study {data.control.study}), same seed", data.control.png))
    cells = []
    for text, png in shown:
        caption = html.escape(text)
        if png is None:
            body = "<p>(no sample grid stored for this run)</p>"
        else:
            body = f'<img alt="{caption}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        cells.append(f"<figure>{body}<figcaption>{caption}</figcaption></figure>")
    return f'<div class="grids">{"".join(cells)}</div>'


def _kept_trial(trials: list[FrozenTrial], race: RaceSummary) -> FrozenTrial | None:
    kept = race.path[-1] if race.path else None
    return next((trial for trial in trials
                 if trial.params[PARAM] == kept and trial.user_attrs.get(keys.ROLE) == SEARCH),
                None)


def _summary(data: ReportData) -> str:
    note = objective_note(data.config)
    return f"{_best_summary(data)} {note[0].upper()}{note[1:]}." if note else _best_summary(data)


def _best_summary(data: ReportData) -> str:
    if data.best_number is None:
        return f"No trial completed yet (pruned ones only). {data.control_comparison}."
    best = next(row for row in data.table if row.number == data.best_number)
    if data.race is not None:
        return (f"Kept by the race: trial {best.number}, λ = {best.lam:.4g}, FID = {data.best_fid:.4f} on the search "
                f"seed, out of {len(data.points)} search run(s) of λ > 0.")
    return (f"Best: trial {best.number}, λ = {best.lam:.4g}, FID = {data.best_fid:.4f}, "
            f"out of {len(data.points)} finished trial(s). {data.control_comparison}.")


def _decay_html(data: ReportData) -> str:
    train = data.config.train
    return (f"<p class=decay><b>{html.escape(decay_setting(train))}</b>: "
            f"{html.escape(decay_description(train))}.</p>")


def _interval(low: float, high: float) -> str:
    return f"[{low:.4f}, {high:.4f}]"


def _p(raw: float, holm: float) -> str:
    return f"{raw:.3g} ({holm:.3g})"


def _confirmation_cells(result: LambdaResult) -> tuple[str, ...]:
    test = result.test
    return (
        "0 (control)" if result.lam == 0 else f"{result.lam:.4g}",
        f"{result.interval.mean:.4f}", _interval(result.interval.low, result.interval.high),
        str(len(result.fids)), str(result.diverged),
        "–" if test is None else f"{test.difference.mean:+.4f}",
        "–" if test is None else _interval(test.difference.low, test.difference.high),
        "–" if test is None else _p(test.wilcoxon_p, test.wilcoxon_p_holm),
        "–" if test is None else _p(test.t_p, test.t_p_holm),
        " ".join("diverged" if math.isinf(fid) else f"{fid:.2f}" for _, fid in sorted(result.fids.items())),
    )


def _confirmation_html(confirmation: Confirmation, figure: str) -> str:
    seeds = ", ".join(str(seed) for seed in confirmation.seeds)
    level = next((f"{result.test.confidence:.1%}" for result in confirmation.candidates if result.test), "–")
    head = ("λ", "mean FID", "95% CI", "n", "diverged", "minus λ = 0 (paired)", f"{level} CI (simultaneous)",
            "exact Wilcoxon p (Holm)", "paired t p (Holm)", f"FID per seed ({seeds})")
    best = confirmation.best
    rows = [(_confirmation_cells(result), result.lam == best.lam)
            for result in (confirmation.control, *confirmation.candidates)]
    ignored = (f" {confirmation.ignored} stored run(s) with the selection seed {confirmation.selection_seed} "
               "(from a confirmation made before the seeds excluded it) are left out." if confirmation.ignored else "")
    return (f"<h2>Confirmation: the top λ and λ = 0, re-trained with the same fresh seeds</h2>"
            f"<p class=verdict><b>{html.escape(verdict(confirmation))}</b>.</p>"
            f"<p>Seeds {html.escape(seeds)}, never the seed {confirmation.selection_seed} the sweep chose its λ with. "
            f"m = {confirmation.m} λ tested against λ = 0; “beyond noise” by the rule the race uses too: the "
            "simultaneous t interval (Bonferroni over m) excludes 0. p-values are two-sided, Holm-adjusted over m; the "
            "exact Wilcoxon is a second look, not the rule. A diverged run counts as a loss: the Wilcoxon ranks it "
            "above every finished "
            f"run, means and t take the worst finished FID ({confirmation.worst:.4f}) in its place.{ignored}</p>"
            f"{figure}{table_html(head, rows, numeric=(True,) * len(head))}")


def _race_html(race: RaceSummary, figure: str) -> str:
    head = ("λ", "FID", "fitted FID", "± sd")
    rows = [((f"{lam:.4g}", f"{fid:.4f}", f"{mean:.4f}", f"{sd:.4f}"), bool(race.path) and lam == race.path[-1])
            for lam, fid, mean, sd in sorted(race.runs)]
    path = " → ".join(f"{lam:.4g}" for lam in race.path)
    control = f"{race.control_fid:.4f}" if race.control_fid is not None else "not yet"
    verdict = ""
    if race.verdict is not None:
        result = race.verdict
        verdict = table_html(("fresh seed", f"λ = {result.lam:.4g}", "λ = 0", "difference"), [
            ((str(seed), f"{fid:.4f}", f"{control_fid:.4f}", f"{fid - control_fid:+.4f}"), False)
            for seed, fid, control_fid in zip(result.verdict_seeds, result.fids, result.control_fids, strict=True)],
            numeric=(True,) * 4)
    return (f"<h2>The race: λ on one shared seed, then a verdict on fresh seeds</h2>"
            f"<p class=verdict><b>{html.escape(race.verdict_text)}</b>.</p>"
            f"<p>Search: every λ ran once, all on seed {race.search_seed}, so the seed's effect is the same in "
            f"every comparison; λ = 0 on that seed scored {control}. The incumbent is the λ tried with the lowest "
            "FID on a Gaussian-process curve fitted through the runs (it averages each run's noise with its "
            f"neighbours'); in turn: {html.escape(path)}. The search picks; only the verdict's fresh seeds, never "
            "used to pick, judge: its line is their paired t interval, exact Wilcoxon p and the effect they could have "
            "detected with 80% power.</p>"
            f"{figure}{verdict}{table_html(head, rows, numeric=(True,) * len(head))}")


def render_report(data: ReportData) -> str:
    """The report as one HTML page, drawn from `data` only; plotly.js is inlined once, with the first figure."""
    # A race's section comes first, so its figure carries plotly.js.
    race = "" if data.race is None else _race_html(data.race, figures.race(data.race).to_html(
        full_html=False, include_plotlyjs=True, div_id=RACE_ID))
    drawn = (figures.fid_against_lambda(data), figures.kid_against_lambda(data),
             figures.optimization_history(data),
             figures.fid_curves(data), figures.loss_curves(data))
    plots = [figure.to_html(full_html=False, include_plotlyjs=index == 0 and not race, div_id=div_id)
             for index, (figure, div_id) in enumerate(zip(drawn, FIGURE_IDS, strict=True))]
    confirmation = "" if data.confirmation is None else _confirmation_html(
        data.confirmation, figures.confirmation(data.confirmation).to_html(
            full_html=False, include_plotlyjs=False, div_id=CONFIRMATION_ID))
    return page_html(
        f"lambda-search: study {data.study_name}",
        f"{_decay_html(data)}<p class=lead>{html.escape(_summary(data))}</p>",
        # FID and KID against λ side by side: two measures of the same generators.
        race,
        f"<div class=pair><div>{plots[0]}</div><div>{plots[1]}</div></div>", confirmation, *plots[2:],
        "<h2>Generated samples</h2>", _grids_html(data),
        "<h2>All trials</h2>", _table_html(data),
        "<h2>How FID was measured</h2>", settings_html("FID protocol", data.protocol),
        settings_html("KID protocol (same feature network)", data.kid_protocol) if data.kid_protocol else "",
        section_html("Training", data.config.train), section_html("Search", data.config.search),
        section_html("Data", data.config.data), section_html("Model", data.config.model),
    )


def write_report(study: optuna.Study, path: Path, artifact_dir: Path | None = None) -> ReportData:
    """Gather, draw and write the study's report to `path` (atomically).

    Args:
        artifact_dir: the study's artifact store; None means the one its config implies.

    Raises:
        NoResultError: the study has no finished trial.
    """
    store = FileSystemArtifactStore(str(artifact_dir or study_artifact_dir(study)))
    data = gather_report(study, store)
    page = render_report(data)
    write_atomically(path, lambda stream: stream.write(page.encode("utf-8")))
    return data
