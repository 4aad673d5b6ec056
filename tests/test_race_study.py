"""strategy = "race" on real tiny training: the budget, the pairing, the verdict, workers and a killed one."""

from __future__ import annotations

import html
import signal
import statistics
import time
from pathlib import Path

import optuna
import pytest
import yaml
from _workers import observer, pid_of, poll, running_with_checkpoint, signal_worker, storage_proxy, wait_all, workers
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState
from scipy import stats
from test_report import _chromium, needs_chromium

from lambda_search.cli import main
from lambda_search.config import load_config
from lambda_search.records.export import load_export
from lambda_search.results.report import FIGURE_IDS, gather_report
from lambda_search.sweep.race.rule import CONTROL, SEARCH, VERDICT, Run, search_budget, standing, verdict_seeds
from lambda_search.sweep.race.runs import load_race

N_TRIALS = 10


def runs_of(url: str, name: str) -> list[Run]:
    return load_race(optuna.load_study(study_name=name, storage=url))[1]


def assert_a_whole_paired_race(url: str, name: str, n_trials: int) -> list[Run]:
    """Exactly n_trials finished runs; every λ's search seeds run at λ = 0 too; fresh verdict seeds."""
    runs = runs_of(url, name)
    states = [trial.state for study in (name, f"{name}.control")
              for trial in optuna.load_study(study_name=study, storage=url).get_trials()
              if trial.state != TrialState.FAIL]
    assert states == [TrialState.COMPLETE] * n_trials and len(runs) == n_trials
    search = [run for run in runs if run.role == SEARCH]
    assert len(search) == search_budget(n_trials)
    control_seeds = {run.seed for run in search if run.lam == CONTROL}
    assert {run.seed for run in search if run.lam != CONTROL} <= control_seeds
    incumbent = standing(runs).incumbent
    fresh = verdict_seeds(0, n_trials)
    assert sorted((run.lam, run.seed) for run in runs if run.role == VERDICT) == sorted(
        (lam, seed) for lam in (incumbent, CONTROL) for seed in fresh)
    assert not set(fresh) & {run.seed for run in search}
    return runs


def race_file(tiny_study, **overrides: object) -> Path:
    return tiny_study(**{"name": "race", "n_trials": N_TRIALS, "strategy": "race", **overrides})


@pytest.fixture
def raced(tiny_study, tmp_path, capsys) -> tuple[str, str]:
    """A finished race of N_TRIALS runs, trained in-process; its storage URL and `run`'s output."""
    assert main(["run", str(race_file(tiny_study))]) == 0
    return f"sqlite:///{tmp_path / 'race.db'}", capsys.readouterr().out


def verdict_of(out: str) -> str:
    """`run`'s verdict line (the next commands follow it)."""
    return next(line for line in out.splitlines() if line.startswith("race verdict: "))


