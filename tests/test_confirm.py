"""`confirm`: paired re-runs of the top λ and the λ = 0 control, stored, resumable, with a verdict."""

from __future__ import annotations

import html
import math

import optuna
import pytest
import yaml
from conftest import run_tiny_study
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from lambda_search.cli import main
from lambda_search.config import StudyConfig
from lambda_search.metrics.stats import excludes_zero
from lambda_search.names import CONTROL, PARAM
from lambda_search.results.confirmation import summarize, verdict
from lambda_search.sweep.confirm import _reusable_control, confirm


def test_summary_and_verdict_on_fixed_numbers():
    seeds = [0, 1, 2]
    fids = {(0.0, 0): 21.0, (0.0, 1): 20.0, (0.0, 2): 22.0,
            (1e-3, 0): 20.0, (1e-3, 1): 19.0, (1e-3, 2): 21.0,     # exactly 1 lower on every seed
            (1e-2, 0): 30.0, (1e-2, 1): 15.0, (1e-2, 2): 25.0}
    result = summarize("s", [0.0, 1e-3, 1e-2], seeds, fids)
    assert [row.lam for row in result.candidates] == [1e-3, 1e-2]  # best mean first
    assert result.control.difference is None
    best = result.best
    assert best.lam == 1e-3 and best.interval.mean == 20.0
    assert best.difference is not None and best.difference.mean == -1.0 and excludes_zero(best.difference)
    assert "λ = 0.001 is best: FID 1.0000 lower than λ = 0" in verdict(result)
    assert "beyond noise" in verdict(result)
    # 1e-2: differences 9, −5, 3: mean 7/3, the interval spans 0.
    assert not excludes_zero(result.candidates[1].difference)


def test_a_diverged_run_is_left_out_and_the_control_can_win():
    fids = {(0.0, 0): 10.0, (0.0, 1): 11.0, (1e-3, 0): math.nan, (1e-3, 1): 12.0}
    result = summarize("s", [0.0, 1e-3], [0, 1], fids)
    assert result.candidates[0].fids == {1: 12.0}
    assert result.candidates[0].difference.n == 1  # only seed 1 is paired
    assert result.best.lam == CONTROL
    assert "no λ beats λ = 0" in verdict(result)


def _study_with_control(control_attrs: dict[str, object]) -> tuple[optuna.Study, StudyConfig]:
    storage = optuna.storages.InMemoryStorage()
    config = StudyConfig().with_overrides(train={"device": "cpu"})
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("config", config.to_dict())
    study.set_user_attr("fid_protocol", {"features": "lenet"})
    attrs = {"seed": 0, "config": config.to_dict(), "fid_protocol": {"features": "lenet"}, "device": "cpu",
             **control_attrs}
    optuna.create_study(study_name="s.control", storage=storage).add_trial(create_trial(
        value=30.0, params={PARAM: 0.0}, distributions={PARAM: FloatDistribution(0.0, 1e-2)}, user_attrs=attrs))
    return study, config


def test_only_a_clean_sweep_control_stands_in_for_the_study_seed_run():
    study, config = _study_with_control({})
    copied = _reusable_control(study, config)
    assert copied is not None and copied.value == 30.0 and copied.params == {PARAM: 0.0}
    assert copied.user_attrs["seed"] == 0 and copied.user_attrs["copied_from"] == "s.control trial 0"
    for unclean in ({"seed": 1}, {"resumed_from_step": 40}, {"device": "cuda"}, {"fid_protocol": {"features": "x"}},
                    {"config": config.with_overrides(train={"steps": 1}).to_dict()}):
        assert _reusable_control(*_study_with_control(unclean)) is None, unclean


@pytest.mark.slow
def test_confirm_a_finished_study_stores_paired_runs_and_resumes(tmp_path, capsys):
    url = run_tiny_study(tmp_path, n_trials=2)
    study = optuna.load_study(study_name="tiny", storage=url)
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    original = {trial.params["lambda"]: trial.value for trial in complete}
    capsys.readouterr()

    assert main(["confirm", "--storage", url, "--study", "tiny", "--top", "2", "--seeds", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + 3 + 1  # header, λ = 0 and the two swept λ, verdict
    assert lines[1].split()[0] == "0"
    assert "λ = 0" in lines[-1]

    runs = optuna.load_study(study_name="tiny.confirm", storage=url).get_trials()
    assert all(run.state == optuna.trial.TrialState.COMPLETE for run in runs)
    pairs = sorted((run.params["lambda"], run.user_attrs["seed"]) for run in runs)
    assert pairs == sorted((lam, seed) for lam in [0.0, *original] for seed in (0, 1))
    assert all("fid_protocol" in run.user_attrs for run in runs)
    # Seed 0 is the study's seed: that run repeats the sweep's trial at the same λ.
    for run in runs:
        if run.params["lambda"] in original and run.user_attrs["seed"] == 0:
            assert run.value == pytest.approx(original[run.params["lambda"]], rel=1e-4)
    # ... and at λ = 0 the sweep's own control is that run: copied, not trained again.
    [control] = optuna.load_study(study_name="tiny.control", storage=url).trials
    [copied] = [run for run in runs if run.params["lambda"] == 0.0 and run.user_attrs["seed"] == 0]
    assert copied.user_attrs["copied_from"] == "tiny.control trial 0" and copied.value == control.value

    told: list[bool] = []
    again = confirm(url, "tiny", top=2, seeds=2, on_run=lambda lam, seed, fid, stored: told.append(stored))
    assert told == [True] * 6  # nothing retrained
    assert len(optuna.load_study(study_name="tiny.confirm", storage=url).get_trials()) == 6
    assert again.control.fids == {run.user_attrs["seed"]: run.value for run in runs if run.params["lambda"] == 0.0}

    # export now names the confirmed winner and records the intervals.
    assert main(["export", "--storage", url, "--study", "tiny", "-o", str(tmp_path / "best.yaml")]) == 0
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert exported["confirmed"] is True
    assert exported["lambda"] == again.best.lam
    assert exported["fid"]["value"] == pytest.approx(again.best.interval.mean)
    assert exported["note"] == verdict(again)
    confirmation = exported["confirmation"]
    assert confirmation["study"] == "tiny.confirm" and confirmation["seeds"] == [0, 1]
    control, *candidates = confirmation["lambdas"]
    assert control["lambda"] == 0.0 and len(candidates) == 2
    assert control["difference_to_control"] is None
    assert all(len(row["fid"]["ci"]) == 2 and row["difference_to_control"]["n"] == 2 for row in candidates)

    # ... and the report shows the confirmation: the verdict, the figure and one row per λ.
    report = tmp_path / "report.html"
    assert main(["report", "--storage", url, "--study", "tiny", "-o", str(report)]) == 0
    page = report.read_text()
    section = page[page.index("<h2>Confirmation"):]
    section = section[:section.index("<h2>", 4)]
    assert html.escape(verdict(again)) in section
    assert 'id="confirmation"' in section
    assert section.count("<td class=n>0 (control)</td>") == 1
    for row in candidates:
        assert f"<td class=n>{row['lambda']:.4g}</td>" in section
