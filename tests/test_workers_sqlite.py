"""Several `run` processes on one SQLite file: safe (busy timeout + a lock file), never "database is locked"."""

from __future__ import annotations

import optuna
import pytest
from _workers import observer, states, wait_all, workers

pytestmark = pytest.mark.slow


def test_four_workers_share_one_sqlite_file(tiny_study, tmp_path, warm_cache):
    path = tiny_study(name="shared", n_trials=6, steps=40, eval_every=20, checkpoint_every=10)
    with workers(tmp_path, path, 4) as started:
        codes = wait_all(started, 150)
        logs = "\n".join(worker.output for worker in started)
    assert "database is locked" not in logs
    assert codes == [0, 0, 0, 0], logs
    storage = observer(f"sqlite:///{tmp_path / 'shared.db'}")
    assert states(storage, "shared") == {"COMPLETE": 6}
    lambdas = [trial.params["lambda"] for trial in optuna.load_study(study_name="shared", storage=storage).trials]
    assert len(set(lambdas)) == 6, "workers proposed the same λ: their samplers share a seed"
    # Four workers, one λ = 0 control: claimed under the same lock as the sweep's trials.
    assert states(storage, "shared.control") == {"COMPLETE": 1}
    storage.engine.dispose()
