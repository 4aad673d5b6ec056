"""The λ = 0 control: one run per study in `<name>.control`, same seed and protocol, never seen by the sampler."""

from __future__ import annotations

import math
import signal

import optuna
import pytest
from _workers import observer, poll, start_worker, wait_all
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from lambda_search.cli import main
from lambda_search.names import PARAM
from lambda_search.records.trials import comparison
from lambda_search.sweep.companions import load_control
from lambda_search.sweep.storage import storage_of


def test_a_finished_study_has_one_control_at_lambda_zero_outside_the_sweep(finished_study):
    sweep = optuna.load_study(study_name="tiny", storage=finished_study)
    [control] = optuna.load_study(study_name="tiny.control", storage=finished_study).get_trials()
    assert control.state == TrialState.COMPLETE and control.params == {PARAM: 0.0}
    assert math.isfinite(control.value)
    # The sweep holds its n_trials, none of them at λ = 0: the sampler never saw the control.
    assert len(sweep.trials) == 3 and all(trial.params[PARAM] >= 1e-4 for trial in sweep.trials)
    first = sweep.trials[0]
    for key in ("config", "fid_protocol", "seed", "steps"):
        assert control.user_attrs[key] == first.user_attrs[key], key
    assert sorted(control.intermediate_values) == sorted(first.intermediate_values)
    files = {meta.filename for meta in optuna.artifacts.get_all_artifact_meta(control, storage=storage_of(sweep))}
    assert files == {"samples.png", "curves.csv"}
    found = load_control(sweep)
    assert found is not None and found.number == control.number


def test_status_shows_the_control_beside_the_best(finished_study, capsys):
    assert main(["status", "--storage", finished_study, "--study", "tiny"]) == 0
    out = capsys.readouterr().out
    control = optuna.load_study(study_name="tiny.control", storage=finished_study).trials[0]
    assert "best: trial" in out
    assert f"λ = 0 control (FID {control.value:.4f})" in out and "unconfirmed" in out


def _control(state: TrialState, fid: float | None = None, **user_attrs: object) -> optuna.trial.FrozenTrial:
    return create_trial(state=state, value=fid, params={PARAM: 0.0}, user_attrs=user_attrs,
                        distributions={PARAM: FloatDistribution(0.0, 1e-2)})


def test_the_comparison_says_which_way_and_by_how_much():
    assert comparison(20.0, _control(TrialState.COMPLETE, 21.5)).startswith(
        "The best λ scored 1.5000 FID lower than the λ = 0 control (FID 21.5000); one training run each, unconfirmed")
    assert "1.0000 FID higher than the λ = 0 control (FID 19.0000)" in comparison(
        20.0, _control(TrialState.COMPLETE, 19.0))


def test_a_difference_within_noise_is_never_called_a_win():
    """The issue's case: 0.0040 FID at FID ≈ 1440, one run each."""
    sentence = comparison(1440.0, _control(TrialState.COMPLETE, 1440.004))
    assert "beat" not in sentence
    assert "0.0040 FID lower" in sentence and "a single seed cannot separate such a difference from noise" in sentence
    assert comparison(20.0, None).startswith("No λ = 0 control")
    assert "did not finish (diverged at step 5)" in comparison(
        20.0, _control(TrialState.PRUNED, prune_reason="diverged at step 5"))
    assert "is running" in comparison(None, _control(TrialState.RUNNING))


def test_control_false_trains_no_control(tiny_study, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    assert main(["run", str(tiny_study(n_trials=1, control=False))]) == 0
    assert "control" not in capsys.readouterr().out.replace(str(tmp_path), "")  # the tmp path holds "control"
    assert optuna.get_all_study_names(url) == ["tiny"]
    assert main(["status", "--storage", url, "--study", "tiny"]) == 0
    assert "No λ = 0 control" in capsys.readouterr().out


@pytest.mark.slow
def test_a_worker_killed_while_training_the_control_has_it_retried(tiny_study, tmp_path, warm_cache):
    path = tiny_study(name="killed", n_trials=1, steps=240, eval_every=240, checkpoint_every=20)
    checkpoint = tmp_path / "killed.artifacts" / "control" / "checkpoints" / "killed.control" / "trial-0.pt"
    worker = start_worker(tmp_path, path)
    try:
        poll(checkpoint.exists, 90, "the control's first checkpoint", interval=0.05)  # it trains first
        worker.process.send_signal(signal.SIGKILL)
        assert wait_all([worker], 30) == [-signal.SIGKILL]
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
    assert main(["run", str(path)]) == 0  # the next worker: its sweep trial, then the stale control's retry
    storage = observer(f"sqlite:///{tmp_path / 'killed.db'}")
    killed, retry = optuna.load_study(study_name="killed.control", storage=storage).get_trials()
    assert killed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == {PARAM: 0.0} and retry.system_attrs["failed_trial"] == killed.number
    assert 20 <= retry.user_attrs["resumed_from_step"] < 240
    assert [t.state for t in optuna.load_study(study_name="killed", storage=storage).trials] == [TrialState.COMPLETE]
    assert not checkpoint.exists()
    storage.engine.dispose()
