"""`confirm`: paired re-runs of the top λ and the λ = 0 control, stored, resumable, with a verdict."""

from __future__ import annotations

import html
import json
import re

import optuna
import pytest
import scipy.stats
import yaml
from conftest import run_tiny_study
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from lambda_search.cli import main
from lambda_search.config import StudyConfig
from lambda_search.errors import ConfigError
from lambda_search.metrics.stats import DIVERGED, detectable_effect
from lambda_search.names import CONTROL, PARAM
from lambda_search.records.confirmation import confirmation_seeds, summarize, verdict
from lambda_search.records.export import load_export
from lambda_search.results import figures
from lambda_search.results.confirmation import load_confirmation
from lambda_search.results.report import _confirmation_html
from lambda_search.sweep.confirm import confirm

SEEDS = [1, 2, 3, 4, 5, 6, 7]
CONTROL_FIDS = [21.0, 20.0, 22.0, 21.5, 19.0, 23.0, 20.5]


def _fids(lam: float, values: list[float]) -> dict[tuple[float, int], float]:
    return {(lam, seed): value for seed, value in zip(SEEDS, values, strict=True)}


def test_summary_and_verdict_on_fixed_numbers():
    clear = [fid - 1.0 - 0.1 * i for i, fid in enumerate(CONTROL_FIDS)]     # lower on every seed
    noise = [30.0, 15.0, 25.0, 18.0, 22.0, 20.0, 21.0]
    fids = {**_fids(0.0, CONTROL_FIDS), **_fids(1e-3, clear), **_fids(1e-2, noise)}
    result = summarize("s", [0.0, 1e-3, 1e-2], SEEDS, fids, selection_seed=0)
    assert [row.lam for row in result.candidates] == [1e-3, 1e-2]  # best mean first
    assert result.control.test is None and result.m == 2 and result.ignored == 0
    best = result.candidates[0]
    assert result.best is best and best.diverged == 0
    test = best.test
    # Against scipy on the same numbers, Holm over m = 2 by hand (the smaller p doubled, the larger kept if larger).
    raw_w = [scipy.stats.wilcoxon(values, CONTROL_FIDS, method="exact").pvalue for values in (clear, noise)]
    raw_t = [scipy.stats.ttest_rel(values, CONTROL_FIDS).pvalue for values in (clear, noise)]
    assert test.wilcoxon_p == pytest.approx(raw_w[0]) == pytest.approx(2 / 2**7)
    assert test.wilcoxon_p_holm == pytest.approx(min(1, 2 * min(raw_w)))
    assert result.candidates[1].test.wilcoxon_p_holm == pytest.approx(max(2 * min(raw_w), max(raw_w)))
    assert test.t_p == pytest.approx(raw_t[0]) and test.t_p_holm == pytest.approx(2 * raw_t[0])
    assert test.confidence == pytest.approx(0.975) and test.beyond_noise
    line = verdict(result)
    assert line.startswith("λ = 0.001 beats λ = 0 beyond noise: mean FID 1.3000 lower")
    assert "97.5% CI" in line and "7 paired seeds, m = 2 λ" in line and f"(Holm {test.wilcoxon_p_holm:.3g})" in line
    assert line.endswith(f"; detectable: ≥ {test.detectable:.1f} FID at 80% power")
    assert not result.candidates[1].test.beyond_noise


def test_every_verdict_line_ends_with_the_detectable_effect():
    seeds = SEEDS
    noisy = [fid + delta for fid, delta in zip(CONTROL_FIDS, [-6.0, 4.0, -3.0, 5.0, -2.0, 1.0, -1.0], strict=True)]
    fids = {key: value for lam, values in ((0.0, CONTROL_FIDS), (1e-4, noisy), (1e-3, [f + 1 for f in noisy]),
                                           (1e-2, [f + 6.0 + 0.1 * i for i, f in enumerate(CONTROL_FIDS)]))
            for key, value in _fids(lam, values).items() if key[1] in seeds}
    result = summarize("s", [0.0, 1e-4, 1e-3, 1e-2], seeds, fids, selection_seed=0)
    # 1e-2 is higher on every seed (by 6.0 … 6.6): beyond noise by the one rule, over m = 3.
    worse = next(row for row in result.candidates if row.lam == 1e-2)
    assert result.winner is None and worse.test.beyond_noise
    line = verdict(result)
    assert line.startswith("λ = 0.01 scores higher than λ = 0 beyond noise: mean FID 6.3000 higher")
    assert line.endswith(f"; detectable: ≥ {worse.test.detectable:.1f} FID at 80% power")
    # λ = 0 best, 1e-3 a little worse and noisy: the line ends with the tested λ's detectable effect.
    result = summarize("s", [0.0, 1e-3], seeds, fids, selection_seed=0)
    assert result.best.lam == CONTROL and not result.candidates[0].test.beyond_noise
    line = verdict(result)
    assert line.startswith("no effect detectable at this budget: λ = 0 has the lowest mean FID")
    assert line.endswith(f"; detectable: ≥ {result.candidates[0].test.detectable:.1f} FID at 80% power")
    # Without 1e-2: nothing beyond noise; the line ends with the best λ's detectable effect, from its own sd.
    result = summarize("s", [0.0, 1e-4, 1e-3], seeds, fids, selection_seed=0)
    best = result.candidates[0]
    assert best.lam == 1e-4 and not best.test.beyond_noise
    line = verdict(result)
    assert line.startswith("no effect detectable at this budget: the best λ = ")
    assert line.endswith(f"; detectable: ≥ {best.test.detectable:.1f} FID at 80% power")
    assert best.test.detectable == pytest.approx(detectable_effect(scipy.stats.tstd([-6, 4, -3, 5, -2, 1, -1]), 7, m=2))


