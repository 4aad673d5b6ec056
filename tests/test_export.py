"""Export of the best λ: exact value, whole config, masked password, YAML and JSON, no result → exit 1."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from conftest import run_tiny_study

from lambda_search.cli import main
from lambda_search.names import PARAM
from lambda_search.results.export import best_config
from lambda_search.storage_url import mask_password


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A finished tiny study of three trials of its own (a test here adds a study to its storage)."""
    return run_tiny_study(tmp_path_factory.mktemp("export"), seed=1)


def _best(storage: str) -> optuna.trial.FrozenTrial:
    study = optuna.load_study(study_name="tiny", storage=storage)
    return min(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda trial: trial.value)


def test_yaml_export_names_the_best_trial_exactly(storage, tmp_path, capsys):
    output = tmp_path / "best.yaml"
    assert main(["export", "--storage", storage, "--study", "tiny", "-o", str(output)]) == 0
    exported = yaml.safe_load(output.read_text())
    best = _best(storage)
    assert exported["lambda"] == best.params[PARAM]  # exactly: YAML floats round-trip
    assert exported["study"] == {"name": "tiny", "storage": storage, "trial": best.number}
    assert exported["fid"]["value"] == best.value
    assert exported["fid"]["protocol"] == best.user_attrs["fid_protocol"]
    assert exported["config"] == best.user_attrs["config"]
    assert exported["config"]["train"]["apply_to"] == "generator"
    assert exported["seed"] == 1
    assert exported["dataset_fingerprint"] == best.user_attrs["fid_protocol"]["dataset_fingerprint"]
    assert set(exported["versions"]) == {"torch", "optuna", "torchmetrics", "lambda-search"}
    assert exported["fresh_seeds"] is False and "unconfirmed" in exported["verdict"]
    assert exported["kid"] == {"value": best.user_attrs["kid"], "std": best.user_attrs["kid_std"],
                               "protocol": best.user_attrs["kid_protocol"]}
    assert f"trial {best.number}" in capsys.readouterr().out


def test_the_export_records_the_control_fid(storage, tmp_path, capsys):
    output = tmp_path / "best.yaml"
    assert main(["export", "--storage", storage, "--study", "tiny", "-o", str(output)]) == 0
    control = optuna.load_study(study_name="tiny.control", storage=storage).trials[0]
    exported = yaml.safe_load(output.read_text())["control"]
    assert exported["lambda"] == 0.0 and exported["fid"] == control.value and exported["state"] == "COMPLETE"
    assert exported["study"] == "tiny.control" and exported["trial"] == control.number
    assert "λ = 0 control" in exported["note"] and "unconfirmed" in exported["note"]
    assert exported["note"] in capsys.readouterr().out


def test_json_export_holds_the_same_as_yaml(storage, tmp_path):
    as_yaml, as_json = tmp_path / "best.yaml", tmp_path / "best.json"
    assert main(["export", "--storage", storage, "--study", "tiny", "-o", str(as_yaml)]) == 0
    assert main(["export", "--storage", storage, "--study", "tiny", "-o", str(as_json), "--format", "json"]) == 0
    assert json.loads(as_json.read_text()) == yaml.safe_load(as_yaml.read_text())


def test_the_storage_password_is_masked(storage):
    secret_url = "postgresql+psycopg://optuna:s3cr3t-pw@db.example:5432/studies"
    assert mask_password(secret_url) == "postgresql+psycopg://optuna:***@db.example:5432/studies"
    exported = best_config(optuna.load_study(study_name="tiny", storage=storage), secret_url)
    assert exported["study"]["storage"] == "postgresql+psycopg://optuna:***@db.example:5432/studies"
    assert "s3cr3t-pw" not in yaml.safe_dump(exported)


def test_a_study_without_a_complete_trial_exits_1(storage, tmp_path, capsys):
    study = optuna.create_study(study_name="pruned-only", storage=storage)
    config = _best(storage).user_attrs["config"]
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, params={PARAM: 1e-3},
        distributions={PARAM: optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
        intermediate_values={10: 50.0}, user_attrs={"config": config},
    ))
    output = tmp_path / "best.yaml"
    code = main(["export", "--storage", storage, "--study", "pruned-only", "-o", str(output)])
    err = capsys.readouterr().err
    assert code == 1
    assert "no complete trial" in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_an_unknown_format_is_exit_2(storage, tmp_path, capsys):
    code = main(["export", "--storage", storage, "--study", "tiny", "-o", str(tmp_path / "x"), "--format", "xml"])
    assert code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_the_json_export_holds_what_the_yaml_export_holds(storage, tmp_path):
    paths = {format: tmp_path / f"best.{format}" for format in ("yaml", "json")}
    for format, path in paths.items():
        assert main(["export", "--storage", storage, "--study", "tiny", "-o", str(path), "--format", format]) == 0
    exported = json.loads(paths["json"].read_text())
    assert exported == yaml.safe_load(paths["yaml"].read_text())
    assert exported["fid"]["value"] == _best(storage).value  # exactly: JSON floats round-trip too


def _race_study() -> optuna.Study:
    """An in-memory study holding one finished trial with a stored config: enough for `best_config`."""
    from lambda_search.config import StudyConfig

    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(
        value=1440.0, params={PARAM: 0.001}, distributions={PARAM: optuna.distributions.FloatDistribution(1e-4, 1e-2)},
        user_attrs={"config": StudyConfig().with_overrides(study={"strategy": "race", "n_trials": 8}).to_dict(),
                    "seed": 0}))
    return study


def _flat_race_verdict():
    """A race verdict on 3 fresh seeds where λ = 0.001 and λ = 0 differ by noise only."""
    from lambda_search.sweep.race.rule import Run, verdict, verdict_seeds

    runs = [Run(lam, seed, "verdict", fid) for seed, (fid, control) in zip(
        verdict_seeds(0, 8), [(1440.0, 1441.0), (1442.0, 1440.5), (1439.0, 1439.8)], strict=True)
            for lam, fid in ((0.001, fid), (0.0, control))]
    return verdict(runs, 8, 0)


def test_a_verdict_of_no_effect_is_never_exported_beside_confirmed_true():
    export = best_config(_race_study(), "sqlite://", race=_flat_race_verdict())
    assert "confirmed" not in export and "note" not in export
    assert "no effect detectable" in export["verdict"] and export["fresh_seeds"] is True


def test_a_confirmation_of_a_race_is_what_its_export_says():
    """`confirm` after a race: the export reads the confirmation, and keeps the race's verdict under `race`."""
    from lambda_search.records.confirmation import summarize, verdict

    fids = {(lam, seed): 1440.0 + seed * 0.1 + (0.5 if lam else 0.0) for lam in (0.0, 0.001) for seed in range(1, 8)}
    confirmation = summarize("race", [0.0, 0.001], list(range(1, 8)), fids, 0)
    export = best_config(_race_study(), "sqlite://", confirmation, race=_flat_race_verdict())
    assert export["verdict"] == verdict(confirmation) and "unconfirmed" not in export["verdict"]
    assert export["seed"] == 1 and "confirmation" in export and "race" in export
