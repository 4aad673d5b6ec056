"""Shared fixtures: a session-wide cache (the LeNet trains once per run) and tiny study files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY_STUDY = """
[study]
name = "{name}"
storage = "{storage}"
n_trials = {n_trials}
sampler = "tpe"
seed = {seed}
heartbeat_seconds = 1

[search]
lambda_low = 1e-4
lambda_high = 1e-2

[data]
dataset = "mnist-5k"

[train]
steps = {steps}
batch_size = 16
width = 8
latent_dim = 16
device = "cpu"
checkpoint_every = {checkpoint_every}

[fid]
features = "lenet"
n_samples = 128
n_real = 500
eval_every = {eval_every}
"""


@pytest.fixture(scope="session", autouse=True)
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One cache per test session: the LeNet feature network is trained once, not per test."""
    directory = os.environ.get("LAMBDA_SEARCH_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    os.environ["LAMBDA_SEARCH_CACHE"] = directory


@pytest.fixture
def tiny_study(tmp_path: Path):
    """Write a tiny study file into tmp_path; returns a function taking overrides."""

    def write(name: str = "tiny", storage: str | None = None, n_trials: int = 2, seed: int = 0,
              steps: int = 20, eval_every: int = 10, checkpoint_every: int = 10) -> Path:
        storage = storage or f"sqlite:///{tmp_path / (name + '.db')}"
        path = tmp_path / f"{name}.toml"
        path.write_text(TINY_STUDY.format(name=name, storage=storage, n_trials=n_trials, seed=seed,
                                          steps=steps, eval_every=eval_every,
                                          checkpoint_every=checkpoint_every))
        return path

    return write
