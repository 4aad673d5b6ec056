"""The claim under load: N light worker processes on one PostgreSQL study, directly and through the proxy.

Each worker is a torch-free process that claims its trials through the real claim code
(`lambda_search.sweep.storage.claim`), "trains" by sleeping about `--trial-seconds` (±25%, seeded) while
its heartbeat beats, then tells a value; so 64+ workers fit in memory and what is timed is the
claim. Workers start claiming together once all have opened the study; the
clock starts then. Per row: median and p90 claim time (every claim, the last empty ones too; waiting for
trials running elsewhere is not counted), the proxy's CPU seconds per
finished trial, the peak of `pg_stat_activity` on the study database, and exactness (finished
== n_trials, nothing RUNNING, no rows in any other study: a lock helper or a surplus).

    python bench/storage.py --workers 16 32 64 --trial-seconds 8 [--modes direct proxy]
        [--per-worker 3] [--limit 240] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

from lambda_search.names import PARAM
from lambda_search.sweep.storage import Heartbeat, open_storage, worker_lock
from lambda_search.sweep.storage.claim import claim_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDY = "bench"
HEARTBEAT_SECONDS = 5
DISTRIBUTION = {PARAM: optuna.distributions.FloatDistribution(1e-6, 1.0, log=True)}


def work(url: str, n_trials: int, index: int, trial_seconds: float, output: Path) -> None:
    """One worker: claim, sleep while beating, tell, until the study is done; claim times written as it goes.

    Waits for trials running elsewhere, as a real worker does (their retry may need it), but
    outside the timed claim. ``OUTPUT.claiming`` exists while it is inside a claim.
    """
    storage = open_storage(url, HEARTBEAT_SECONDS, max_retries=2)
    with worker_lock(storage, STUDY):
        study = optuna.create_study(study_name=STUDY, storage=storage, direction="minimize", load_if_exists=True,
                                    sampler=optuna.samplers.RandomSampler(seed=index))
    rng = random.Random(index)
    output.with_suffix(".ready").touch()
    while not (output.parent / "go").exists():  # all start claiming together, once all have started
        time.sleep(0.1)
    claims: list[float] = []
    marker = output.with_suffix(".claiming")
    while True:
        marker.touch()
        started = time.perf_counter()
        trials = claim_trials(study, storage, n_trials, 1, DISTRIBUTION, HEARTBEAT_SECONDS, max_retries=2,
                              wait=False)
        claims.append(time.perf_counter() - started)
        marker.unlink()
        output.write_text(json.dumps(claims))
        if not trials:
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                return
            time.sleep(HEARTBEAT_SECONDS)
            continue
        (trial,) = trials
        with Heartbeat(storage, [trial._trial_id], HEARTBEAT_SECONDS):
            time.sleep(trial_seconds * rng.uniform(0.75, 1.25))
        study.tell(trial, trial.params[PARAM])


def postgres_database(server: str) -> tuple[str, sqlalchemy.Engine, str]:
    name = f"lambda_bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool)
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


def outcome(url: str) -> dict[str, int]:
    """Trials of the bench study by state, and the rows of every other study (helpers, surplus)."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text(
            "SELECT s.study_name = :name, t.state, count(*) FROM trials t JOIN studies s USING (study_id) "
            "GROUP BY 1, 2"), {"name": STUDY}).all()
    engine.dispose()
    states = {str(state): int(count) for own, state, count in rows if own}
    return {"finished": states.get("COMPLETE", 0) + states.get("PRUNED", 0), "running": states.get("RUNNING", 0),
            "other_rows": sum(int(count) for own, _, count in rows if not own)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_proxy(url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proxy = subprocess.Popen([sys.executable, "-m", "lambda_search", "storage-proxy", "--storage", url,
                              "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port).wait_server_ready(timeout=120)
    return proxy, f"grpc://127.0.0.1:{port}"


def row(server: str, mode: str, workers: int, trial_seconds: float, per_worker: int, limit: float) -> dict[str, object]:
    """One study of workers × per_worker trials, run to its end or `limit` seconds."""
    url, admin, name = postgres_database(server)
    proxy, target = start_proxy(url) if mode == "proxy" else (None, url)
    processes: list[subprocess.Popen[bytes]] = []
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            peak[0] = max(peak[0], connections(admin, name))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        n_trials = workers * per_worker
        cpu_before = cpu_seconds(proxy.pid) if proxy else 0.0
        with tempfile.TemporaryDirectory() as directory:
            outputs = [Path(directory) / f"{index}.json" for index in range(workers)]
            processes = [subprocess.Popen([sys.executable, __file__, "--worker", target, str(n_trials), str(index),
                                           str(trial_seconds), str(output)]) for index, output in enumerate(outputs)]
            # Timed from when every worker has started and opened the study: claims, not imports.
            while not all(output.with_suffix(".ready").exists() for output in outputs):
                time.sleep(0.2)
            started = time.monotonic()
            sampler.start()
            (Path(directory) / "go").touch()
            while any(p.poll() is None for p in processes) and time.monotonic() - started < limit:
                time.sleep(0.5)
            wall = time.monotonic() - started
            claims = [value for output in outputs if output.exists() for value in json.loads(output.read_text())]
        proxy_cpu = cpu_seconds(proxy.pid) - cpu_before if proxy else 0.0
        result = outcome(url)
        return {"mode": mode, "workers": workers, "trial_s": trial_seconds, "n_trials": n_trials,
                **result, "wall_s": round(wall), "claims": len(claims),
                "claim_ms_median": round(statistics.median(claims) * 1e3) if claims else "-",
                "claim_ms_p90": round(statistics.quantiles(claims, n=10)[-1] * 1e3) if len(claims) > 1 else "-",
                "proxy_cpu_ms_per_trial": round(proxy_cpu * 1e3 / max(result["finished"], 1)) if proxy else "-",
                "peak_db_connections": peak[0],
                "exact": result["finished"] == n_trials and not result["running"] and not result["other_rows"]}
    finally:
        done.set()
        for process in processes:
            if process.poll() is None:
                process.kill()
        for process in processes:
            process.wait()
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=30)
        drop_database(admin, name)


def print_markdown(rows: list[dict[str, object]]) -> None:
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for values in rows:
        print("| " + " | ".join(str(value) for value in values.values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--trial-seconds", type=float, nargs="+", default=[8.0])
    parser.add_argument("--modes", nargs="+", choices=("direct", "proxy"), default=["direct", "proxy"])
    parser.add_argument("--per-worker", type=int, default=3, help="trials per worker: n_trials = workers × this")
    parser.add_argument("--limit", type=float, default=240, help="seconds a row may run before it is cut")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, n_trials, index, trial_seconds, output = args.worker
        work(url, int(n_trials), int(index), float(trial_seconds), Path(output))
        return
    rows = []
    for mode in args.modes:
        for workers in args.workers:
            for seconds in args.trial_seconds:
                rows.append(row(args.postgres, mode, workers, seconds, args.per_worker, args.limit))
                print(json.dumps(rows[-1]), flush=True)
    print_markdown(rows)


if __name__ == "__main__":
    main()
