"""Fault injection: a worker killed at each named point of a trial's life loses nothing and duplicates nothing.

A first worker process runs with ``LAMBDA_SEARCH_FAULT`` (`lambda_search.sweep.faults`): it
sends itself SIGTERM or SIGKILL at one point. A second worker (`run` in the test's process,
to spare an interpreter start) then runs the study to the end. A race's workers are killed in
turn at several points, each meeting what the last left, before one finishes the race.
Whatever the point: exactly `n_trials` finished, nothing RUNNING or WAITING, every λ any
trial was given scored once, and the retry resumed from the checkpoint step promised.
Steps 20, evaluations and checkpoints every 10, heartbeat 1 s (a killed trial is stale in 2 s).
"""

from __future__ import annotations

import contextlib
import signal

import optuna
import pytest
import torch
from _workers import observer, start_worker, storage_proxy, wait_all
from optuna.trial import TrialState

from lambda_search.cli import main
from lambda_search.names import PARAM, PREEMPTED, control_name
from lambda_search.sweep.faults import ENV, POINTS
from lambda_search.sweep.race.rule import Done, next_run
from lambda_search.sweep.race.runs import race_runs

pytestmark = pytest.mark.slow

STEPS = 20
CHECKPOINT = 10  # checkpoint_every: the step a SIGKILLed trial resumes from once past it

# One signal per point, the one whose path is the point's own: SIGKILL where the point is about
# a crash (the claim, a checkpoint to resume from, the hand-back's two writes), SIGTERM where it
# is about the grace period (before the first step, inside the final evaluation, while the
# trial is told). The other signal takes a path another point takes: a SIGTERM before the last
# step is mid-training's preemption, a SIGKILL after a checkpoint is mid-training's resume, a
# second signal inside the hand-back is a crash there. Each with the step its retry resumes
# from (None: step 0, no checkpoint).
RESUMED_FROM = {
    ("claim", signal.SIGKILL): None,
    # SIGTERM is acted on after the next step, which checkpoints.
    ("setup", signal.SIGTERM): 1,
    ("mid-training", signal.SIGKILL): CHECKPOINT,
    ("last-step", signal.SIGKILL): CHECKPOINT,
    # SIGTERM lets the final evaluation finish and checkpoints at the last step with its curve:
    # the retry resumes into telling it. Killed in the λ = 0 control, which runs first: one case for both.
    ("final-evaluation", signal.SIGTERM): STEPS,
    # Told as the signal comes: nothing is retried.
    ("tell", signal.SIGTERM): None,
    # Preempted at mid-training (checkpoint at 10), then killed inside the hand-back.
    ("hand-back", signal.SIGKILL): CHECKPOINT,
}
LONE = list(RESUMED_FROM)


def _armed(point: str, signum: signal.Signals) -> str:
    if point == "hand-back":  # only a preempted trial is handed back: preempt it first
        return f"mid-training:SIGTERM,hand-back:{signum.name}"
    return f"{point}:{signum.name}"


def killed(tmp_path, path, armed: str) -> None:
    """A worker process armed at `armed` (``point:SIGNAL``, several joined by commas), run until it has
    killed itself at the last of them."""
    point, _, name = armed.rsplit(",", 1)[-1].partition(":")
    first = start_worker(tmp_path, path, env={ENV: armed})
    try:
        [code] = wait_all([first], 120)
    finally:
        if first.process.poll() is None:
            first.process.kill()
    assert f"fault injected: {name} at {point}" in first.output, first.output
    if name == "SIGKILL":
        assert code == -signal.SIGKILL, first.output


