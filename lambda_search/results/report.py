"""Study results as data (small NamedTuples) and, from them, tables, figures and one HTML report.

Two steps, as Optuna's plots do: `gather_report` reads the study and its
artifacts into a `ReportData`; `render_report` draws it (see `figures`)
into one self-contained page with plotly.js inlined, so it opens offline.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial

from lambda_search._files import write_atomically
from lambda_search.gan.checkpoints import CURVES_FILE, SAMPLES_FILE
from lambda_search.results import figures
from lambda_search.results.read_model import (
    best_trial,
    default_artifact_dir,
    finished_trials,
    parse_curves,
    read_artifact,
    stored_config,
)
from lambda_search.sweep.confirm import Confirmation, LambdaResult, load_confirmation, verdict
from lambda_search.sweep.control import comparison, control_fid, control_name, load_control
from lambda_search.sweep.identity import worker_label
from lambda_search.sweep.study import PARAM

CONTROL_LABEL = "λ = 0 control"
_NETWORKS = {"generator": "generator", "discriminator": "discriminator", "both": "generator and discriminator"}


class TrialRow(NamedTuple):
    number: int
    state: str
    lam: float | None
    fid: float | None
    steps: int | None
    seconds: float | None
    # KID at the final evaluation (mean and spread over its subsets): COMPLETE trials only.
    kid: float | None = None
    kid_std: float | None = None
    # Who trained it (`sweep.identity.worker_label`): host:pid, SLURM task or pod.
    worker: str = "-"


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


class ControlRun(NamedTuple):
    """The study's λ = 0 control run (`control.load_control`), as the report shows it."""

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
    config: dict[str, dict[str, Any]]
    # None when the study has no control run ([search] control = false, or made before controls).
    control: ControlRun | None
    # One sentence: the control's FID and whether the best λ beats it (`control.comparison`).
    control_comparison: str
    # Of the trials' KIDs; None when no trial stored one (a study from before KID).
    kid_protocol: dict[str, Any] | None = None
    # The paired-seed runs of `lambda-search confirm` (<name>.confirm); None until it has run.
    confirmation: Confirmation | None = None


def trial_table(study: optuna.Study) -> list[TrialRow]:
    """One row per trial, in trial order (FID of a pruned trial: its last reported value)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        fid = trial.value
        if fid is None and trial.intermediate_values and trial.state == optuna.trial.TrialState.PRUNED:
            fid = trial.intermediate_values[max(trial.intermediate_values)]
        seconds = trial.duration.total_seconds() if trial.duration else None
        rows.append(TrialRow(trial.number, trial.state.name, trial.params.get(PARAM), fid,
                             trial.user_attrs.get("steps"), seconds, trial.user_attrs.get("kid"),
                             trial.user_attrs.get("kid_std"), worker_label(trial.user_attrs.get("worker_identity"))))
    return rows


def scored_rows(table: list[TrialRow]) -> list[TrialRow]:
    """The finished rows with a FID: what the λ–FID figures plot (a pruned trial at its last report)."""
    return [row for row in table if row.state in ("COMPLETE", "PRUNED") and row.fid is not None]


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
    best = best_trial(study)
    table = trial_table(study)
    featured = featured_trials(trials, best)
    control = load_control(study)
    # The control's losses beside the featured trials': same seed and batches, no decay.
    shown = featured + ([(CONTROL_LABEL, control)] if control is not None and control.state.is_finished() else [])
    losses = [_loss_curve(label, trial, read_artifact(study, trial, store, CURVES_FILE)) for label, trial in shown]
    return ReportData(
        study_name=study.study_name,
        best_number=best.number if best else None,
        best_fid=best.value if best else None,
        points=scored_rows(table),
        fid_curves=[FidCurve(trial.number, trial.params[PARAM], sorted(trial.intermediate_values),
                             [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)])
                    for trial in trials if trial.intermediate_values],
        losses=[curve for curve in losses if curve is not None],
        grids=[SampleGrid(label, trial.number, trial.params[PARAM], read_artifact(study, trial, store, SAMPLES_FILE))
               for label, trial in featured],
        table=table,
        protocol=dict(study.user_attrs.get("fid_protocol", {})),
        config=stored_config(study.user_attrs, f"study {study.study_name!r}").to_dict(),
        kid_protocol=next((trial.user_attrs["kid_protocol"] for trial in trials if "kid_protocol" in trial.user_attrs),
                          None),
        control=None if control is None else ControlRun(
            control_name(study.study_name), control.number, control.state.name, control_fid(control),
            read_artifact(study, control, store, SAMPLES_FILE)),
        control_comparison=comparison(best.value if best else None, control),
        confirmation=load_confirmation(study._storage, study.study_name),
    )


FIGURE_IDS = ("fid-vs-lambda", "kid-vs-lambda", "optimization-history", "fid-curves", "loss-curves")
CONFIRMATION_ID = "confirmation"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 0.2em; } .lead { color: #555; margin-top: 0; } .decay { font-size: 1.1em; margin: 0.3em 0; }
table { border-collapse: collapse; margin: 1em 0; } td, th { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; }
th { text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.best { background: #fde8e8; font-weight: bold; } .verdict { font-size: 1.1em; }
.pair { display: flex; gap: 1em; }
/* A fixed basis: plotly sizes a figure as its script runs, before the second half of the pair exists. */
.pair > div { flex: 0 0 calc(50% - 0.5em); min-width: 0; }
.grids { display: flex; gap: 1.5em; flex-wrap: wrap; } figure { margin: 0; text-align: center; }
figure img { width: 300px; image-rendering: pixelated; border: 1px solid #ccc; }
.js-error { color: #b00; }
"""
# Shows any script error on the page itself: a figure that fails to draw is not silently blank.
_ERROR_HOOK = ("<script>window.addEventListener('error', function (event) { var p = document.createElement('pre');"
               " p.className = 'js-error'; p.textContent = 'JavaScript error: ' + event.message;"
               " document.body.appendChild(p); });</script>")