def test_a_race_spends_its_budget_on_paired_seeds_and_ends_in_a_verdict(raced, capsys):
    url, out = raced
    runs = assert_a_whole_paired_race(url, "race", N_TRIALS)
    last = verdict_of(out)
    assert last.startswith(f"race verdict: λ = {standing(runs).incumbent:.6g}, mean FID ") and "95% CI [" in last
    # Each run trains with its own seed: the verdict's three λ = 0 runs are three different GANs.
    assert len({run.fid for run in runs if run.role == VERDICT and run.lam == CONTROL}) == 3
    assert main(["status", "--storage", url, "--study", "race"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == last


def test_export_carries_the_race_verdict(raced, tmp_path):
    url, _ = raced
    assert main(["export", "--storage", url, "--study", "race", "-o", str(tmp_path / "best.yaml")]) == 0
    export = yaml.safe_load((tmp_path / "best.yaml").read_text())
    runs = runs_of(url, "race")
    fresh = verdict_seeds(0, N_TRIALS)
    incumbent = standing(runs).incumbent
    fids = {(run.lam, run.seed): run.fid for run in runs if run.role == VERDICT}
    assert export["fresh_seeds"] is True and export["lambda"] == incumbent
    assert export["fid"]["value"] == pytest.approx(statistics.fmean(fids[incumbent, s] for s in fresh))
    difference = export["race"]["difference_to_control"]
    differences = [fids[incumbent, s] - fids[CONTROL, s] for s in fresh]
    assert difference["mean"] == pytest.approx(statistics.fmean(differences))
    assert difference["ci"] == pytest.approx(list(stats.ttest_1samp(differences, 0).confidence_interval(0.95)))
    assert export["race"]["seeds"] == fresh and export["control"] is None
    assert load_export(tmp_path / "best.yaml").to_dict() == export  # the file reads back as written


def test_the_race_is_reproducible_on_the_cpu(raced, tiny_study, tmp_path):
    url, _ = raced
    again = tmp_path / "again"
    again.mkdir()
    copy = (tmp_path / "race.toml").read_text().replace(str(tmp_path / "race.db"), str(again / "race.db"))
    (again / "race.toml").write_text(copy)
    assert main(["run", str(again / "race.toml")]) == 0
    assert runs_of(f"sqlite:///{again / 'race.db'}", "race") == runs_of(url, "race")


def test_a_race_too_small_for_its_verdict_is_refused(tiny_study, tmp_path, capsys):
    assert main(["run", str(race_file(tiny_study, n_trials=7))]) == 2
    assert "strategy = 'race' needs n_trials >= 8" in capsys.readouterr().err
    assert not (tmp_path / "race.db").exists()


def with_verdict_seeds(path: Path, seeds: int) -> Path:
    path.write_text(path.read_text().replace("[study]\n", f"[study]\nverdict_seeds = {seeds}\n", 1))
    return path


def test_check_and_run_refuse_verdict_seeds_that_leave_too_few_search_runs(tiny_study, tmp_path, capsys):
    path = with_verdict_seeds(race_file(tiny_study), 4)  # 8 of the 10 runs: 2 left to search
    for command in ("check", "run"):
        assert main([command, str(path)]) == 2
        error = capsys.readouterr().err
        assert "verdict_seeds = 4 takes 8 of the 10 runs, leaving 2 to search" in error
        assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "race.db").exists()


def test_verdict_seeds_cannot_change_once_the_race_started(tiny_study, tmp_path, capsys):
    path = race_file(tiny_study)
    # A race started from this file without verdict_seeds: its stored config says 0 (a quarter of n_trials).
    study = optuna.create_study(study_name="race", storage=f"sqlite:///{tmp_path / 'race.db'}")
    study.set_user_attr("config", load_config(path).to_dict())
    assert main(["run", str(with_verdict_seeds(path, 3))]) == 2
    error = capsys.readouterr().err
    assert "started with [study] verdict_seeds = 0; this file asks for [study] verdict_seeds = 3" in error
    assert len(error.strip().splitlines()) == 1 and study.get_trials() == []


@pytest.mark.slow
def test_three_workers_through_a_storage_proxy_run_one_race(tiny_study, tmp_path, warm_cache):
    """The race's claim runs in the proxy (`race.claim`, the proxy's ClaimRun), here on SQLite behind it."""
    database = f"sqlite:///{tmp_path / 'race.db'}"
    with storage_proxy(database) as proxy, workers(tmp_path, race_file(tiny_study, storage=proxy.url), 3) as started:
        codes = wait_all(started, 240)
        logs = "\n".join(worker.output[-2000:] for worker in started)
    assert codes == [0, 0, 0], logs
    assert "database is locked" not in logs
    assert_a_whole_paired_race(database, "race", N_TRIALS)


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_on_postgres_one_killed_mid_run(tiny_study, tmp_path, pg_url, warm_cache):
    path = race_file(tiny_study, storage=pg_url, steps=240, eval_every=80, checkpoint_every=20)
    checkpoints = tmp_path / "artifacts" / "race" / "checkpoints" / "race"  # checkpoints/<study>/trial-N.pt
    with workers(tmp_path, path, 3) as started:
        poll(lambda: any(checkpoints.glob("trial-*.pt")), 120, "a first checkpoint")
        storage = observer(pg_url)
        victim = poll(lambda: running_with_checkpoint(storage, "race", checkpoints), 60,
                      "a running λ > 0 run with a checkpoint", interval=0.05)
        signal_worker(started, pid_of(victim), signal.SIGKILL)
        codes = wait_all(started, 400)
        logs = "\n".join(worker.output[-2000:] for worker in started)
    assert sorted(codes) == [-signal.SIGKILL, 0, 0], logs
    assert_a_whole_paired_race(pg_url, "race", N_TRIALS)
    trials = optuna.load_study(study_name="race", storage=storage).get_trials()
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.params == victim.params
    assert {key: retry.user_attrs[key] for key in ("seed", "role")} == {
        key: victim.user_attrs[key] for key in ("seed", "role")}
    assert 20 <= retry.user_attrs["resumed_from_step"] < 240
    storage.engine.dispose()


def _running_verdict_run(storage: optuna.storages.BaseStorage) -> optuna.trial.FrozenTrial | None:
    if "race" not in optuna.get_all_study_names(storage):
        return None
    trials = optuna.load_study(study_name="race", storage=storage).get_trials(deepcopy=False,
                                                                             states=(TrialState.RUNNING,))
    return next((t for t in trials if t.user_attrs.get("role") == VERDICT and "worker" in t.user_attrs), None)


@pytest.mark.slow
def test_sigterm_mid_verdict_hands_the_run_back_and_the_next_worker_finishes_the_race(tiny_study, tmp_path,
                                                                                      warm_cache):
    """Preempted while the verdict trains the kept λ: that run resumes with its λ, seed and role; nothing is lost."""
    n_trials, steps = 8, 600
    path = race_file(tiny_study, n_trials=n_trials, steps=steps, eval_every=steps, checkpoint_every=0)
    url = f"sqlite:///{tmp_path / 'race.db'}"
    storage = observer(url)
    with workers(tmp_path, path, 1) as started:
        stopped = poll(lambda: _running_verdict_run(storage), 300, "the verdict's first run")
        time.sleep(0.5)  # inside its training
        started[0].process.send_signal(signal.SIGTERM)
        codes = wait_all(started, 90)
        output = started[0].output
    assert codes == [143], output
    [copy] = optuna.load_study(study_name="race", storage=storage).get_trials(states=(TrialState.WAITING,))
    assert copy.params == stopped.params and copy.user_attrs["role"] == VERDICT
    assert copy.user_attrs["seed"] == stopped.user_attrs["seed"] == verdict_seeds(0, n_trials)[0]

    with workers(tmp_path, path, 1) as [second]:
        assert wait_all([second], 300) == [0], second.output
    runs = assert_a_whole_paired_race(url, "race", n_trials)
    assert {run.lam for run in runs if run.role == VERDICT} == {stopped.params["lambda"], CONTROL}
    [retry] = [t for t in optuna.load_study(study_name="race", storage=storage).get_trials()
               if t.system_attrs.get("failed_trial") == stopped.number]
    assert 0 < retry.user_attrs["resumed_from_step"] < steps
    storage.engine.dispose()


def test_the_report_shows_the_search_its_curve_the_incumbents_path_and_the_verdict(raced, tmp_path):
    url, out = raced
    assert main(["report", "--storage", url, "--study", "race", "-o", str(tmp_path / "race.html")]) == 0
    page = (tmp_path / "race.html").read_text()
    runs = runs_of(url, "race")
    incumbent = standing(runs).incumbent
    verdict_text = verdict_of(out)
    assert "The race: λ on one shared seed" in page and html.escape(verdict_text) in page
    assert f"{incumbent:.4g}" in page.split("in turn: ")[1].split("</p>")[0]
    assert 'id="race"' in page and "fitted curve, 95% band" in page
    # The lead names the search run of the λ kept, not a lucky verdict run on another seed.
    kept = next(t for t in optuna.load_study(study_name="race", storage=url).get_trials()
                if t.user_attrs["role"] == SEARCH and t.params["lambda"] == incumbent)
    assert f"Kept by the race: trial {kept.number}, λ = {incumbent:.4g}, FID = {kept.value:.4f}" in page
    # The optimization history is the search's: no verdict run on a fresh seed counts as a search result.
    study = optuna.load_study(study_name="race", storage=url)
    history = gather_report(study, FileSystemArtifactStore(str(tmp_path))).history
    assert {point.number for point in history} == {
        t.number for t in study.get_trials() if t.user_attrs["role"] == SEARCH and t.value is not None}
    assert kept.number in {point.number for point in history}
    for run in runs:
        if run.role == VERDICT and run.lam == CONTROL:
            assert f"<td class=n>{run.seed}</td>" in page and f"<td class=n>{run.fid:.4f}</td>" in page


@needs_chromium
def test_chromium_draws_the_race_report_without_script_errors(raced, tmp_path):
    url, _ = raced
    report = tmp_path / "race.html"
    assert main(["report", "--storage", url, "--study", "race", "-o", str(report)]) == 0
    dom = _chromium(report, tmp_path / "profile", "--dump-dom")
    assert '<pre class="js-error">' not in dom
    # The race's figure comes first and carries plotly.js: every figure after it is drawn too.
    assert dom.count('class="plot-container') == len(FIGURE_IDS) + 1
    race = dom[dom.index('id="race"'):dom.index(f'id="{FIGURE_IDS[0]}"')]
    assert 'class="main-svg"' in race and "verdict on fresh seeds" in race


def test_status_lists_every_run_with_its_seed_and_role(raced, capsys):
    url, out = raced
    assert main(["status", "--storage", url, "--study", "race"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[-2:] == ["seed", "role"]
    listed = sorted((line.split()[2], line.split()[-2], line.split()[-1]) for line in lines[1:-1])
    assert listed == sorted((f"{run.lam:.4g}", str(run.seed), run.role) for run in runs_of(url, "race"))
    assert lines[-1] == verdict_of(out)


def test_a_worker_with_another_strategy_is_refused(raced, tiny_study, capsys):
    url, _ = raced
    sweep = tiny_study(name="race", n_trials=N_TRIALS, strategy="sweep")
    assert main(["run", str(sweep)]) == 2
    error = capsys.readouterr().err
    assert "started with [study] strategy = 'race'; this file asks for [study] strategy = 'sweep'" in error
    assert len(error.strip().splitlines()) == 1
    assert len(optuna.load_study(study_name="race", storage=url).get_trials()) == N_TRIALS - len(
        optuna.load_study(study_name="race.control", storage=url).get_trials())


@pytest.mark.slow
def test_a_race_with_verdict_seeds_searches_with_what_they_leave(tiny_study, tmp_path, capsys):
    # 12 runs, 4 verdict seeds: 8 verdict runs and 4 search runs (the default would take 3 seeds and search 6).
    path = with_verdict_seeds(race_file(tiny_study, n_trials=12), 4)
    assert main(["run", str(path)]) == 0
    runs = runs_of(f"sqlite:///{tmp_path / 'race.db'}", "race")
    assert len(runs) == 12 and sum(run.role == SEARCH for run in runs) == search_budget(12, 4) == 4
    assert sorted({run.seed for run in runs if run.role == VERDICT}) == verdict_seeds(0, 12, 4)
    assert any(line.startswith("race verdict:") and "on 4 fresh seeds" in line
               for line in capsys.readouterr().out.splitlines())
