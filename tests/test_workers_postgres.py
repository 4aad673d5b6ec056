"""Many `run` processes on one PostgreSQL study: a killed worker loses nothing, n_trials holds exactly."""

from __future__ import annotations

import datetime
import signal
import time

import optuna
import pytest
import sqlalchemy
from _workers import (
    OBSERVER,
    observer,
    pid_of,
    poll,
    running_with_checkpoint,
    signal_worker,
    states,
    wait_all,
    workers,
)
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from lambda_search.names import PARAM

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_a_worker_killed_mid_trial_loses_nothing(tiny_study, tmp_path, pg_url, warm_cache):
    # 240 steps: a few seconds per trial on one core, the first checkpoint at step 20.
    path = tiny_study(name="killed", storage=pg_url, n_trials=6, steps=240, eval_every=80, checkpoint_every=20)
    checkpoints = tmp_path / "artifacts" / "killed" / "checkpoints" / "killed"
    with workers(tmp_path, path, 3) as started:
        # The three start together on an empty database: they create the tables concurrently.
        poll(lambda: any(checkpoints.glob("trial-*.pt")), 90, "a first checkpoint")
        storage = observer(pg_url)
        victim = poll(lambda: running_with_checkpoint(storage, "killed", checkpoints), 30,
                      "a running trial with a checkpoint", interval=0.05)
        killed = signal_worker(started, pid_of(victim), signal.SIGKILL)
        codes = wait_all(started, 120)
        logs = "\n".join(worker.output[-2000:] for worker in started)
    assert sorted(codes) == [-signal.SIGKILL, 0, 0], logs
    assert killed.process.returncode == -signal.SIGKILL

    trials = optuna.load_study(study_name="killed", storage=storage).get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 6, logs
    assert len(trials) == 7  # 6 COMPLETE + the killed one; no overshoot
    assert trials[victim.number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params[PARAM] == victim.params[PARAM]
    assert 20 <= retry.user_attrs["resumed_from_step"] < 240
    assert retry.user_attrs["resumed_from_step"] % 20 == 0
    # Intermediate FIDs continue the killed trial's curve: evaluations at 80, 160, 240, none twice.
    assert sorted(retry.intermediate_values) == [80, 160, 240]
    assert any(f"resumes trial {victim.number}" in worker.output for worker in started)
    # A finished trial leaves no checkpoint behind; only the killed one's file may be overwritten and removed.
    assert not list(checkpoints.glob("trial-*.pt"))
    assert states(storage, "killed.control") == {"COMPLETE": 1}  # three workers, one λ = 0 control
    storage.engine.dispose()


@pytest.mark.parametrize("fuse", [1, 2], ids=["lone", "fused"])
def test_workers_survive_terminated_connections(tiny_study, tmp_path, pg_url, warm_cache, fuse):
    """pg_terminate_backend on every worker connection, twice, while trials train: nothing lost.

    Also exactly n_trials: 3 workers, 5 trials. Counting only finished trials (Optuna's
    MaxTrialsCallback) would let the idle third worker start a sixth in the last round.
    Fused groups end by the same policy as lone trials (`trial_outcome`): handed back, retried.
    """
    path = tiny_study(name="blinks", storage=pg_url, n_trials=5, steps=240, eval_every=80, checkpoint_every=0,
                      fuse=fuse)
    database = sqlalchemy.engine.make_url(pg_url).database
    admin = sqlalchemy.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    terminate = sqlalchemy.text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = :name AND pid <> pg_backend_pid() AND application_name <> :observer")
    storage = None

    def training(storage: optuna.storages.BaseStorage) -> int:
        # Running for a second: past the claim and setup, inside training, like most of a worker's time.
        now = datetime.datetime.now()
        running = optuna.load_study(study_name="blinks", storage=storage).get_trials(
            deepcopy=False, states=(TrialState.RUNNING,))
        return sum((now - t.datetime_start).total_seconds() > 1 for t in running if t.datetime_start)

    try:
        with workers(tmp_path, path, 3) as started:
            storage = observer(pg_url)
            # Not the artifacts folder: it is made (and proven writable) before the study is created.
            poll(lambda: "blinks" in optuna.get_all_study_names(storage), 90, "the workers to open the study")
            terminated = []
            for _ in range(2):
                poll(lambda: training(storage) >= 2, 60, "two trials in training")
                # Everything but this admin connection: the workers' pools, heartbeats and locks.
                with admin.connect() as connection:
                    result = connection.execute(terminate, {"name": database, "observer": OBSERVER})
                    terminated.append(result.scalar())
                time.sleep(1.5)
            codes = wait_all(started, 120)
            logs = "\n".join(worker.output[-2000:] for worker in started)
        assert codes == [0, 0, 0], logs
        assert all(count >= 3 for count in terminated)
        counts = states(storage, "blinks")
        assert counts.get("COMPLETE") == 5 and set(counts) <= {"COMPLETE", "FAIL"}, logs
        # A connection lost mid-trial (rather than mid-claim) leaves that trial to go stale:
        # FAIL, then retried with the same λ. Nothing lost means every such retry completed.
        trials = optuna.load_study(study_name="blinks", storage=storage).get_trials(deepcopy=False)
        retried = {number for trial in trials if trial.state.name == "COMPLETE"
                   for number in RetryHeartbeatStaleTrialCallback.retry_history(trial)}
        assert all(trial.number in retried for trial in trials if trial.state.name == "FAIL"), logs
        # The control too is trained to completion exactly once, however its connections fared.
        assert states(storage, "blinks.control").get("COMPLETE") == 1, logs
    finally:
        admin.dispose()
        if storage is not None:
            storage.engine.dispose()