def _number(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def table_html(head: Sequence[str], rows: Iterable[tuple[Sequence[str], bool]], numeric: Sequence[bool]) -> str:
    """An HTML table of escaped cells: `numeric` columns right-aligned, rows flagged True marked best."""
    header = "".join(f"<th>{html.escape(title)}</th>" for title in head)
    body = "".join(
        f'<tr{" class=best" if best else ""}>'
        + "".join(f"<td class=n>{html.escape(cell)}</td>" if is_number else f"<td>{html.escape(cell)}</td>"
                  for cell, is_number in zip(cells, numeric, strict=True))
        + "</tr>"
        for cells, best in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def page_html(title: str, *parts: str) -> str:
    """One self-contained page: the report's style, the script-error hook, `title` as its heading, then `parts`."""
    escaped = html.escape(title)
    return "\n".join([
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escaped}</title><style>{_STYLE}</style></head>",
        f"<body>{_ERROR_HOOK}<h1>{escaped}</h1>", *parts, "</body></html>",
    ])


def _kid(row: TrialRow) -> str:
    # '.4g': LeNet KIDs run in the hundreds, Inception KIDs in the thousandths.
    if row.kid is None:
        return "–"
    return f"{row.kid:.4g} ± {_number(row.kid_std, '.2g')}"


def _table_html(data: ReportData) -> str:
    head = ("trial", "state", "λ", "FID", "KID (± sd over subsets)", "steps", "seconds")
    rows = [((str(row.number), row.state, _number(row.lam, ".4g"), _number(row.fid, ".4f"), _kid(row),
              _number(row.steps, "d"), _number(row.seconds, ".1f")), row.number == data.best_number)
            for row in data.table]
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


def _settings_html(title: str, values: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
                   for key, value in values.items())
    return f"<h3>{html.escape(title)}</h3><table>{rows}</table>"


def decay_setting(train: dict[str, Any]) -> str:
    """Where and how λ decays, as the study file says it: ``apply_to = …, decay_mode = …, penalize = …``."""
    return (f"apply_to = {train['apply_to']}, decay_mode = {train.get('decay_mode', 'l2')}, "
            f"penalize = {train['penalize']}")


def decay_description(train: dict[str, Any]) -> str:
    """What `decay_setting` means, in words."""
    networks = _NETWORKS[train["apply_to"]]
    tensors = "conv and linear kernels only" if train["penalize"] == "weights" else "every parameter"
    if train.get("decay_mode", "l2") == "decoupled":
        return f"decoupled (AdamW-style) decay w ← w − lr·λ·w on the {networks} ({tensors})"
    return f"λ·Σ‖w‖² added to the loss of the {networks} ({tensors})"


def _summary(data: ReportData) -> str:
    if data.best_number is None:
        return f"No trial completed yet (pruned ones only). {data.control_comparison}."
    best = next(row for row in data.table if row.number == data.best_number)
    return (f"Best: trial {best.number}, λ = {best.lam:.4g}, FID = {data.best_fid:.4f}, "
            f"out of {len(data.points)} finished trial(s). {data.control_comparison}.")


def _decay_html(data: ReportData) -> str:
    train = data.config["train"]
    return (f"<p class=decay><b>{html.escape(decay_setting(train))}</b>: "
            f"{html.escape(decay_description(train))}.</p>")


def _interval(low: float, high: float) -> str:
    return f"[{low:.4f}, {high:.4f}]"


def _confirmation_cells(result: LambdaResult) -> tuple[str, ...]:
    difference = result.difference
    return (
        "0 (control)" if result.lam == 0 else f"{result.lam:.4g}",
        f"{result.interval.mean:.4f}", _interval(result.interval.low, result.interval.high),
        "–" if difference is None else f"{difference.mean:+.4f}",
        "–" if difference is None else _interval(difference.low, difference.high),
        " ".join(f"{fid:.2f}" for _, fid in sorted(result.fids.items())),
    )


def _confirmation_html(confirmation: Confirmation, figure: str) -> str:
    seeds = ", ".join(str(seed) for seed in confirmation.seeds)
    head = ("λ", "mean FID", "95% CI", "minus λ = 0 (paired)", "95% CI", f"FID per seed ({seeds})")
    best = confirmation.best
    rows = [(_confirmation_cells(result), result.lam == best.lam)
            for result in (confirmation.control, *confirmation.candidates)]
    return (f"<h2>Confirmation: the top λ and λ = 0, re-trained with the same seeds</h2>"
            f"<p class=verdict><b>{html.escape(verdict(confirmation))}</b>.</p>{figure}"
            f"{table_html(head, rows, numeric=(True,) * len(head))}")


def render_report(data: ReportData, study: optuna.Study) -> str:
    """The report as one HTML page; plotly.js is inlined once, with the first figure."""
    drawn = (figures.fid_against_lambda(data), figures.kid_against_lambda(data),
             figures.optimization_history(study),
             figures.fid_curves(data), figures.loss_curves(data))
    plots = [figure.to_html(full_html=False, include_plotlyjs=index == 0, div_id=div_id)
             for index, (figure, div_id) in enumerate(zip(drawn, FIGURE_IDS, strict=True))]
    confirmation = "" if data.confirmation is None else _confirmation_html(
        data.confirmation, figures.confirmation(data.confirmation).to_html(
            full_html=False, include_plotlyjs=False, div_id=CONFIRMATION_ID))
    return page_html(
        f"lambda-search: study {data.study_name}",
        f"{_decay_html(data)}<p class=lead>{html.escape(_summary(data))}</p>",
        # FID and KID against λ side by side: two measures of the same generators.
        f"<div class=pair><div>{plots[0]}</div><div>{plots[1]}</div></div>", confirmation, *plots[2:],
        "<h2>Generated samples</h2>", _grids_html(data),
        "<h2>All trials</h2>", _table_html(data),
        "<h2>How FID was measured</h2>", _settings_html("FID protocol", data.protocol),
        _settings_html("KID protocol (same feature network)", data.kid_protocol) if data.kid_protocol else "",
        _settings_html("Training", data.config["train"]), _settings_html("Search", data.config["search"]),
        _settings_html("Data", data.config["data"]),
    )


def write_report(study: optuna.Study, path: Path, artifact_dir: Path | None = None) -> ReportData:
    """Gather, draw and write the study's report to `path` (atomically).

    Args:
        artifact_dir: the study's artifact store; None means the one its config implies.

    Raises:
        NoResultError: the study has no finished trial.
    """
    store = FileSystemArtifactStore(str(artifact_dir or default_artifact_dir(study)))
    data = gather_report(study, store)
    page = render_report(data, study)
    write_atomically(path, lambda stream: stream.write(page.encode("utf-8")))
    return data
