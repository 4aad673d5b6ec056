"""32 light workers through `lambda-search storage-proxy` on one PostgreSQL study: the claim in the proxy.

The workers are bench/storage.py's torch-free harness workers: the real claim code and a real
proxy process, with sleeps for training, so 32 of them fit in memory and seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from _workers import observer, poll, states, storage_proxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BENCH = Path(__file__).parents[1] / "bench" / "storage.py"
HEARTBEAT_SECONDS = 5  # bench/storage.py's


def test_32_workers_claim_exactly_n_trials_and_one_killed_while_claiming_stalls_no_one(tmp_path, pg_url):
    outputs = [tmp_path / f"{index}.json" for index in range(32)]
    workers: list[subprocess.Popen[bytes]] = []
    with storage_proxy(pg_url) as proxy:
        try:
            (tmp_path / "go").touch()  # the harness's start barrier: each worker claims as soon as it has started
            workers = [subprocess.Popen([sys.executable, str(BENCH), "--worker", proxy.url, "64", str(index), "0.5",
                                         str(output)]) for index, output in enumerate(outputs)]
            # SIGKILL a worker inside a claim: its call may or may not have reached the proxy.
            victim = poll(lambda: next((w for w, o in zip(workers, outputs, strict=True)
                                        if o.with_suffix(".claiming").exists()), None), 120, "a worker in a claim",
                          0.01)
            victim.kill()
            codes = [worker.wait(timeout=300) for worker in workers if worker is not victim]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
    assert codes == [0] * 31
    storage = observer(pg_url)
    counts = states(storage, "bench")
    assert counts.get("COMPLETE", 0) == 64 and not counts.get("RUNNING") and not counts.get("WAITING"), counts
    assert optuna.get_all_study_names(storage) == ["bench"]  # no helper study, no rows elsewhere
    storage.engine.dispose()
    # The others never waited on the dead worker: every claim of theirs took less than the time a
    # dead holder's lock would take to break (its trial, if it started one, is retried after 2 × beat).
    claims = [seconds for worker, output in zip(workers, outputs, strict=True) if worker is not victim
              for seconds in json.loads(output.read_text())]
    assert max(claims) < 2 * HEARTBEAT_SECONDS, max(claims)
