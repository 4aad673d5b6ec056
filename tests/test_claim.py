"""The claim (`storage.claim`): K trials per call, waiting copies first, λ as `ask` samples it, a bounded lock wait;
the race's claim (`sweep.race.claim`) lost with its session."""

from __future__ import annotations

import threading

import optuna
import pytest
import sqlalchemy
from optuna.distributions import FloatDistribution

from lambda_search.errors import StorageError
from lambda_search.names import PARAM, control_name
from lambda_search.sweep.race import claim as race_claim
from lambda_search.sweep.race.rule import next_run
from lambda_search.sweep.storage import locks, open_storage
from lambda_search.sweep.storage.access import retry_callback
from lambda_search.sweep.storage.claim import claim_trials

LAMBDA = {"lambda": FloatDistribution(1e-6, 1.0, log=True)}


def _study(url: str, name: str) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    storage = open_storage(url, heartbeat_seconds=5, max_retries=2)
    sampler = optuna.samplers.TPESampler(seed=3, n_startup_trials=2)
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler, load_if_exists=True), storage


def _claim(study: optuna.Study, storage: optuna.storages.BaseStorage, n_trials: int, limit: int) -> list[optuna.Trial]:
    return claim_trials(study, storage, n_trials, limit, LAMBDA, heartbeat_seconds=5, max_retries=2, wait=False)


def test_one_claim_starts_k_trials_each_beating_and_never_more_than_n_trials(tmp_path):
    study, storage = _study(f"sqlite:///{tmp_path / 'k.db'}", "k")
    study.enqueue_trial({"lambda": 0.25})
    first = _claim(study, storage, n_trials=5, limit=3)
    assert [trial.number for trial in first] == [0, 1, 2]
    assert first[0].params["lambda"] == 0.25  # the waiting trial first, with its λ
    assert len({trial.params["lambda"] for trial in first}) == 3
    second = _claim(study, storage, n_trials=5, limit=3)
    assert [trial.number for trial in second] == [3, 4]  # 2 of 3: the study needs no more
    assert _claim(study, storage, n_trials=5, limit=3) == []
    with sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'k.db'}").connect() as connection:
        beating = connection.execute(sqlalchemy.text("SELECT count(*) FROM trial_heartbeats")).scalar_one()
    assert beating == 5 and all(trial.state.name == "RUNNING" for trial in study.trials)


def test_claimed_trials_get_the_lambda_sequence_of_ask(tmp_path):
    url = f"sqlite:///{tmp_path / 'seq.db'}"
    claimed, storage = _study(url, "claimed")
    asked, _ = _study(url, "asked")
    for _ in range(5):
        (trial,) = _claim(claimed, storage, n_trials=5, limit=1)
        claimed.tell(trial, trial.params["lambda"])
        other = asked.ask(LAMBDA)
        asked.tell(other, other.params["lambda"])
    assert [t.params for t in claimed.trials] == [t.params for t in asked.trials]


def test_a_lock_held_past_the_wait_is_one_clear_error(pg_url, monkeypatch):
    study, storage = _study(pg_url, "held")
    monkeypatch.setattr(locks, "LOCK_WAIT_SECONDS", 1)
    engine = sqlalchemy.create_engine(pg_url, poolclass=sqlalchemy.NullPool)
    with engine.connect() as holder:
        key = locks.lock_key(locks.lock_name("held"))
        holder.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        with pytest.raises(StorageError, match="waited 1 s for the lock 'lambda-search:held'"):
            _claim(study, storage, n_trials=1, limit=1)
    assert study.trials == []


def test_a_lock_holder_whose_session_is_terminated_mid_claim_starts_nothing(pg_url):
    """The holder counted 0 of 1 and waits to insert; its session is terminated, another worker claims:
    one trial in all (a session lock kept by a worker that lives on would start a second)."""
    study, _ = _study(pg_url, "term")
    engine = sqlalchemy.create_engine(pg_url, poolclass=sqlalchemy.NullPool)
    claimed: list[list[optuna.Trial]] = []

    def worker() -> None:
        own, storage = _study(pg_url, "term")
        claimed.append(_claim(own, storage, n_trials=1, limit=1))

    key = locks.lock_key(locks.lock_name("term")) & (2**64 - 1)

    def advisory(granted: bool) -> list[int]:  # the backends holding (or waiting for) the study's lock
        with engine.connect() as connection:
            return list(connection.execute(sqlalchemy.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted = :granted "
                "AND classid::bigint = :high AND objid::bigint = :low"),
                {"granted": granted, "high": key >> 32, "low": key & (2**32 - 1)}).scalars())

    with engine.connect() as blocker:  # holds the study's row: the holder stops right before it inserts
        blocker.execute(sqlalchemy.text("SELECT study_id FROM studies FOR UPDATE"))
        threads = [threading.Thread(target=worker) for _ in range(2)]
        threads[0].start()
        holder = _poll(lambda: advisory(True))[0]
        _poll(lambda: _waiting_on_row(engine, holder))
        threads[1].start()
        _poll(lambda: advisory(False))  # the second worker waits for the lock
        with engine.connect() as admin:
            assert admin.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": holder}).scalar_one()
        blocker.commit()
    for thread in threads:
        thread.join(60)
    assert sorted(len(trials) for trials in claimed) == [0, 1]
    assert [trial.state.name for trial in study.trials] == ["RUNNING"]


def test_a_race_claim_whose_session_is_terminated_after_deciding_starts_no_run(pg_url, monkeypatch):
    """The lock's session dies between the race's decision and its insert: no run was started (a
    session lock kept by a worker that lives on would let it insert from a stale decision); the
    next claim starts the run the rule asks for, whole."""
    study, database = _study(pg_url, "term-race")
    control, _ = _study(pg_url, control_name("term-race"))
    assert isinstance(database, optuna.storages.RDBStorage)
    rules = race_claim.RaceRules(n_trials=8, seed=0, verdict_seeds=0, lambda_low=1e-4, lambda_high=1e-2)
    engine = sqlalchemy.create_engine(pg_url, poolclass=sqlalchemy.NullPool)
    key = locks.lock_key(locks.lock_name("term-race")) & (2**64 - 1)

    def decided_then_cut_off(*args: object) -> object:
        action = next_run(*args)  # type: ignore[arg-type]
        with engine.connect() as admin:
            [holder] = admin.execute(sqlalchemy.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid::bigint = :high AND objid::bigint = :low"), {"high": key >> 32, "low": key & (2**32 - 1)}
            ).scalars()
            assert admin.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": holder}).scalar_one()
        return action

    def claim_run() -> race_claim.ClaimedRun:
        return race_claim.claim_run(database, study, control, rules, 10.0, retry_callback(2))

    monkeypatch.setattr(race_claim, "next_run", decided_then_cut_off)
    with pytest.raises(sqlalchemy.exc.DBAPIError):
        claim_run()
    assert study.get_trials() == [] and control.get_trials() == []
    monkeypatch.undo()
    claimed = claim_run()
    assert claimed.control and claimed.trial_id is not None  # the race starts with λ = 0
    [run] = control.get_trials()
    assert run.state.name == "RUNNING" and run.params == {PARAM: 0.0}
    assert run.user_attrs == {"seed": 0, "role": "search"}
    engine.dispose()


def _waiting_on_row(engine: sqlalchemy.Engine, pid: int) -> bool:
    with engine.connect() as connection:
        return bool(connection.execute(sqlalchemy.text(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar())


def _poll(condition, timeout: float = 30):  # type: ignore[no-untyped-def]
    from _workers import poll

    return poll(condition, timeout, "the claim to reach its lock", interval=0.05)
