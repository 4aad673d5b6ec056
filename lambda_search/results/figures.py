"""The report's Plotly figures, each drawn from gathered data (see `report.gather_report`).

Drawing only: no storage, no files. Every function returns a `go.Figure`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from lambda_search.names import GENERATOR_NAMES
from lambda_search.results.trial_rows import kid_generators, of_generators

if TYPE_CHECKING:
    from lambda_search.metrics.stats import Interval
    from lambda_search.records.confirmation import Confirmation
    from lambda_search.records.trials import TrialKid
    from lambda_search.results.compare import Comparison
    from lambda_search.results.report import ReportData
    from lambda_search.results.trial_rows import TrialRow
    from lambda_search.sweep.race.rule import RaceSummary

COLORSCALE = "Viridis"
CONTROL_COLOR = "#444444"
# The KIDs of one generator, and of a second where a study's trials hold both (`trial_rows.kid_generators`).
KID_COLORS = ("#2ca02c", "#999999")
HEIGHT = 420


def _layout(figure: go.Figure, title: str) -> go.Figure:
    figure.update_layout(title=title, height=HEIGHT, template="plotly_white", margin={"t": 60, "b": 50})
    return figure


def fid_against_lambda(data: ReportData) -> go.Figure:
    """FID against λ on a log axis: complete trials as dots, pruned as crosses, the best as a star."""
    figure = go.Figure()
    for state, symbol, color in (("COMPLETE", "circle", "#1f77b4"), ("PRUNED", "x", "#999999")):
        rows = [row for row in data.points if row.state == state]
        figure.add_trace(go.Scatter(
            x=[row.lam for row in rows], y=[row.fid for row in rows], mode="markers",
            name=state.lower() if state == "COMPLETE" else "pruned (last reported FID)",
            marker={"symbol": symbol, "size": 10, "color": color},
            text=[f"trial {row.number}" for row in rows],
            hovertemplate="%{text}<br>λ=%{x:.3g}<br>FID=%{y:.4f}<extra></extra>",
        ))
    best = [row for row in data.points if row.number == data.best_number]
    if best:
        figure.add_trace(go.Scatter(
            x=[best[0].lam], y=[best[0].fid], mode="markers", name=f"best (trial {best[0].number})",
            marker={"symbol": "star", "size": 20, "color": "#d62728", "line": {"width": 1, "color": "black"}},
            hovertemplate="best<br>λ=%{x:.3g}<br>FID=%{y:.4f}<extra></extra>",
        ))
    if data.control is not None and data.control.fid is not None:
        # λ = 0 has no place on a log axis: the control is a level every λ is measured against.
        figure.add_hline(y=data.control.fid, line={"dash": "dash", "color": CONTROL_COLOR},
                         annotation_text=f"λ = 0 control: FID {data.control.fid:.4f}", annotation_position="top left")
    figure.update_xaxes(type="log", title="λ (weight decay)")
    figure.update_yaxes(title="FID (lower is better)")
    return _layout(figure, "FID against λ")


def kid_against_lambda(data: ReportData) -> go.Figure:
    """KID against λ on a log axis: complete trials with their spread over subsets, the best FID's as a star.

    Each KID is of the generator the study judges where the trial stored it (`records.trials.judged_kid`);
    with `[train] ema` the title names the generator(s) and each has its own trace (`trial_rows.kid_generators`).
    """
    points = [(row, row.kid) for row in data.table if row.kid is not None and row.lam is not None]
    generators = kid_generators(data.config, data.table)
    figure = go.Figure()
    if not generators:  # one generator: its KIDs need no name
        figure.add_trace(_kid_points(points, "complete", KID_COLORS[0]))
    for generator, color in zip(generators, KID_COLORS, strict=False):
        figure.add_trace(_kid_points([(row, kid) for row, kid in points if kid.generator == generator],
                                     f"complete, {GENERATOR_NAMES[generator]}", color))
    best = [(row, kid) for row, kid in points if row.number == data.best_number]
    if best:
        row, kid = best[0]
        figure.add_trace(go.Scatter(
            x=[row.lam], y=[kid.value], mode="markers", name=f"best FID (trial {row.number})",
            marker={"symbol": "star", "size": 20, "color": "#d62728", "line": {"width": 1, "color": "black"}},
            hovertemplate="best FID<br>λ=%{x:.3g}<br>KID=%{y:.4g}<extra></extra>",
        ))
    if not points:
        figure.add_annotation(text="no trial stored a KID (run before KID was added?)", showarrow=False,
                              xref="paper", yref="paper", x=0.5, y=0.5)
    figure.update_xaxes(type="log", title="λ (weight decay)")
    figure.update_yaxes(title="KID (lower is better; error bars: sd over subsets)")
    return _layout(figure, f"KID{of_generators(generators)} against λ (final evaluation)")


def _kid_points(points: list[tuple[TrialRow, TrialKid]], name: str, color: str) -> go.Scatter:
    return go.Scatter(
        x=[row.lam for row, _ in points], y=[kid.value for _, kid in points], mode="markers", name=name,
        marker={"size": 10, "color": color},
        error_y={"type": "data", "array": [kid.std or 0.0 for _, kid in points], "thickness": 1},
        text=[f"trial {row.number}" for row, _ in points],
        hovertemplate="%{text}<br>λ=%{x:.3g}<br>KID=%{y:.4g} ± %{error_y.array:.2g}<extra></extra>",
    )


def confirmation(data: Confirmation) -> go.Figure:
    """Left: mean FID per λ with its 95% CI (seeds as dots), λ = 0 as a band. Right: paired difference to λ = 0.

    A diverged run is drawn as a cross at the FID that stands in for it (the worst finished one).
    The differences carry their simultaneous intervals (Bonferroni over the m λ tested), green or
    red when the difference is beyond noise (`PairedTest.beyond_noise`).
    """
    level = next((f"{result.test.confidence:.1%} CI over m = {result.test.m}" for result in data.candidates
                  if result.test is not None), "CI")
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        f"mean FID over {len(data.seeds)} seeds, 95% CI", f"FID minus λ = 0, same seeds, {level}"))
    candidates = sorted(data.candidates, key=lambda result: result.lam)
    lams = [result.lam for result in candidates]
    runs = [(result.lam, fid) for result in candidates for fid in result.fids.values()]
    figure.add_trace(go.Scatter(
        x=[lam for lam, _ in runs], y=[min(fid, data.worst) for _, fid in runs],
        mode="markers", name="one seed (×: diverged)",
        marker={"size": 6, "color": "#999999", "symbol": ["x" if math.isinf(fid) else "circle" for _, fid in runs]},
        hovertemplate="λ=%{x:.3g}<br>FID=%{y:.4f}<extra></extra>"), row=1, col=1)
    figure.add_trace(go.Scatter(
        x=lams, y=[result.interval.mean for result in candidates], mode="markers", name="mean, 95% CI",
        marker={"size": 12, "color": "#1f77b4"}, error_y=_error_bars([result.interval for result in candidates]),
        hovertemplate="λ=%{x:.3g}<br>mean FID=%{y:.4f}<extra></extra>"), row=1, col=1)
    tests = [(result.lam, result.test) for result in candidates if result.test is not None]
    figure.add_trace(go.Scatter(
        x=[lam for lam, _ in tests], y=[test.difference.mean for _, test in tests], mode="markers",
        name="paired difference, simultaneous CI", error_y=_error_bars([test.difference for _, test in tests]),
        marker={"size": 12, "color": [("#2ca02c" if test.difference.mean < 0 else "#d62728") if test.beyond_noise
                                      else "#7f7f7f" for _, test in tests]},
        hovertemplate="λ=%{x:.3g}<br>FID − FID(λ=0)=%{y:.4f}<extra></extra>"), row=1, col=2)
    # Shapes after the traces: plotly leaves them off subplots that hold no data yet.
    control = data.control.interval
    figure.add_hrect(y0=control.low, y1=control.high, fillcolor=CONTROL_COLOR, opacity=0.12, line_width=0,
                     row=1, col=1)
    figure.add_hline(y=control.mean, line={"dash": "dash", "color": CONTROL_COLOR}, row=1, col=1,
                     annotation_text=f"λ = 0: {control.mean:.2f} [{control.low:.2f}, {control.high:.2f}]",
                     annotation_position="top left")
    figure.add_hline(y=0, line={"color": CONTROL_COLOR}, row=1, col=2)
    figure.update_xaxes(type="log", title="λ (weight decay)")
    figure.update_yaxes(title="FID", row=1, col=1)
    return _layout(figure, "Confirmation: paired seeds")


def race(data: RaceSummary) -> go.Figure:
    """Left: the search runs on their shared seed, the curve fitted through them (95% band), the incumbent.
    Right: the verdict's fresh seeds, the incumbent and λ = 0 seed by seed, lines pairing each seed's two runs.
    """
    figure = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35], horizontal_spacing=0.1, subplot_titles=(
        f"search, all on seed {data.search_seed}: one run per λ, fitted curve", "verdict on fresh seeds"))
    if data.curve:
        lams = [lam for lam, _, _ in data.curve]
        upper = [mean + 1.96 * sd for _, mean, sd in data.curve]
        lower = [mean - 1.96 * sd for _, mean, sd in data.curve]
        figure.add_trace(go.Scatter(x=lams + lams[::-1], y=upper + lower[::-1], fill="toself", line={"width": 0},
                                    fillcolor="rgba(31,119,180,0.15)", name="fitted curve, 95% band",
                                    hoverinfo="skip"), row=1, col=1)
        figure.add_trace(go.Scatter(x=lams, y=[mean for _, mean, _ in data.curve], mode="lines", showlegend=False,
                                    line={"color": "#1f77b4"}, hovertemplate="λ=%{x:.3g}<br>fitted FID=%{y:.4f}"
                                    "<extra></extra>"), row=1, col=1)
    runs = data.runs
    fids = [fid for _, fid, _, _ in runs]
    worst = max((fid for fid in fids if math.isfinite(fid)), default=0.0)
    figure.add_trace(go.Scatter(
        x=[lam for lam, *_ in runs], y=[min(fid, worst) for fid in fids], mode="markers",
        name="one run (×: diverged)",
        marker={"size": 9, "color": "#1f77b4", "symbol": ["x" if math.isinf(fid) else "circle" for fid in fids]},
        hovertemplate="λ=%{x:.3g}<br>FID=%{y:.4f}<extra></extra>"), row=1, col=1)
    if data.path:
        incumbent = next(((lam, mean) for lam, _, mean, _ in runs if lam == data.path[-1]), None)
        if incumbent is not None:
            figure.add_trace(go.Scatter(
                x=[incumbent[0]], y=[incumbent[1]], mode="markers", name="incumbent (lowest fitted FID)",
                marker={"symbol": "star", "size": 18, "color": "#d62728", "line": {"width": 1, "color": "black"}},
                hovertemplate="incumbent<br>λ=%{x:.3g}<br>fitted FID=%{y:.4f}<extra></extra>"), row=1, col=1)
    if data.verdict is not None:
        for index, (fid, control) in enumerate(zip(data.verdict.fids, data.verdict.control_fids, strict=True)):
            figure.add_trace(go.Scatter(
                x=["λ = 0", f"λ = {data.verdict.lam:.3g}"], y=[control, fid], mode="lines+markers",
                name="one fresh seed", legendgroup="fresh", showlegend=index == 0,
                line={"color": "#999999"}, marker={"size": 8},
                hovertemplate=f"seed {data.verdict.verdict_seeds[index]}<br>FID=%{{y:.4f}}<extra></extra>"),
                row=1, col=2)
    # Shapes after the traces: plotly leaves them off subplots that hold no data yet.
    if data.control_fid is not None and math.isfinite(data.control_fid):
        figure.add_hline(y=data.control_fid, line={"dash": "dash", "color": CONTROL_COLOR}, row=1, col=1,
                         annotation_text=f"λ = 0, same seed: {data.control_fid:.2f}", annotation_position="top left")
    figure.update_xaxes(type="log", title="λ (weight decay)", row=1, col=1)
    figure.update_yaxes(title="FID (lower is better)", row=1, col=1)
    return _layout(figure, "The race: search, then verdict")


def _error_bars(intervals: Sequence[Interval]) -> dict[str, object]:
    return {"type": "data", "symmetric": False, "array": [i.high - i.mean for i in intervals],
            "arrayminus": [i.mean - i.low for i in intervals]}


def optimization_history(data: ReportData) -> go.Figure:
    """FID per complete trial and the best so far, as Optuna's optimization history draws them."""
    numbers = [point.number for point in data.history]
    fids = [point.fid for point in data.history]
    best_so_far = [min(fids[: index + 1]) for index in range(len(fids))]
    figure = go.Figure([
        go.Scatter(x=numbers, y=fids, mode="markers", name="FID",
                   hovertemplate="trial %{x}<br>FID=%{y:.4f}<extra></extra>"),
        go.Scatter(x=numbers, y=best_so_far, mode="lines", name="Best Value", line={"color": "#ef553b"},
                   hovertemplate="trial %{x}<br>best FID so far=%{y:.4f}<extra></extra>"),
    ])
    figure.update_xaxes(title="Trial")
    figure.update_yaxes(title="FID")
    return _layout(figure, "Optimization history")


