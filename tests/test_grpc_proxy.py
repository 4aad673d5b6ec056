"""Real `run` workers through `lambda-search storage-proxy` on one PostgreSQL study.

The 32-worker claim test with light workers is tests/test_claim_proxy.py; these four are full
workers (open the study under the proxy's lock, train, the λ = 0 control, heartbeats in the proxy).
"""

from __future__ import annotations

import threading

import optuna
import pytest
import sqlalchemy
from _workers import OBSERVER, observer, states, storage_proxy, wait_all, workers

from lambda_search.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _connections(admin: sqlalchemy.Engine, database: str) -> int:
    query = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name AND application_name <> :o")
    with admin.connect() as connection:
        return int(connection.execute(query, {"name": database, "o": OBSERVER}).scalar_one())


def test_four_workers_through_the_proxy_finish_n_trials_and_the_control(tiny_study, tmp_path, pg_url, warm_cache):
    admin = sqlalchemy.create_engine(pg_url, connect_args={"application_name": OBSERVER}, poolclass=sqlalchemy.NullPool)
    database = sqlalchemy.engine.make_url(pg_url).database
    peak = [0]
    done = threading.Event()

    def sample() -> None:  # the database's connections while the workers run
        while not done.wait(0.5):
            peak[0] = max(peak[0], _connections(admin, database))

    with storage_proxy(pg_url) as proxy:
        path = tiny_study(name="proxied", storage=proxy.url, n_trials=6, steps=10, eval_every=10, checkpoint_every=0)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with workers(tmp_path, path, 4) as started:
            codes = wait_all(started, 600)
            logs = "\n".join(worker.output[-1500:] for worker in started)
        done.set()
        sampler.join()
    assert codes == [0] * 4, logs
    storage = observer(pg_url)
    counts = states(storage, "proxied")
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 6, (counts, logs)
    assert not counts.get("RUNNING") and not counts.get("WAITING"), counts
    assert states(storage, "proxied.control") == {"COMPLETE": 1}
    assert optuna.load_study(study_name="proxied", storage=storage).metric_names == ["FID"]  # named through the proxy
    # The workers never touched the database: the proxy's pool did (5 + 10 overflow at most).
    assert 0 < peak[0] <= 15, peak
    storage.engine.dispose()
    # Every command takes the proxy URL; a proxy URL with a database part is refused with one line.
    assert main(["status", "--storage", "grpc://127.0.0.1:1/x", "--study", "proxied"]) == 2
