"""deploy/slurm/sweep.sbatch on a real SLURM (`.ci/run` starts a single-node cluster): a 3-task array
on one PostgreSQL study, one task sent SIGTERM mid-trial with scancel. Nothing is lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from _workers import observer, poll
from optuna.trial import TrialState

from lambda_search.sweep.study import PARAM

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.slurm]

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "slurm" / "sweep.sbatch"


@pytest.fixture
def slurm() -> None:
    if shutil.which("sinfo") is None or subprocess.run(["sinfo"], capture_output=True).returncode != 0:
        if os.environ.get("LAMBDA_SEARCH_REQUIRE_SLURM") == "1":
            pytest.fail("LAMBDA_SEARCH_REQUIRE_SLURM=1 but no SLURM cluster answers (deploy/slurm/local-cluster.sh)")
        pytest.skip("no SLURM cluster here (sinfo); deploy/slurm/local-cluster.sh starts one")


def _array_done(job: str) -> bool:
    queue = subprocess.run(["squeue", "--noheader", "--array", "--jobs", job], capture_output=True, text=True)
    return queue.returncode == 0 and not queue.stdout.strip()


def test_a_job_array_finishes_the_study_and_a_terminated_task_loses_nothing(slurm, tiny_study, tmp_path,
                                                                          pg_url, warm_cache):
    n_trials, steps = 4, 1500
    path = tiny_study(name="array", storage=pg_url, n_trials=n_trials, steps=steps, eval_every=500,
                      checkpoint_every=0, control=False)
    # The tasks inherit this environment (sbatch --export=ALL): the storage, this checkout, the warm cache.
    environment = {**os.environ, "LAMBDA_SEARCH_STORAGE": pg_url, "OMP_NUM_THREADS": "1",
                   "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                   "PYTHONPATH": os.pathsep.join(sys.path)}
    # The test cluster has no GPU: --gres=none overrides the script's --gres=gpu:1, as the script says.
    submitted = subprocess.run(["sbatch", "--parsable", "--array=0-2", "--gres=none", f"--chdir={tmp_path}",
                                f"--output={tmp_path}/task-%a.log", str(SCRIPT), str(path)],
                               capture_output=True, text=True, env=environment, check=True)
    job = submitted.stdout.strip().split(";")[0]
    storage = observer(pg_url)
    try:
        def running_mid_trial() -> optuna.trial.FrozenTrial | None:
            if "array" not in optuna.get_all_study_names(storage):
                return None
            for trial in optuna.load_study(study_name="array", storage=storage).get_trials(
                    deepcopy=False, states=(TrialState.RUNNING,)):
                started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
                if "slurm_job_id" in trial.user_attrs.get("worker_identity", {}) and time.time() - started > 2:
                    return trial
            return None

        victim = poll(running_mid_trial, 180, "a trial two seconds into training under SLURM", interval=0.2)
        task_job = victim.user_attrs["worker_identity"]["slurm_job_id"]
        assert victim.user_attrs["worker_identity"]["slurm_array_job_id"] == job
        subprocess.run(["scancel", "--signal=TERM", task_job], check=True)
        poll(lambda: _array_done(job), 300, "the job array to finish", interval=1)
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    logs = "\n".join(log.read_text(errors="replace")[-2000:] for log in sorted(tmp_path.glob("task-*.log")))

    trials = optuna.load_study(study_name="array", storage=storage).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials, logs
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], logs
    stopped = trials[victim.number]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["fail_reason"] == "preempted", logs
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.params[PARAM] == victim.params[PARAM]
    assert 0 < retry.user_attrs["resumed_from_step"] < steps
    assert f"checkpointed trial {victim.number} at step {retry.user_attrs['resumed_from_step']}" in logs
    # Every trial names the array task that ran it; the stopped one and its retry ran in different tasks.
    tasks = {t.number: t.user_attrs["worker_identity"]["slurm_array_task_id"] for t in trials}
    assert set(tasks.values()) <= {"0", "1", "2"}
    assert tasks[retry.number] != tasks[victim.number]
    storage.engine.dispose()
