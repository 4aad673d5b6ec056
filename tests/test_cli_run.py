"""End to end through the CLI, in-process: a tiny study on real SQLite."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from lambda_search.cli import main
from lambda_search.names import PARAM


def _load(tmp_path: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / (name + '.db')}")


def test_run_fills_the_study_with_finite_fids_in_range(tiny_study, tmp_path, capsys):
    assert main(["run", str(tiny_study(n_trials=3))]) == 0
    study = _load(tmp_path)
    trials = study.get_trials()
    assert len(trials) == 3
    for trial in trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert 1e-4 <= trial.params[PARAM] <= 1e-2
        assert math.isfinite(trial.value)
        assert trial.distributions[PARAM] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
        assert trial.user_attrs["fid_protocol"]["features"] == "lenet"
        assert trial.user_attrs["steps"] == 20
        assert sorted(trial.intermediate_values) == [10, 20]
    assert "best λ" in capsys.readouterr().out


def test_same_seed_gives_the_same_lambdas_and_fids(tiny_study, tmp_path):
    first = tiny_study(name="first", seed=3)
    second = tiny_study(name="second", seed=3)
    assert main(["run", str(first)]) == 0
    assert main(["run", str(second)]) == 0
    a, b = _load(tmp_path, "first").get_trials(), _load(tmp_path, "second").get_trials()
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.value for t in a] == pytest.approx([t.value for t in b], rel=1e-6)


def test_running_a_finished_study_again_trains_nothing(tiny_study, tmp_path, capsys):
    path = tiny_study(n_trials=1)
    assert main(["run", str(path)]) == 0
    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert len(_load(tmp_path).trials) == 1


def test_cli_overrides_the_study_file(tiny_study, tmp_path):
    storage = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["run", str(tiny_study()), "--storage", storage, "--study", "renamed", "--n-trials", "1"]) == 0
    study = optuna.load_study(study_name="renamed", storage=storage)
    assert len(study.trials) == 1


def test_status_lists_trials(tiny_study, tmp_path, capsys):
    assert main(["run", str(tiny_study(n_trials=1))]) == 0
    capsys.readouterr()
    assert main(["status", "--storage", f"sqlite:///{tmp_path / 'tiny.db'}", "--study", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "COMPLETE" in out and "lambda" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[study]\nnmae = 'x'\n", "did you mean 'name'"),
        ("[sutdy]\n", "did you mean 'study'"),
        ("[search]\nlambda_low = 0.1\nlambda_high = 0.01\n", "lambda_low < lambda_high"),
        ("[data]\ndataset = 'imagenet'\n", "dataset"),
        ("[fid]\nfeatures = 'inception'\ninception_weights = '/nonexistent/w.pth'\n", "does not exist"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, content, message):
    path = tmp_path / "bad.toml"
    storage = tmp_path / "bad.db"
    path.write_text(content + "\n" if "[study]" in content else content)
    code = main(["run", str(path), "--storage", f"sqlite:///{storage}", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not storage.exists()


def test_status_of_a_missing_study_is_exit_2(tmp_path, capsys):
    code = main(["status", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "--study", "absent"])
    assert not (tmp_path / "none.db").exists()
    assert code == 2
    assert "no study 'absent'" in capsys.readouterr().err


def test_the_storage_can_come_from_the_environment(tiny_study, tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("LAMBDA_SEARCH_STORAGE", url)
    assert main(["run", str(tiny_study(n_trials=1))]) == 0
    capsys.readouterr()
    assert main(["status", "--study", "tiny"]) == 0
    assert "COMPLETE" in capsys.readouterr().out
    assert not (tmp_path / "tiny.db").exists()  # the file's own storage was overridden
