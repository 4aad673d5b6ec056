"""Every rule of the study file."""

from __future__ import annotations

import pytest

from lambda_search.config import StudyConfig, config_from_dict, load_config
from lambda_search.errors import ConfigError


def test_defaults_match_the_contract():
    config = config_from_dict({})
    assert config.study.resolved_storage == "sqlite:///studies/lambda-sweep.db"
    assert (config.search.lambda_low, config.search.lambda_high) == (1e-4, 1e-2)
    assert config.train.apply_to == "generator"
    assert config.train.penalize == "weights"
    assert config.train.decay_mode == "l2"
    assert config.fid.features == "lenet"


def test_storage_defaults_to_sqlite_named_after_the_study():
    assert config_from_dict({"study": {"name": "abc"}}).study.resolved_storage == "sqlite:///studies/abc.db"


def test_the_quickstart_file_is_valid():
    config = load_config("studies/quickstart.toml")
    assert config.study.storage == "sqlite:///studies/quickstart.db"


def test_integers_are_accepted_where_floats_are_expected():
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"study": {"n_trails": 3}}, "did you mean 'n_trials'"),
        ({"serach": {}}, "did you mean 'search'"),
        ({"study": {"sampler": "cmaes"}}, "sampler"),
        ({"study": {"pruner": "asha"}}, "pruner"),
        ({"study": {"n_trials": 0}}, "n_trials"),
        ({"study": {"name": "../etc"}}, "name"),
        ({"study": {"seed": "0"}}, "seed must be int"),
        ({"study": {"n_trials": True}}, "must be int"),
        ({"search": {"lambda_low": 0.0}}, "0 < lambda_low"),
        ({"search": {"lambda_low": 1e-2, "lambda_high": 1e-2}}, "lambda_low < lambda_high"),
        ({"search": {"lambda_high": float("inf")}}, "lambda_high"),
        ({"data": {"dataset": "imagenet"}}, "mnist-5k"),
        ({"data": {"dataset": "folder"}}, "root"),
        ({"data": {"image_size": 30}}, "multiple of 4"),
        ({"train": {"apply_to": "critic"}}, "apply_to"),
        ({"train": {"penalize": "bias"}}, "penalize"),
        ({"train": {"device": "tpu"}}, "device"),
        ({"train": {"decay_mode": "adamw"}}, "decay_mode"),
        ({"train": {"decay_mode": "decoupled", "fuse": 4}}, "set fuse = 1"),
        ({"train": {"steps": -1}}, "steps"),
        ({"train": {"lr": 0}}, "lr"),
        ({"fid": {"features": "clip"}}, "features"),
        ({"fid": {"n_samples": 1}}, "n_samples"),
        ({"fid": {"eval_every": 0}}, "eval_every"),
        ({"train": {"ema": 1.0}}, "ema must be 0"),
        ({"train": {"ema": -0.5}}, "ema must be 0"),
        ({"train": {"ema": float("nan")}}, "ema must be 0"),
        ({"study": {"objective": "kid"}}, "objective"),
        ({"study": {"objective": "fid_ema"}}, "set \\[train\\] ema"),
        ({"study": "x"}, "table"),
        ({"study": {"verdict_seeds": 4}}, "sizes a race's verdict: set strategy = 'race'"),
        ({"study": {"strategy": "race", "n_trials": 20, "verdict_seeds": 2}}, "verdict_seeds must be 0"),
        ({"study": {"strategy": "race", "n_trials": 20, "verdict_seeds": -1}}, "verdict_seeds must be 0"),
        ({"study": {"strategy": "race", "n_trials": 20, "verdict_seeds": 9}}, "leaving 2 to search"),
    ],
)
def test_invalid_values_are_rejected_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_overrides_are_validated_and_leave_the_original_alone():
    config = StudyConfig()
    changed = config.with_overrides(study={"n_trials": 3}, train={"device": "cpu"})
    assert (changed.study.n_trials, changed.train.device) == (3, "cpu")
    assert config.study.n_trials == 8
    with pytest.raises(ConfigError):
        config.with_overrides(study={"n_trials": -2})


def test_verdict_seeds_may_leave_four_search_runs_and_no_fewer():
    race = {"strategy": "race", "n_trials": 14}
    assert config_from_dict({"study": {**race, "verdict_seeds": 5}}).study.verdict_seeds == 5
    assert config_from_dict({"study": race}).study.verdict_seeds == 0  # absent: a quarter of n_trials
    with pytest.raises(ConfigError, match=r"raise n_trials to >= 16"):
        config_from_dict({"study": {**race, "verdict_seeds": 6}})