def test_a_diverged_run_is_a_loss_and_the_control_can_win():
    diverging = [*(fid - 2.0 for fid in CONTROL_FIDS[:-1]), DIVERGED]
    fids = {**_fids(0.0, CONTROL_FIDS), **_fids(1e-3, diverging)}
    result = summarize("s", [0.0, 1e-3], SEEDS, fids, selection_seed=0)
    [candidate] = result.candidates
    assert candidate.diverged == 1 and candidate.fids[7] == DIVERGED and result.worst == 23.0
    # The mean counts the diverged run as the worst finished FID (23.0), not as missing.
    assert candidate.interval.mean == pytest.approx((sum(diverging[:-1]) + 23.0) / 7) and candidate.interval.n == 7
    # The Wilcoxon ranks it as the largest difference, against λ: the same p as any largest positive difference.
    expected = scipy.stats.wilcoxon([*[-2.0] * 6, 1e9], method="exact").pvalue
    assert candidate.test.wilcoxon_p == pytest.approx(expected) and not candidate.test.beyond_noise
    assert candidate.test.t_p == pytest.approx(scipy.stats.ttest_rel([*diverging[:-1], 23.0], CONTROL_FIDS).pvalue)
    # Every λ's run on every seed diverged but the control's: λ = 0 wins.
    lost = summarize("s", [0.0, 1e-3], SEEDS, {**_fids(0.0, CONTROL_FIDS), **_fids(1e-3, [DIVERGED] * 7)}, 0)
    assert lost.best.lam == CONTROL and lost.candidates[0].test.wilcoxon_p == pytest.approx(2 / 2**7)
    assert verdict(lost).startswith("λ = 0.001 scores higher than λ = 0 beyond noise")


def test_the_selection_seed_never_confirms(tmp_path):
    with pytest.raises(ConfigError, match="seed 0 selected the λ values"):
        summarize("s", [0.0], [0, 1], {(0.0, 0): 1.0, (0.0, 1): 2.0}, selection_seed=0)
    assert confirmation_seeds(5, 3) == [6, 7, 8]
    # A confirmation stored before seeds excluded the study seed: its study-seed runs are left out and counted.
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = StudyConfig().with_overrides(study={"seed": 0})
    optuna.create_study(study_name="s", storage=url).set_user_attr("config", config.to_dict())
    companion = optuna.create_study(study_name="s.confirm", storage=url)
    runs = {(0.0, 0): 30.0, (0.0, 1): 21.0, (0.0, 2): 20.0, (1e-3, 0): 10.0, (1e-3, 1): 19.0, (1e-3, 2): 21.0}
    for (lam, seed), fid in runs.items():
        companion.add_trial(create_trial(value=fid, params={PARAM: lam}, user_attrs={"seed": seed},
                                         distributions={PARAM: FloatDistribution(0.0, 1e-2)}))
    loaded = load_confirmation(url, "s")
    assert loaded is not None and loaded.seeds == [1, 2] and loaded.ignored == 2 and loaded.selection_seed == 0
    assert loaded.candidates[0].fids == {1: 19.0, 2: 21.0}


