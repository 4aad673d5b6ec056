"""A study's trials as a text table, with its best trial or a race's verdict: what `lambda-search status` prints."""

from __future__ import annotations

import optuna

from lambda_search.names import PARAM
from lambda_search.records.trials import best_trial, comparison, objective_note, study_config
from lambda_search.results.trial_rows import TrialRow, trial_table
from lambda_search.sweep.companions import control_study, load_control
from lambda_search.sweep.race.runs import is_race, race_verdict_line


def status_lines(study: optuna.Study, workers: bool = False) -> list[str]:
    """One line per trial (a race's λ = 0 runs too, numbered ``cN``), then the best trial or the race's verdict.

    Args:
        workers: add a column naming the worker that ran each trial.
    """
    race = is_race(study)
    config = study_config(study)
    rows = [(str(row.number), row) for row in trial_table(study, config.study.objective)]
    if race and (control := control_study(study)) is not None:
        # λ = 0's runs, trials of NAME.control: the race pairs them with the search's and the verdict's.
        rows += [(f"c{row.number}", row) for row in trial_table(control, config.study.objective)]
    header = f"{'trial':>5}  {'state':<8}  {'lambda':>10}  {'FID':>10}  {'steps':>6}  {'seconds':>8}"
    header += f"  {'seed':>6}  role" if race else ""
    header += "  worker" if workers else ""
    lines = [header, *(_row_line(number, row, race, workers) for number, row in rows)]
    if note := objective_note(config):
        lines.append(f"({note})")
    if race:
        return [*lines, race_verdict_line(study)]
    best = best_trial(study)
    if best is not None:
        lines.append(f"best: trial {best.number}, λ = {best.params[PARAM]:.6g}, FID {best.value:.4f}")
    return [*lines, comparison(best.value if best else None, load_control(study))]


def _row_line(number: str, row: TrialRow, race: bool, workers: bool) -> str:
    fid = f"{row.fid:10.4f}" if row.fid is not None else f"{'-':>10}"
    lam = f"{row.lam:10.4g}" if row.lam is not None else f"{'-':>10}"
    steps = f"{row.steps:6d}" if row.steps is not None else f"{'-':>6}"
    seconds = f"{row.seconds:8.1f}" if row.seconds is not None else f"{'-':>8}"
    line = f"{number:>5}  {row.state:<8}  {lam}  {fid}  {steps}  {seconds}"
    line += f"  {row.seed if row.seed is not None else '-':>6}  {row.role or '-'}" if race else ""
    line += f"  {row.worker}" if workers else ""
    return line
