"""Shared fixtures: a session-wide cache (real-image statistics computed once per run) and tiny study files."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

TINY_STUDY = """
[study]
name = "{name}"
storage = "{storage}"
n_trials = {n_trials}
sampler = "tpe"
strategy = "{strategy}"
seed = {seed}
heartbeat_seconds = 1

[search]
lambda_low = 1e-4
lambda_high = 1e-2
control = {control}

[data]
dataset = "mnist-5k"

[train]
steps = {steps}
batch_size = 16
width = 8
latent_dim = 16
device = "cpu"
checkpoint_every = {checkpoint_every}
fuse = {fuse}

[fid]
features = "lenet"
n_samples = 128
n_real = 500
eval_every = {eval_every}
"""


@pytest.fixture(scope="session", autouse=True)
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One cache per test session: real-image statistics are computed once, not per test."""
    directory = os.environ.get("LAMBDA_SEARCH_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    os.environ["LAMBDA_SEARCH_CACHE"] = directory


def run_tiny_study(directory: Path, n_trials: int = 3, seed: int = 0) -> str:
    """Train a tiny study in `directory` through the CLI; returns its storage URL."""
    import torch

    from lambda_search.cli import main

    url = f"sqlite:///{directory / 'tiny.db'}"
    study_file = directory / "tiny.toml"
    study_file.write_text(TINY_STUDY.format(name="tiny", storage=url, n_trials=n_trials, seed=seed, steps=20,
                                            eval_every=10, checkpoint_every=0, control="true",
                                            strategy="sweep", fuse=1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread beats two contended ones on a shared machine
    try:
        assert main(["run", str(study_file)]) == 0
    finally:
        torch.set_num_threads(threads)
    return url


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Storage URL of a finished tiny study "tiny" of three trials and its λ = 0 control, trained once per session.

    Read-only.
    """
    return run_tiny_study(tmp_path_factory.mktemp("finished"))


@pytest.fixture
def tiny_study(tmp_path: Path):
    """Write a tiny study file into tmp_path; returns a function taking overrides."""

    def write(name: str = "tiny", storage: str | None = None, n_trials: int = 2, seed: int = 0,
              steps: int = 20, eval_every: int = 10, checkpoint_every: int = 10, control: bool = True,
              strategy: str = "sweep", fuse: int = 1) -> Path:
        storage = storage or f"sqlite:///{tmp_path / (name + '.db')}"
        path = tmp_path / f"{name}.toml"
        path.write_text(TINY_STUDY.format(name=name, storage=storage, n_trials=n_trials, seed=seed,
                                          steps=steps, eval_every=eval_every,
                                          checkpoint_every=checkpoint_every, control=str(control).lower(),
                                          strategy=strategy, fuse=fuse))
        return path

    return write


@functools.cache
def _cache_real_statistics_once() -> None:
    import tomllib

    import torch

    from lambda_search.config import config_from_dict
    from lambda_search.data import load_images
    from lambda_search.metrics.fid import FidScorer

    text = TINY_STUDY.format(name="warm", storage="sqlite://", n_trials=1, seed=0, steps=1,
                             eval_every=1, checkpoint_every=0, control="true", strategy="sweep", fuse=1)
    config = config_from_dict(tomllib.loads(text))
    FidScorer(config.fid, load_images(config.data), torch.device("cpu"))


@pytest.fixture
def warm_cache(_shared_cache: None) -> None:
    """Cache the tiny studies' real statistics before any subprocess needs them.

    Worker subprocesses inherit LAMBDA_SEARCH_CACHE; a cold cache would make each compute its own.
    Function-scoped (the work is done once per session all the same) so that a test's pg_url,
    listed before it, skips before the training starts.
    """
    _cache_real_statistics_once()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database on the LAMBDA_SEARCH_TEST_PG server; dropped afterwards.

    Unset → skip, unless LAMBDA_SEARCH_REQUIRE_PG=1 (CI), which turns a missing or
    unreachable server into a failure.
    """
    import sqlalchemy
    from sqlalchemy.engine import make_url

    server = os.environ.get("LAMBDA_SEARCH_TEST_PG")
    required = os.environ.get("LAMBDA_SEARCH_REQUIRE_PG") == "1"
    if not server:
        if required:
            pytest.fail("LAMBDA_SEARCH_REQUIRE_PG=1 but LAMBDA_SEARCH_TEST_PG is not set")
        pytest.skip("PostgreSQL tests need LAMBDA_SEARCH_TEST_PG, e.g. "
                    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"lambda_search_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as error:
        admin.dispose()
        reason = f"PostgreSQL at {make_url(server).render_as_string()} unreachable: {error.orig}"
        if required:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name})
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