@pytest.mark.slow
def test_confirm_a_finished_study_stores_paired_runs_and_resumes(tmp_path, capsys):
    url = run_tiny_study(tmp_path, n_trials=2)
    study = optuna.load_study(study_name="tiny", storage=url)
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    original = {trial.params["lambda"]: trial.value for trial in complete}
    capsys.readouterr()

    assert main(["confirm", "--storage", url, "--study", "tiny", "--top", "2", "--seeds", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + 3 + 1 + 1  # header, λ = 0 and the two swept λ, what the figures mean, verdict
    assert lines[1].split()[0] == "0"
    assert "not the selection seed 0" in lines[4] and "m = 2 λ" in lines[4]
    # The verdict, whichever it is on this tiny study, ends with what 2 seeds could have detected.
    assert re.search(r"; detectable: ≥ \d+\.\d FID at 80% power$", lines[-1]), lines[-1]

    runs = optuna.load_study(study_name="tiny.confirm", storage=url).get_trials()
    assert all(run.state == optuna.trial.TrialState.COMPLETE for run in runs)
    pairs = sorted((run.params["lambda"], run.user_attrs["seed"]) for run in runs)
    # Seeds 1 and 2: never the study seed 0, with which the sweep chose these λ.
    assert pairs == sorted((lam, seed) for lam in [0.0, *original] for seed in (1, 2))
    assert all("fid_protocol" in run.user_attrs for run in runs)

    told: list[bool] = []
    again = confirm(url, "tiny", top=2, seeds=2, on_run=lambda lam, seed, fid, stored: told.append(stored))
    assert told == [True] * 6  # nothing retrained
    assert len(optuna.load_study(study_name="tiny.confirm", storage=url).get_trials()) == 6
    assert again.control.fids == {run.user_attrs["seed"]: run.value for run in runs if run.params["lambda"] == 0.0}

    # export now names the confirmed winner and records the intervals.
    assert main(["export", "--storage", url, "--study", "tiny", "-o", str(tmp_path / "best.yaml")]) == 0
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert exported["fresh_seeds"] is True
    assert exported["lambda"] == again.best.lam
    assert exported["fid"]["value"] == pytest.approx(again.best.interval.mean)
    assert exported["verdict"] == verdict(again)
    assert load_export(tmp_path / "best.yaml").to_dict() == exported  # the file reads back as written
    confirmation = exported["confirmation"]
    assert confirmation["study"] == "tiny.confirm" and confirmation["seeds"] == [1, 2]
    assert confirmation["selection_seed"] == 0 and confirmation["m"] == 2 and confirmation["beyond_noise"] is False
    control, *candidates = confirmation["lambdas"]
    assert control["lambda"] == 0.0 and len(candidates) == 2
    assert control["difference_to_control"] is None and control["diverged"] == 0
    by_lam = {row.lam: row for row in again.candidates}
    for row in candidates:
        difference, test = row["difference_to_control"], by_lam[row["lambda"]].test
        assert len(row["fid"]["ci"]) == 2 and difference["n"] == 2 and difference["m"] == 2
        assert (difference["wilcoxon_p"], difference["wilcoxon_p_holm"], difference["t_p"], difference["t_p_holm"]) == (
            test.wilcoxon_p, test.wilcoxon_p_holm, test.t_p, test.t_p_holm)
        assert difference["ci"] == [test.difference.low, test.difference.high]

    # `train` repeats the winner's run on the first confirmation seed, and gets its FID back bit for bit.
    assert main(["train", str(tmp_path / "best.yaml"), "-o", str(tmp_path / "trained")]) == 0
    result = json.loads((tmp_path / "trained" / "result.json").read_text())
    winner = next(row for row in confirmation["lambdas"] if row["lambda"] == exported["lambda"])
    assert result["seed"] == 1 and "first of the confirmation's seeds 1, 2" in result["seed_note"]
    assert result["fid"] == result["export_seed_fid"] == winner["fid_by_seed"][1]
    assert result["reproduces_export_seed_fid"] is True

    # ... and the report shows the confirmation: the verdict, the figure and one row per λ.
    report = tmp_path / "report.html"
    assert main(["report", "--storage", url, "--study", "tiny", "-o", str(report)]) == 0
    page = report.read_text()
    section = page[page.index("<h2>Confirmation"):]
    section = section[:section.index("<h2>", 4)]
    assert html.escape(verdict(again)) in section
    assert "never the seed 0 the sweep chose its λ with" in section and "m = 2 λ tested" in section
    assert 'id="confirmation"' in section
    assert section.count("<td class=n>0 (control)</td>") == 1
    for row in candidates:
        assert f"<td class=n>{row['lambda']:.4g}</td>" in section

    # More seeds for a study scored with another FID protocol: refused in one line naming only what differs.
    study.set_user_attr("fid_protocol", dict(study.user_attrs["fid_protocol"], n_real=1))
    capsys.readouterr()
    assert main(["confirm", "--storage", url, "--study", "tiny", "--top", "2", "--seeds", "3"]) == 2
    error = capsys.readouterr().err.strip()
    assert "n_real=1" in error and "n_real=500" in error and "dataset_fingerprint" not in error
    assert len(error.splitlines()) == 1


def test_the_report_shows_a_diverged_run_and_the_adjusted_figures():
    diverging = [*(fid - 2.0 for fid in CONTROL_FIDS[:-1]), DIVERGED]
    result = summarize("s", [0.0, 1e-3], SEEDS, {**_fids(0.0, CONTROL_FIDS), **_fids(1e-3, diverging)}, 0)
    test = result.candidates[0].test
    section = _confirmation_html(result, "")
    assert "19.00 18.00 20.00 19.50 17.00 21.00 diverged" in section
    assert f"<td class=n>{test.wilcoxon_p:.3g} ({test.wilcoxon_p_holm:.3g})</td>" in section
    assert "95.0% CI (simultaneous)" in section and "m = 1 λ tested" in section
    scatter = figures.confirmation(result).data[0]
    assert list(scatter.y)[-1] == result.worst and list(scatter.marker.symbol)[-1] == "x"
