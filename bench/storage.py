"""Per-trial storage overhead as a study grows: trial 10 vs trial 1,000, SQLite and PostgreSQL.

Each trial goes through the worker's real path — claim under the worker lock
(stale check, counting), ask, heartbeat, report, set attributes, tell — with a
trivial objective, so what is timed is the storage.

    python bench/storage.py [--trials 1000] [--postgres postgresql+psycopg://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import optuna
import sqlalchemy
from _common import print_table, write_json

from lambda_search.config import config_from_dict
from lambda_search.names import PARAM
from lambda_search.sweep.storage import open_storage
from lambda_search.sweep.trial import claim_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def time_trials(url: str, n_trials: int) -> list[float]:
    config = config_from_dict({"study": {"name": "bench", "storage": url, "n_trials": n_trials}})
    storage = open_storage(url)
    sampler = optuna.samplers.RandomSampler(seed=0)  # storage is what is timed, not the sampler
    study = optuna.create_study(study_name="bench", storage=storage, sampler=sampler, direction="minimize")
    # The attributes claim_trials reads: a sweep (not the control) of n_trials.
    worker = SimpleNamespace(study=study, storage=storage, config=config, n_trials=n_trials, control=False)
    seconds = []
    for _ in range(n_trials):
        started = time.perf_counter()
        (trial,) = claim_trials(worker, 1)
        lam = trial.params[PARAM]  # asked for by claim_trials, as a worker's trial is
        for step in (100, 200, 300):
            trial.report(lam, step)
        trial.set_user_attr("steps", 300)
        trial.set_user_attr("seconds", 1.0)
        study.tell(trial, lam)
        seconds.append(time.perf_counter() - started)
    return seconds


def summarize(backend: str, seconds: list[float]) -> dict[str, object]:
    early = statistics.median(seconds[5:15])
    late = statistics.median(seconds[-10:])
    return {"backend": backend, "trials": len(seconds), "ms_at_10": early * 1e3, "ms_at_end": late * 1e3,
            "growth": late / early}


def postgres_database(server: str) -> tuple[str, sqlalchemy.Engine, str]:
    name = f"lambda_bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    return str(sqlalchemy.engine.make_url(server).set(database=name)), admin, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        rows.append(summarize("sqlite", time_trials(f"sqlite:///{Path(directory) / 'bench.db'}", args.trials)))
    if args.postgres:
        url, admin, name = postgres_database(args.postgres)
        try:
            rows.append(summarize("postgresql", time_trials(url, args.trials)))
        finally:
            with admin.connect() as connection:
                connection.execute(sqlalchemy.text(
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
                connection.execute(sqlalchemy.text(f'DROP DATABASE "{name}"'))
    print_table(rows)
    print(f"wrote {write_json('storage', {'rows': rows})}")


if __name__ == "__main__":
    main()
