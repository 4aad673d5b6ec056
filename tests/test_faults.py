"""Fault injection: a worker killed at each named point of a trial's life loses nothing and duplicates nothing.

A first worker process runs with ``LAMBDA_SEARCH_FAULT`` (`lambda_search.sweep.faults`): it
sends itself SIGTERM or SIGKILL at one point. A second worker (`run` in the test's process,
to spare an interpreter start) then runs the study to the end.
Whatever the point: exactly `n_trials` finished, nothing RUNNING or WAITING, every λ any
trial was given scored once, and the retry resumed from the checkpoint step promised.
Steps 20, evaluations and checkpoints every 10, heartbeat 1 s (a killed trial is stale in 2 s).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys

import optuna
import pytest
import torch
from _workers import observer, start_worker, wait_all
from optuna.trial import TrialState

from lambda_search.cli import main
from lambda_search.names import PARAM, control_name
from lambda_search.sweep.faults import ENV, POINTS

pytestmark = pytest.mark.slow

STEPS = 20
CHECKPOINT = 10  # checkpoint_every: the step a SIGKILLed trial resumes from once past it

# Where the retry resumes (None: from step 0, no checkpoint) after a kill at each point.
RESUMED_FROM = {
    ("claim", signal.SIGTERM): None, ("claim", signal.SIGKILL): None,
    # SIGTERM is acted on after the next step, which checkpoints; SIGKILL comes before any checkpoint.
    ("setup", signal.SIGTERM): 1, ("setup", signal.SIGKILL): None,
    ("mid-training", signal.SIGTERM): CHECKPOINT, ("mid-training", signal.SIGKILL): CHECKPOINT,
    # SIGTERM lets the final evaluation finish and checkpoints at the last step with its curve:
    # the retry resumes into telling it; SIGKILL loses what came after the last checkpoint.
    ("last-step", signal.SIGTERM): STEPS, ("last-step", signal.SIGKILL): CHECKPOINT,
    ("final-evaluation", signal.SIGTERM): STEPS, ("final-evaluation", signal.SIGKILL): CHECKPOINT,
    # SIGTERM while the trial is told: it is told, nothing is retried.
    ("tell", signal.SIGTERM): None, ("tell", signal.SIGKILL): CHECKPOINT,
    # Preempted at mid-training (checkpoint at 10), then the signal inside the hand-back.
    ("hand-back", signal.SIGTERM): CHECKPOINT, ("hand-back", signal.SIGKILL): CHECKPOINT,
}


def _armed(point: str, signum: signal.Signals) -> str:
    if point == "hand-back":  # only a preempted trial is handed back: preempt it first
        return f"mid-training:SIGTERM,hand-back:{signum.name}"
    return f"{point}:{signum.name}"


def kill_and_finish(tiny_study, tmp_path, url: str, point: str, signum: signal.Signals, fuse: int,
                    database: str | None = None, control: bool = False) -> None:
    """`database`: the SQL storage behind `url` when `url` is a gRPC proxy's. With `control`, the
    λ = 0 control runs first (`study.run_study`), so it is the trial killed."""
    name = "faults"
    n_trials = fuse
    path = tiny_study(name=name, storage=url, n_trials=n_trials, steps=STEPS, eval_every=CHECKPOINT,
                      checkpoint_every=CHECKPOINT, control=control, fuse=fuse)
    first = start_worker(tmp_path, path, env={ENV: _armed(point, signum)})
    try:
        [code] = wait_all([first], 120)
    finally:
        if first.process.poll() is None:
            first.process.kill()
    assert f"fault injected: {signum.name} at {point}" in first.output, first.output
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL, first.output
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.chdir(tmp_path):  # where the first worker ran: a PostgreSQL study's ./artifacts
            assert main(["run", str(path)]) == 0
    finally:
        torch.set_num_threads(threads)
    storage = observer(database or url)
    killed = optuna.load_study(study_name=control_name(name) if control else name, storage=storage).get_trials()
    _check(killed, 1 if control else n_trials, RESUMED_FROM[point, signum])
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


# Every point, with the signal whose path is its own (RESUMED_FROM holds both for each; a
# SIGTERM before the last step and a SIGKILL after a checkpoint take the paths mid-training and
# tell take), and both at the two points that lost or duplicated trials.
LONE = [("claim", signal.SIGKILL), ("setup", signal.SIGTERM), ("mid-training", signal.SIGKILL),
        ("last-step", signal.SIGKILL), ("final-evaluation", signal.SIGTERM), ("final-evaluation", signal.SIGKILL),
        ("tell", signal.SIGTERM), ("hand-back", signal.SIGTERM), ("hand-back", signal.SIGKILL)]


def test_the_lone_matrix_covers_every_point():
    assert {point for point, _ in LONE} == set(POINTS)
    assert {point for point, _ in RESUMED_FROM} == set(POINTS)


@pytest.mark.parametrize(("point", "signum"), LONE, ids=lambda v: getattr(v, "name", v))
def test_a_worker_killed_at_any_point_of_a_lone_trial_loses_and_duplicates_nothing(
        tiny_study, tmp_path, warm_cache, point, signum):
    kill_and_finish(tiny_study, tmp_path, f"sqlite:///{tmp_path / 'faults.db'}", point, signum, fuse=1)


@pytest.mark.parametrize(("point", "signum"), [("final-evaluation", signal.SIGTERM), ("hand-back", signal.SIGKILL)],
                         ids=lambda v: getattr(v, "name", v))
def test_a_fused_worker_killed_at_a_point_loses_no_member(tiny_study, tmp_path, warm_cache, point, signum):
    kill_and_finish(tiny_study, tmp_path, f"sqlite:///{tmp_path / 'faults.db'}", point, signum, fuse=2)


def test_the_control_killed_in_its_final_evaluation_resumes_into_it(tiny_study, tmp_path, warm_cache):
    kill_and_finish(tiny_study, tmp_path, f"sqlite:///{tmp_path / 'faults.db'}", "final-evaluation", signal.SIGTERM,
                    fuse=1, control=True)


@pytest.mark.postgres
@pytest.mark.parametrize(("point", "signum", "fuse"), [
    ("claim", signal.SIGKILL, 1), ("final-evaluation", signal.SIGTERM, 1), ("hand-back", signal.SIGKILL, 2)],
    ids=lambda v: getattr(v, "name", str(v)))
def test_a_worker_killed_at_a_point_on_postgres_loses_and_duplicates_nothing(
        tiny_study, tmp_path, pg_url, warm_cache, point, signum, fuse):
    kill_and_finish(tiny_study, tmp_path, pg_url, point, signum, fuse)


@pytest.mark.postgres
def test_a_worker_killed_inside_the_hand_back_through_the_proxy_loses_and_duplicates_nothing(
        tiny_study, tmp_path, pg_url, warm_cache):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proxy = subprocess.Popen([sys.executable, "-m", "lambda_search", "storage-proxy", "--storage", pg_url,
                              "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port).wait_server_ready(timeout=60)
        kill_and_finish(tiny_study, tmp_path, f"grpc://127.0.0.1:{port}", "hand-back", signal.SIGKILL, 1,
                        database=pg_url)
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
