"""Export of the best λ: exact value, whole config, masked password, YAML and JSON, no result → exit 1."""

from __future__ import annotations

import copy
import json
import math

import optuna
import pytest
import yaml
from conftest import run_tiny_study
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_search.cli import main
from lambda_search.config import StudyConfig
from lambda_search.errors import ConfigError
from lambda_search.metrics.stats import RULE
from lambda_search.names import PARAM
from lambda_search.records.confirmation import Confirmation, summarize, verdict
from lambda_search.records.export import Export, load_export
from lambda_search.results.export import FORMATS, best_config, dumps, export_study, package_versions, write_export
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
    assert list(exported) == ["lambda", "verdict", "fresh_seeds", "study", "fid", "kid", "seed", "dataset_fingerprint",
                              "model", "versions", "config", "control"]
    assert list(exported["fid"]) == ["value", "objective", "ema", "protocol"]
    assert (exported["fid"]["objective"], exported["fid"]["ema"]) == ("fid", 0.0)
    assert f"trial {best.number}" in capsys.readouterr().out


def test_the_export_records_the_control_fid(storage, tmp_path, capsys):
    output = tmp_path / "best.yaml"
    assert main(["export", "--storage", storage, "--study", "tiny", "-o", str(output)]) == 0
    control = optuna.load_study(study_name="tiny.control", storage=storage).trials[0]
    exported = yaml.safe_load(output.read_text())["control"]
    assert exported["lambda"] == 0.0 and exported["fid"] == control.value and exported["state"] == "COMPLETE"
    assert exported["study"] == "tiny.control" and exported["trial"] == control.number
    assert list(exported) == ["lambda", "fid", "state", "study", "trial", "note"]
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
    assert exported.study.storage == "postgresql+psycopg://optuna:***@db.example:5432/studies"
    assert "s3cr3t-pw" not in dumps(exported, "yaml")


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
    """An in-memory study "race" holding one finished trial with a stored config: enough for `best_config`."""
    study = optuna.create_study(study_name="race")
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


def _confirmation(first_run: float) -> Confirmation:
    """A race's confirmation on seeds 1-3 that λ = 0.001 wins: its FID `first_run` on seed 1, then 1440, 1441.

    λ = 0 scores 1450, 1451 and 1452; `first_run` = inf is a run that diverged.
    """
    fids = {**{(0.0, seed): 1449.0 + seed for seed in (1, 2, 3)},
            (0.001, 1): first_run, (0.001, 2): 1440.0, (0.001, 3): 1441.0}
    return summarize("race", [0.0, 0.001], [1, 2, 3], fids, 0)


def test_a_verdict_of_no_effect_is_never_exported_beside_confirmed_true():
    exported = best_config(_race_study(), "sqlite://", race=_flat_race_verdict()).to_dict()
    assert "confirmed" not in exported and "note" not in exported
    assert "no effect detectable" in exported["verdict"] and exported["fresh_seeds"] is True


def test_a_confirmation_of_a_race_is_what_its_export_says():
    """`confirm` after a race: the export reads the confirmation, and keeps the race's verdict under `race`."""
    fids = {(lam, seed): 1440.0 + seed * 0.1 + (0.5 if lam else 0.0) for lam in (0.0, 0.001) for seed in range(1, 8)}
    confirmation = summarize("race", [0.0, 0.001], list(range(1, 8)), fids, 0)
    export = best_config(_race_study(), "sqlite://", confirmation, race=_flat_race_verdict())
    assert export.verdict == verdict(confirmation) and "unconfirmed" not in export.verdict
    assert export.seed == 1 and export.confirmation is not None and export.race is not None


def _reads_back_as_written(export: Export, tmp_path) -> None:
    assert Export.from_dict(export.to_dict()) == export
    for format in FORMATS:  # YAML keeps the seeds of `fid_by_seed` as ints, JSON as strings
        path = tmp_path / f"best.{format}"
        write_export(export, path, format)
        assert load_export(path) == export


def test_a_sweep_export_reads_back_as_the_record_written(storage, tmp_path):
    export = export_study(storage, "tiny")
    assert export.kid is not None and export.control is not None  # every section a sweep's export has
    _reads_back_as_written(export, tmp_path)


@pytest.mark.parametrize("first_run", [None, 1439.0, math.inf], ids=["race", "confirmed", "confirmed-diverged"])
def test_a_race_export_reads_back_as_the_record_written(first_run, tmp_path):
    confirmation = None if first_run is None else _confirmation(first_run)
    export = best_config(_race_study(), "sqlite://", confirmation, race=_flat_race_verdict())
    _reads_back_as_written(export, tmp_path)


