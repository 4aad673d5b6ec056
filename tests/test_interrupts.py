"""Ctrl-C and SIGTERM during a trial: the trial ends FAIL ("interrupted"), exit 130/143, the next run carries on."""

from __future__ import annotations

import signal

import optuna
import pytest
from _workers import observer, poll, running_with_checkpoint, start_worker, wait_all, workers
from optuna.trial import TrialState

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_fails_the_running_trial_and_a_second_run_finishes(tiny_study, tmp_path, warm_cache,
                                                                   signum, code):
    # Long trials (checkpoint at step 10) so the signal lands mid-training.
    # No λ = 0 control: it would train first, and this test is about the sweep's trial.
    path = tiny_study(name="stopped", n_trials=1, steps=2000, eval_every=1000, checkpoint_every=10, control=False)
    checkpoints = tmp_path / "stopped.artifacts" / "checkpoints"
    storage_url = f"sqlite:///{tmp_path / 'stopped.db'}"
    with workers(tmp_path, path, 1) as started:
        poll(lambda: any(checkpoints.glob("trial-*.pt")), 90, "a first checkpoint")
        storage = observer(storage_url)
        poll(lambda: running_with_checkpoint(storage, "stopped", checkpoints), 30, "the running trial")
        started[0].process.send_signal(signum)
        codes = wait_all(started, 30)
        output = started[0].output
    assert codes == [code], output
    assert "interrupted; the running trial (0) was marked FAIL" in output and "Traceback" not in output
    [trial] = optuna.load_study(study_name="stopped", storage=storage).get_trials()
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "interrupted"

    # The next run carries on the same study (shorter trials, to keep the test fast);
    # the FAIL trial does not count, so one more trial completes it.
    path = tiny_study(name="stopped", n_trials=1, steps=20, eval_every=10, checkpoint_every=10, control=False)
    second = start_worker(tmp_path, path, index=1)
    try:
        assert wait_all([second], 120) == [0], second.output
    finally:
        if second.process.poll() is None:
            second.process.kill()
    trials = optuna.load_study(study_name="stopped", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    storage.engine.dispose()
