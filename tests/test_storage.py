"""Storage edges: hung databases, secrets, a changed search range, bad checkpoints, hostile input."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import subprocess

import optuna
import pytest
import torch
from _workers import observer, start_worker, wait_all

from lambda_search.cli import main
from lambda_search.config import StudyConfig, TrainSection
from lambda_search.gan import checkpoints
from lambda_search.gan.train import new_state
from lambda_search.storage_url import CONNECT_TIMEOUT_SECONDS, mask_password
from lambda_search.sweep.storage import study_id

PASSWORD = "s3cret-Pa55"


def test_mask_password_hides_only_the_password():
    url = f"postgresql+psycopg://lambda:{PASSWORD}@db.example:5432/sweeps"
    assert mask_password(url) == "postgresql+psycopg://lambda:***@db.example:5432/sweeps"
    assert mask_password("sqlite:///studies/a.db") == "sqlite:///studies/a.db"


@pytest.mark.slow
def test_a_hung_database_is_one_line_exit_1_without_the_password(tiny_study, tmp_path, warm_cache):
    # A server that accepts the TCP connection and never answers: the worst unreachable case. The
    # worker gives up after its connect timeout instead of hanging (the generous bound only stops a hang).
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        url = f"postgresql+psycopg://lambda:{PASSWORD}@127.0.0.1:{hung.getsockname()[1]}/sweeps"
        worker = start_worker(tmp_path, tiny_study(), "--storage", url)
        try:
            [code] = wait_all([worker], 12 * CONNECT_TIMEOUT_SECONDS)
        finally:
            if worker.process.poll() is None:
                worker.process.kill()
    output = worker.output
    assert code == 1, output
    assert PASSWORD not in output
    errors = [line for line in output.splitlines() if line.startswith("lambda-search:")]
    assert errors == [f"lambda-search: error: cannot reach storage {mask_password(url)}: "
                      "connection timeout expired"], output
    assert "Traceback" not in output


def test_status_of_an_unreachable_database_does_not_show_the_password(capsys):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connection refused
        code = main(["status", "--storage", f"postgresql+psycopg://lambda:{PASSWORD}@127.0.0.1:{port}/x",
                     "--study", "any"])
    err = capsys.readouterr().err
    assert code == 1
    assert PASSWORD not in err and "lambda:***@" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.postgres
def test_the_password_is_stored_nowhere(tiny_study, tmp_path, pg_url, warm_cache, capsys):
    # The test server trusts every local user, so any password gets in.
    url = pg_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    assert PASSWORD in url
    worker = start_worker(tmp_path, tiny_study(name="secret", storage=url, n_trials=1))
    try:
        assert wait_all([worker], 120) == [0], worker.output
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
    assert PASSWORD not in worker.output
    assert main(["status", "--storage", url, "--study", "secret"]) == 0
    assert PASSWORD not in capsys.readouterr().out
    storage = observer(url)
    study = optuna.load_study(study_name="secret", storage=storage)
    stored = json.dumps([study.user_attrs, storage.get_study_system_attrs(study_id(study)),
                         *[[t.user_attrs, t.system_attrs] for t in study.trials]])
    assert PASSWORD not in stored
    assert "postgres:***@" in stored  # the config is stored, with the password masked
    assert not any(PASSWORD.encode() in path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()
                   and path.suffix != ".toml")
    storage.engine.dispose()


def test_a_different_search_range_is_refused_naming_both(tiny_study, tmp_path, capsys, warm_cache):
    path = tiny_study(n_trials=1, steps=10, eval_every=10)
    assert main(["run", str(path)]) == 0
    path.write_text(path.read_text().replace("lambda_high = 1e-2", "lambda_high = 0.1"))
    capsys.readouterr()
    assert main(["run", str(path), "--n-trials", "2"]) == 2
    err = capsys.readouterr().err
    assert "lambda_high = 0.01;" in err and "lambda_high = 0.1:" in err
    assert len(err.strip().splitlines()) == 1
    assert len(optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}").trials) == 1


def _state() -> object:
    return new_state(TrainSection(width=4, latent_dim=8), (1, 28, 28), seed=0, device=torch.device("cpu"))


OWNER = checkpoints.CheckpointOwner("tiny", 3, 1e-3, StudyConfig().training_identity())


def test_a_checkpoint_restores_networks_optimizers_step_and_rng(tmp_path):
    saved = _state()
    saved.step = 40
    saved.rng.manual_seed(123)
    evaluations = [{"step": 20, "fid": 31.5}, {"step": 40, "fid": 27.25}]
    path = checkpoints.save_checkpoint(tmp_path, OWNER, saved, evaluations)
    restored = _state()
    assert checkpoints.load_checkpoint(tmp_path, OWNER, restored) == evaluations
    assert restored.step == 40
    assert torch.equal(restored.rng.get_state(), saved.rng.get_state())
    for a, b in zip(restored.generator.parameters(), saved.generator.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, no temporary left


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other-lambda", "other-study", "other-config"])
def test_a_bad_checkpoint_means_step_0_with_a_warning(tmp_path, caplog, damage):
    saved = _state()
    saved.step = 20
    path = checkpoints.save_checkpoint(tmp_path, OWNER, saved)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "other-study":
        # Two studies in one SQLite file, same seed, same λ: the README's compare recipe.
        other = dataclasses.replace(OWNER, study="other")
        checkpoints.save_checkpoint(tmp_path, other, saved)
        checkpoints.checkpoint_path(tmp_path, other).replace(path)
    elif damage == "other-config":
        changed = StudyConfig(train=TrainSection(apply_to="discriminator")).training_identity()
        checkpoints.save_checkpoint(tmp_path, dataclasses.replace(OWNER, training=changed), saved)
    owner = dataclasses.replace(OWNER, lam=2e-3) if damage == "other-lambda" else OWNER
    state = _state()
    with caplog.at_level(logging.WARNING, logger="lambda_search.gan.checkpoints"):
        assert checkpoints.load_checkpoint(tmp_path, owner, state) is None
    assert state.step == 0
    assert "starting from step 0" in caplog.text


def test_a_checkpoint_that_runs_code_on_load_is_refused(tmp_path, caplog):
    """weights_only=True: a pickle that would run a command is rejected, never executed."""
    path = checkpoints.checkpoint_path(tmp_path, OWNER)
    path.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(marker)],))

    torch.save({"lambda": 1e-3, "step": Exploit()}, path)
    with caplog.at_level(logging.WARNING, logger="lambda_search.gan.checkpoints"):
        assert checkpoints.load_checkpoint(tmp_path, OWNER, _state()) is None
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../escape", "a/b", "$(touch pwned)", "x; touch pwned", "-rf", ""])
def test_hostile_study_names_are_refused_before_anything_is_written(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "study.toml"
    path.write_text(f"[study]\nname = {json.dumps(name)}\n")
    assert main(["run", str(path)]) == 2
    assert "[study] name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


def test_a_dataset_root_is_a_path_not_a_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "study.toml"
    path.write_text('[data]\ndataset = "folder"\nroot = "$(touch pwned); touch pwned2"\n'
                    '[train]\ndevice = "cpu"\n')
    assert main(["run", str(path), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


def test_a_trial_claimed_but_never_started_does_not_block_the_study(tiny_study, tmp_path, warm_cache):
    """A connection lost inside `ask` leaves a RUNNING trial with no heartbeat, which Optuna
    never finds stale; workers would wait for it forever. The next claim fails it instead."""
    path = tiny_study(n_trials=1, steps=10, eval_every=10)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    study = optuna.create_study(study_name="tiny", storage=url, direction="minimize")
    orphan = study.ask()  # created RUNNING, and then its worker lost the database
    worker = start_worker(tmp_path, path)  # a process, so that waiting forever fails in 60 s
    try:
        assert wait_all([worker], 60) == [0], worker.output
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
    assert "claimed but never started" in worker.output
    trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[orphan.number].user_attrs["fail_reason"].startswith("claim cut short")


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os

    from lambda_search._files import write_atomically

    path = tmp_path / "report.html"
    write_atomically(path, lambda stream: stream.write(b"<html></html>"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_bytes() == b"<html></html>"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