def _confirmed_race_file(confirmation: Confirmation) -> dict:
    """What the export wrote for `_confirmation(math.inf)` of `_race_study()` when it was a dict, figures as written."""
    return {
        "lambda": 0.001,
        "verdict": verdict(confirmation),
        "fresh_seeds": True,
        "study": {"name": "race", "storage": "sqlite://", "trial": 0},
        "fid": {"value": 1444.3333333333333, "objective": "fid", "ema": 0.0, "protocol": {}},
        "kid": None,
        "seed": 1,
        "dataset_fingerprint": None,
        "model": {"factory": "", "version": "built-in DCGAN"},
        "versions": package_versions(),
        "config": StudyConfig().with_overrides(study={"strategy": "race", "n_trials": 8}).to_dict(),
        "control": None,
        "race": {"seeds": [10000, 10001, 10002],
                 "fid_by_seed": {10000: 1440.0, 10001: 1442.0, 10002: 1439.0},
                 "control_fid_by_seed": {10000: 1441.0, 10001: 1440.5, 10002: 1439.8},
                 "control_fid": 1440.4333333333334,
                 "confidence": 0.95,
                 "difference_to_control": {"mean": -0.09999999999998484,
                                           "ci": [-3.5510744022571026, 3.3510744022571326],
                                           "n": 3,
                                           "wilcoxon_p": 1.0,
                                           "beyond_noise": False,
                                           "detectable": 4.534554219332752,
                                           "power": 0.8,
                                           "rule": RULE}},
        "confirmation": {"study": "race.confirm",
                         "seeds": [1, 2, 3],
                         "selection_seed": 0,
                         "ignored_selection_seed_runs": 0,
                         "confidence": 0.95,
                         "alpha": 0.05,
                         "m": 1,
                         "beyond_noise": False,
                         "rule": RULE,
                         "diverged_stand_in_fid": 1452.0,
                         "lambdas": [{"lambda": 0.0,
                                      "fid_by_seed": {1: 1450.0, 2: 1451.0, 3: 1452.0},
                                      "fid": {"mean": 1451.0, "ci": [1448.5158622882498, 1453.4841377117502], "n": 3},
                                      "diverged": 0,
                                      "difference_to_control": None},
                                     {"lambda": 0.001,
                                      "fid_by_seed": {1: None, 2: 1440.0, 3: 1441.0},
                                      "fid": {"mean": 1444.3333333333333,
                                              "ci": [1427.793129357011, 1460.8735373096556],
                                              "n": 3},
                                      "diverged": 1,
                                      "difference_to_control": {"mean": -6.666666666666667,
                                                                "ci": [-25.31149516224767, 11.978161828914335],
                                                                "n": 3,
                                                                "confidence": 0.95,
                                                                "t_p": 0.26378982616768976,
                                                                "t_p_holm": 0.26378982616768976,
                                                                "wilcoxon_p": 1.0,
                                                                "wilcoxon_p_holm": 1.0,
                                                                "m": 1,
                                                                "beyond_noise": False,
                                                                "detectable": 24.498453486855116}}]},
    }


def test_the_export_file_is_written_byte_for_byte_as_before_it_was_a_record():
    confirmation = _confirmation(math.inf)
    export = best_config(_race_study(), "sqlite://", confirmation, race=_flat_race_verdict())
    before = _confirmed_race_file(confirmation)
    assert dumps(export, "yaml") == yaml.safe_dump(before, sort_keys=False, allow_unicode=True)
    assert dumps(export, "json") == json.dumps(before, indent=2, ensure_ascii=False) + "\n"


_ODD_VALUES = st.one_of(
    st.sampled_from([math.inf, -math.inf, math.nan, 10**30, -1]), st.none(), st.booleans(), st.integers(),
    st.floats(), st.text(max_size=8), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a parsed export (dicts only), the sections and their fields."""
    if not isinstance(node, dict):
        return []
    return [path for key, value in node.items() for path in [(*prefix, key), *_paths(value, (*prefix, key))]]


def test_a_damaged_export_reads_or_is_refused_in_one_line(tmp_path):
    """200 derandomized edits of a confirmed race's export (a field deleted or replaced by a value of another kind):
    `load_export` returns a record whose every property reads, or raises ConfigError; nothing else."""
    confirmation = _confirmation(1439.0)
    original = best_config(_race_study(), "sqlite://", confirmation, race=_flat_race_verdict()).to_dict()
    paths = _paths(original)

    @settings(max_examples=200, derandomize=True, deadline=None, database=None)
    @given(st.sampled_from(paths), st.booleans(), _ODD_VALUES)
    def read_or_refused(path: tuple, delete: bool, value: object) -> None:
        damaged = copy.deepcopy(original)
        parent = damaged
        for key in path[:-1]:
            parent = parent[key]
        if delete:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        file = tmp_path / "damaged.yaml"
        file.write_text(yaml.safe_dump(damaged, allow_unicode=True))
        try:
            export = load_export(file)
        except ConfigError as error:
            assert "\n" not in str(error)
            return
        assert (export.seed_note, export.seed_fid, export.protocol, export.apply_to, export.decay_mode) is not None

    read_or_refused()