def _log_position(lam: float, low: float, high: float) -> float:
    if high <= low:
        return 0.5
    return (math.log10(lam) - math.log10(low)) / (math.log10(high) - math.log10(low))


def fid_curves(data: ReportData) -> go.Figure:
    """Intermediate FID against training step, one line per trial, coloured by log10 λ."""
    figure = go.Figure()
    lams = [curve.lam for curve in data.fid_curves]
    low, high = (min(lams), max(lams)) if lams else (1.0, 1.0)
    for curve in data.fid_curves:
        color = sample_colorscale(COLORSCALE, [_log_position(curve.lam, low, high)])[0]
        figure.add_trace(go.Scatter(
            x=curve.steps, y=curve.fids, mode="lines+markers", line={"color": color},
            name=f"trial {curve.number} (λ={curve.lam:.2e})", showlegend=False,
            hovertemplate=f"trial {curve.number}, λ={curve.lam:.3g}<br>step %{{x}}<br>FID %{{y:.4f}}<extra></extra>",
        ))
    if lams:
        # An invisible trace carries the colour bar: lines cannot show one themselves.
        figure.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
            marker={"colorscale": COLORSCALE, "cmin": math.log10(low), "cmax": math.log10(high),
                    "color": [math.log10(low)], "colorbar": {"title": "log10 λ"}, "showscale": True},
        ))
    figure.update_xaxes(title="training step")
    # Early FIDs are 10× the late ones; a log axis keeps the differences between λ visible.
    figure.update_yaxes(title="FID (log scale)", type="log")
    return _layout(figure, "Intermediate FID during training")


