"""SIGTERM (a scheduler's preemption) and Ctrl-C during a trial: checkpointed at once, handed back, resumed.

`checkpoint_every = 0` throughout: the only checkpoint is the one the signal writes.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable

import optuna
import pytest
import torch
from _workers import end_stored_study_at, observer, poll, start_command, wait_all, workers
from optuna.trial import TrialState

from lambda_search.cli import main
from lambda_search.storage_url import sqlite_path
from lambda_search.sweep.study import PARAM

pytestmark = pytest.mark.slow

# Far more steps than the seconds before the signal allow: it always lands mid-training.
LONG = 50_000


def _running(storage: optuna.storages.BaseStorage, name: str, count: int) -> list[optuna.trial.FrozenTrial] | None:
    if name not in optuna.get_all_study_names(storage):
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if "worker" in t.user_attrs]
    return running if len(running) == count else None


def preempt_and_resume(tiny_study, tmp_path, storage_url: str, checkpoints, signum: signal.Signals, code: int,
                       fuse: int) -> None:
    """Stop a worker mid-trial with `signum`; a second run resumes every stopped trial from its stop step."""
    name = "stopped"
    path = tiny_study(name=name, storage=storage_url, n_trials=fuse, steps=LONG, eval_every=LONG,
                      checkpoint_every=0, control=False, fuse=fuse)
    storage = observer(storage_url)
    with workers(tmp_path, path, 1) as started:
        poll(lambda: _running(storage, name, fuse), 90, "the running trial(s)")
        time.sleep(1.0)  # well inside training
        started[0].process.send_signal(signum)
        signalled = time.monotonic()
        codes = wait_all(started, 90)
        output = started[0].output
    assert codes == [code], output
    # Inside SLURM's 120 s grace: the checkpoint takes well under a second; most of this is the
    # interpreter's exit, 4-5 s on the shared 2-core VM under load.
    assert time.monotonic() - signalled < 60, output
    assert "checkpointed trial" in output and "resumes there with the same λ" in output, output
    assert "Traceback" not in output

    originals = optuna.load_study(study_name=name, storage=storage).get_trials()
    stopped = [t for t in originals if t.state == TrialState.FAIL]
    copies = [t for t in originals if t.state == TrialState.WAITING]
    assert len(stopped) == len(copies) == fuse, [t.state for t in originals]
    assert all(t.user_attrs["fail_reason"] == "preempted" for t in stopped)
    steps = {}
    for trial, copy in zip(stopped, copies, strict=True):
        assert copy.params[PARAM] == trial.params[PARAM]
        assert copy.system_attrs["failed_trial"] == trial.number
        assert copy.system_attrs["retry_history"] == []  # no max_retries slot spent
        saved = torch.load(checkpoints / name / f"trial-{trial.number}.pt", weights_only=True)
        assert (saved["study"], saved["trial"], saved["lambda"]) == (name, trial.number, trial.params[PARAM])
        assert 0 < saved["step"] < LONG
        assert f"trial {trial.number} at step {saved['step']}" in output
        steps[trial.number] = saved["step"]
    assert len(set(steps.values())) == 1  # a fused group stops as one

    # The next run resumes them (shorter: `steps` only says where training ends).
    stop_step = next(iter(steps.values()))
    path = tiny_study(name=name, storage=storage_url, n_trials=fuse, steps=stop_step + 20, eval_every=10,
                      checkpoint_every=0, control=False, fuse=fuse)
    end_stored_study_at(storage_url, name, stop_step + 20, 10)
    with workers(tmp_path, path, 1) as [second]:
        assert wait_all([second], 120) == [0], second.output
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * fuse + [TrialState.COMPLETE] * fuse
    for copy in trials[fuse:]:
        original = copy.system_attrs["failed_trial"]
        assert copy.user_attrs["resumed_from_step"] == steps[original]
        assert copy.user_attrs["steps"] == stop_step + 20
        assert max(copy.intermediate_values) == stop_step + 20
    assert not list(checkpoints.glob("*/trial-*.pt"))  # finished trials leave no checkpoint
    storage.engine.dispose()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_checkpoints_the_trial_and_the_next_run_resumes_it(tiny_study, tmp_path, warm_cache,
                                                                   signum, code):
    preempt_and_resume(tiny_study, tmp_path, f"sqlite:///{tmp_path / 'stopped.db'}",
                       tmp_path / "stopped.artifacts" / "checkpoints", signum, code, fuse=1)


def test_sigterm_checkpoints_every_member_of_a_fused_group(tiny_study, tmp_path, warm_cache):
    preempt_and_resume(tiny_study, tmp_path, f"sqlite:///{tmp_path / 'stopped.db'}",
                       tmp_path / "stopped.artifacts" / "checkpoints", signal.SIGTERM, 143, fuse=2)


@pytest.mark.postgres
@pytest.mark.parametrize("fuse", [1, 2])
def test_sigterm_on_postgres_resumes_lone_and_fused_trials(tiny_study, tmp_path, pg_url, warm_cache, fuse):
    preempt_and_resume(tiny_study, tmp_path, pg_url, tmp_path / "artifacts" / "stopped" / "checkpoints",
                       signal.SIGTERM, 143, fuse=fuse)


def _stopped_command(tmp_path, argv: list[str], ready: Callable[[], bool]) -> tuple[int, str]:
    """Run `lambda-search ARGV`, SIGTERM it once `ready()`, and return its exit code and output."""
    command = start_command(tmp_path, argv, argv[0])
    try:
        poll(lambda: ready() or command.process.poll() is not None, 120, f"{argv[0]} to get going")
        command.process.send_signal(signal.SIGTERM)
        return command.process.wait(timeout=60), command.output
    finally:
        if command.process.poll() is None:
            command.process.kill()


def test_sigterm_stops_train_and_confirm_saying_what_they_left(finished_study, tmp_path):
    """Only `run` hands trials back: `train` and `confirm` say what a stop leaves, not that."""
    storage = tmp_path / "study.db"
    shutil.copy(sqlite_path(finished_study), storage)
    url = f"sqlite:///{storage}"
    export = tmp_path / "best.yaml"
    assert main(["export", "--storage", url, "--study", "tiny", "-o", str(export)]) == 0

    out = tmp_path / "out"
    code, output = _stopped_command(tmp_path, ["train", str(export), "-o", str(out), "--steps", str(LONG)],
                                    out.exists)  # wherever it lands, from loading the data to training
    assert code == 143 and "SIGTERM: stopped before `train` finished: no result.json" in output, output
    assert "handed back" not in output and not (out / "result.json").exists()

    def a_run_is_stored() -> bool:
        names = optuna.get_all_study_names(url)
        return "tiny.confirm" in names and bool(optuna.load_study(study_name="tiny.confirm", storage=url).trials)

    code, output = _stopped_command(tmp_path, ["confirm", "--storage", url, "--study", "tiny", "--seeds", "40"],
                                    a_run_is_stored)
    assert code == 143 and "the run in training was not stored" in output and "handed back" not in output, output
    stored = optuna.load_study(study_name="tiny.confirm", storage=url).trials
    assert stored and all(trial.state == TrialState.COMPLETE for trial in stored)