def finish(tmp_path, path) -> None:
    """Run the study to its end in this process (one interpreter start spared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.chdir(tmp_path):  # where the killed workers ran: a PostgreSQL study's ./artifacts
            assert main(["run", str(path)]) == 0
    finally:
        torch.set_num_threads(threads)


def kill_and_finish(tiny_study, tmp_path, url: str, point: str, signum: signal.Signals, fuse: int,
                    database: str | None = None, control: bool = False) -> None:
    """`database`: the SQL storage behind `url` when `url` is a gRPC proxy's. With `control`, the
    λ = 0 control runs first (`study.run_study`), so it is the trial killed."""
    name = "faults"
    n_trials = fuse
    path = tiny_study(name=name, storage=url, n_trials=n_trials, steps=STEPS, eval_every=CHECKPOINT,
                      checkpoint_every=CHECKPOINT, control=control, fuse=fuse)
    armed = _armed(point, signum)
    killed(tmp_path, path, armed)
    finish(tmp_path, path)
    storage = observer(database or url)
    killed_trials = optuna.load_study(study_name=control_name(name) if control else name, storage=storage).get_trials()
    _check(killed_trials, 1 if control else n_trials, RESUMED_FROM[point, signum])
    if control:
        _check(optuna.load_study(study_name=name, storage=storage).get_trials(), n_trials, None)
    storage.engine.dispose()


def _check(trials: list[optuna.trial.FrozenTrial], n_trials: int, resumed_from: int | None) -> None:
    summary = [(t.number, t.state.name, t.params.get(PARAM), t.user_attrs.get("fail_reason"),
                t.user_attrs.get("resumed_from_step")) for t in trials]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials, summary
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], summary
    lams = [t.params[PARAM] for t in finished]
    assert len(set(lams)) == len(lams), summary  # no λ scored twice
    # And every λ given out was scored (a claim killed before its λ was sampled gave out none).
    assert {t.params[PARAM] for t in trials if PARAM in t.params} == set(lams), summary
    assert sorted(t.user_attrs.get("resumed_from_step", -1) for t in finished) == \
        [-1 if resumed_from is None else resumed_from] * n_trials, summary
    for trial in finished:
        assert sorted(trial.intermediate_values) == [CHECKPOINT, STEPS], summary  # the curve is whole
        assert trial.user_attrs["steps"] == STEPS
        origin = trial.system_attrs.get("failed_trial")
        if origin is not None and STEPS in trials[origin].intermediate_values:
            # Stopped after its final FID was reported: the retry reports that same FID.
            assert trial.value == trials[origin].intermediate_values[STEPS], summary


def test_the_lone_matrix_covers_every_point():
    assert {point for point, _ in LONE} == set(POINTS)


@pytest.mark.parametrize(("point", "signum"), LONE, ids=lambda v: getattr(v, "name", v))
def test_a_worker_killed_at_any_point_of_a_lone_trial_loses_and_duplicates_nothing(
        tiny_study, tmp_path, warm_cache, point, signum):
    kill_and_finish(tiny_study, tmp_path, f"sqlite:///{tmp_path / 'faults.db'}", point, signum, fuse=1,
                    control=point == "final-evaluation")


def test_a_fused_worker_killed_in_its_final_evaluation_loses_no_member(tiny_study, tmp_path, warm_cache):
    """Fusion changes this path: the members are scored in turn within one job, so one signal stops them all."""
    kill_and_finish(tiny_study, tmp_path, f"sqlite:///{tmp_path / 'faults.db'}", "final-evaluation", signal.SIGTERM,
                    fuse=2)


@pytest.mark.postgres
@pytest.mark.parametrize(("point", "fuse"), [("claim", 1), ("hand-back", 2)], ids=str)
def test_a_worker_killed_in_its_claim_or_hand_back_on_postgres_loses_and_duplicates_nothing(
        tiny_study, tmp_path, pg_url, warm_cache, point, fuse):
    """The two points where PostgreSQL's own locking and transactions are on the path."""
    kill_and_finish(tiny_study, tmp_path, pg_url, point, signal.SIGKILL, fuse)


@pytest.mark.postgres
def test_a_worker_killed_inside_the_hand_back_through_the_proxy_loses_and_duplicates_nothing(
        tiny_study, tmp_path, pg_url, warm_cache):
    with storage_proxy(pg_url) as proxy:
        kill_and_finish(tiny_study, tmp_path, proxy.url, "hand-back", signal.SIGKILL, 1, database=pg_url)


# A race's workers killed in turn, each at its own point; each next worker meets what the last
# left: the λ = 0 run told as SIGTERM comes (the worker leaves nothing behind), a proposed run
# killed in its claim before its λ is sampled, that run's retry preempted mid-run and handed
# back, a run killed mid-run after its checkpoint, and that run's retry killed in its claim.
RACE_KILLS = ("tell:SIGTERM", "claim:SIGKILL", "mid-training:SIGTERM", "mid-training:SIGKILL", "claim:SIGTERM")
RACE_RUNS = 8  # the smallest race: 2 search runs (λ = 0 and one λ), then 3 verdict seeds × 2


def test_a_race_whose_workers_are_killed_in_claims_and_mid_run_scores_every_run_once(tiny_study, tmp_path,
                                                                                      warm_cache):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    path = tiny_study(name="race", storage=url, n_trials=RACE_RUNS, strategy="race", steps=STEPS,
                      eval_every=CHECKPOINT, checkpoint_every=CHECKPOINT)
    for armed in RACE_KILLS:
        killed(tmp_path, path, armed)
    finish(tmp_path, path)
    storage = observer(url)
    study = optuna.load_study(study_name="race", storage=storage)
    control = optuna.load_study(study_name=control_name("race"), storage=storage)
    trials = study.get_trials() + control.get_trials()
    summary = [(t.number, t.state.name, t.params.get(PARAM), t.user_attrs.get("seed"), t.user_attrs.get("role"),
                t.user_attrs.get("fail_reason")) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], summary
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == RACE_RUNS, summary
    runs = race_runs(study, control)
    assert len(runs) == RACE_RUNS and all(run.finished for run in runs), summary
    scored = [(run.lam, run.seed) for run in runs]
    assert len(set(scored)) == RACE_RUNS, summary  # no run scored twice
    # And every run given out (a λ and a seed) was scored: a claim killed before its λ gave out none.
    given = {(t.params[PARAM], t.user_attrs["seed"]) for t in trials if PARAM in t.params}
    assert given == set(scored), summary
    assert isinstance(next_run(runs, RACE_RUNS, 0), Done)
    reasons = [t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL]
    assert PREEMPTED in reasons, summary  # the hand-back's original
    storage.engine.dispose()