def loss_curves(data: ReportData) -> go.Figure:
    """Generator and discriminator losses (penalty included) of the featured trials, side by side."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("generator loss", "discriminator loss"))
    palette = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e")
    for index, curve in enumerate(data.losses):
        color = palette[index % len(palette)]
        name = f"{curve.label}: trial {curve.number}, λ={curve.lam:.2e}"
        for column, values in ((1, curve.generator), (2, curve.discriminator)):
            figure.add_trace(go.Scatter(x=curve.steps, y=values, mode="lines", name=name, legendgroup=name,
                                        showlegend=column == 1, line={"color": color}), row=1, col=column)
    figure.update_xaxes(title="training step")
    return _layout(figure, "Losses of the best trial and the extremes of λ")


def compare_fid_against_lambda(data: Comparison) -> go.Figure:
    """Several studies' FID against λ: one colour per study, its trials joined in λ order, its control dashed."""
    figure = go.Figure()
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
    lams = [row.lam for study in data.studies for row in study.points if row.lam is not None]
    span = [min(lams), max(lams)] if lams else []
    for index, study in enumerate(data.studies):
        color = palette[index % len(palette)]
        label = f"{study.name} ({study.train.apply_to}, {study.train.decay_mode})"
        for state, symbol, mode in (("COMPLETE", "circle", "lines+markers"), ("PRUNED", "x", "markers")):
            rows = sorted((row for row in study.points if row.state == state), key=lambda row: row.lam or 0.0)
            figure.add_trace(go.Scatter(
                x=[row.lam for row in rows], y=[row.fid for row in rows], mode=mode, name=label,
                legendgroup=study.name, showlegend=state == "COMPLETE", line={"color": color},
                marker={"symbol": symbol, "size": 9, "color": color},
                hovertemplate=f"{study.name}, trial %{{text}} ({state.lower()})<br>λ=%{{x:.3g}}<br>"
                              "FID=%{y:.4f}<extra></extra>",
                text=[str(row.number) for row in rows],
            ))
        if study.control_fid is not None and span:
            # λ = 0 has no place on a log axis: each study's control is a level across the plot.
            figure.add_trace(go.Scatter(
                x=span, y=[study.control_fid] * 2, mode="lines", name=f"{study.name}: λ = 0 control",
                legendgroup=study.name, line={"color": color, "dash": "dash"},
                hovertemplate=f"{study.name}: λ = 0 control<br>FID={study.control_fid:.4f}<extra></extra>",
            ))
    figure.update_xaxes(type="log", title="λ (weight decay)")
    figure.update_yaxes(title="FID (lower is better)")
    return _layout(figure, "FID against λ, studies compared (pruned trials as crosses at their last FID)")
