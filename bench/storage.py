"""Per-trial storage overhead: as a study grows (trial 10 vs 1,000, SQLite and PostgreSQL), and as
workers are added (1, 8, 32 processes on PostgreSQL, directly and through the gRPC storage proxy).

Each trial goes through the worker's real path — claim under the worker lock
(stale check, counting), ask, heartbeat, report, set attributes, tell — with a
trivial objective, so what is timed is the storage.

    python bench/storage.py [--trials 1000] [--postgres postgresql+psycopg://postgres@127.0.0.1/postgres]
    python bench/storage.py --workers 1 8 32 [--per-worker 20]   # direct vs proxy, pg_stat_activity
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
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
from lambda_search.sweep.storage import open_storage, worker_lock
from lambda_search.sweep.trial import claim_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def time_trials(url: str, n_trials: int, seed: int = 0) -> list[float]:
    """Seconds per trial for one worker until the study holds `n_trials` (other workers may share it)."""
    config = config_from_dict({"study": {"name": "bench", "storage": url, "n_trials": n_trials}})
    storage = open_storage(url)
    sampler = optuna.samplers.RandomSampler(seed=seed)  # storage is what is timed, not the sampler
    with worker_lock(storage, "bench"):
        study = optuna.create_study(study_name="bench", storage=storage, sampler=sampler, direction="minimize",
                                    load_if_exists=True)
    # The attributes claim_trials reads: a sweep (not the control) of n_trials.
    worker = SimpleNamespace(study=study, storage=storage, config=config, n_trials=n_trials, control=False)
    seconds = []
    while True:
        started = time.perf_counter()
        claimed = claim_trials(worker, 1, wait=False)  # type: ignore[arg-type]
        if not claimed:
            return seconds
        (trial,) = claimed
        lam = trial.params[PARAM]  # asked for by claim_trials, as a worker's trial is
        for step in (100, 200, 300):
            trial.report(lam, step)
        trial.set_user_attr("steps", 300)
        trial.set_user_attr("seconds", 1.0)
        study.tell(trial, lam)
        seconds.append(time.perf_counter() - started)


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


def drop_database(admin: sqlalchemy.Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        connection.execute(sqlalchemy.text(f'DROP DATABASE "{name}"'))


def connections(admin: sqlalchemy.Engine, name: str) -> int:
    with admin.connect() as connection:
        return int(connection.execute(sqlalchemy.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :name"), {"name": name}).scalar_one())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scale(server: str, workers: int, per_worker: int, proxy: bool) -> dict[str, object]:
    """`workers` processes on one study of workers × per_worker trials; per-trial seconds and peak connections."""
    url, admin, name = postgres_database(server)
    processes: list[subprocess.Popen[bytes]] = []
    serving = None
    try:
        target = url
        if proxy:
            port = _free_port()
            serving = subprocess.Popen([sys.executable, "-m", "lambda_search", "storage-proxy", "--storage", url,
                                        "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target = f"grpc://127.0.0.1:{port}"
            optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port).wait_server_ready(timeout=300)
        n_trials = workers * per_worker
        with tempfile.TemporaryDirectory() as directory:
            outputs = [Path(directory) / f"{index}.json" for index in range(workers)]
            processes = [subprocess.Popen([sys.executable, __file__, "--worker", target, str(n_trials), str(index),
                                           str(output)]) for index, output in enumerate(outputs)]
            peak = 0
            while any(process.poll() is None for process in processes):
                peak = max(peak, connections(admin, name))
                time.sleep(0.2)
            seconds = [value for output in outputs for value in json.loads(output.read_text())]
        assert len(seconds) == n_trials, (len(seconds), n_trials)
        return {"mode": "proxy" if proxy else "direct", "workers": workers, "trials": n_trials,
                "ms_median": statistics.median(seconds) * 1e3,
                "ms_p90": statistics.quantiles(seconds, n=10)[-1] * 1e3,
                "peak_connections": peak}
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        if serving is not None:
            serving.terminate()
            serving.wait(timeout=30)
        drop_database(admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--workers", type=int, nargs="+", help="worker counts: direct vs proxy instead")
    parser.add_argument("--per-worker", type=int, default=20, help="trials per worker with --workers")
    parser.add_argument("--worker", nargs=4, metavar=("URL", "N_TRIALS", "INDEX", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one worker process of `scale`
        url, n_trials, index, output = args.worker
        Path(output).write_text(json.dumps(time_trials(url, int(n_trials), seed=int(index))))
        return
    if args.workers:
        rows = [scale(args.postgres, count, args.per_worker, proxy) for count in args.workers
                for proxy in (False, True)]
        print_table(rows)
        print(f"wrote {write_json('storage-scale', {'rows': rows})}")
        return
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        rows.append(summarize("sqlite", time_trials(f"sqlite:///{Path(directory) / 'bench.db'}", args.trials)))
    if args.postgres:
        url, admin, name = postgres_database(args.postgres)
        try:
            rows.append(summarize("postgresql", time_trials(url, args.trials)))
        finally:
            drop_database(admin, name)
    print_table(rows)
    print(f"wrote {write_json('storage', {'rows': rows})}")


if __name__ == "__main__":
    main()
