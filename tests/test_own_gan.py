"""Your own GAN, end to end on the CPU: a sweep and a race with the example factory, exported, trained back.

The example factory (`examples.my_gan`) is two MLPs, nothing like the built-in DCGAN. `train`
repeats the export's run on the export's seed: with the same config and one thread it gets the
same FID back, bit for bit (a race's export names its first fresh verdict seed).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from lambda_search.cli import main
from lambda_search.names import MODEL
from lambda_search.sweep.race.rule import verdict_seeds

ROOT = Path(__file__).resolve().parent.parent
FACTORY = '\n[model]\nfactory = "examples.my_gan:build"\n'


@pytest.fixture(autouse=True)
def _one_thread_from_the_root(monkeypatch):
    """The factory imports from the repository root; one thread makes the FIDs repeat bit for bit."""
    monkeypatch.chdir(ROOT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_back(export: Path, out: Path) -> dict:
    assert main(["train", str(export), "-o", str(out)]) == 0
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_a_sweep_with_your_own_networks_exports_and_trains_back_to_its_fid(tiny_study, tmp_path, capsys):
    study_file = tiny_study(n_trials=2, steps=20, checkpoint_every=10, control=False)
    study_file.write_text(study_file.read_text() + FACTORY)
    assert main(["check", str(study_file)]) == 0
    assert "examples.my_gan:build" in capsys.readouterr().out
    assert main(["run", str(study_file)]) == 0
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    study = optuna.load_study(study_name="tiny", storage=storage)
    identity = study.user_attrs[MODEL]
    assert identity["factory"] == "examples.my_gan:build" and identity["version"].startswith("sha256:")
    assert all(trial.user_attrs[MODEL] == identity for trial in study.trials)

    export = tmp_path / "best.yaml"
    assert main(["export", "--storage", storage, "--study", "tiny", "-o", str(export)]) == 0
    exported = yaml.safe_load(export.read_text())
    assert exported[MODEL] == identity
    result = _train_back(export, tmp_path / "out")
    assert result["seed"] == exported["seed"] == 0
    assert result["fid"] == exported["fid"]["value"]  # bit for bit
    assert result["reproduces_export_seed_fid"] is True
    checkpoint = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert "0.weight" in checkpoint["generator"]  # the MLP's first Linear, not the DCGAN's `project`
    report = tmp_path / "report.html"
    assert main(["report", "--storage", storage, "--study", "tiny", "-o", str(report)]) == 0
    assert "examples.my_gan:build" in report.read_text()  # the report names the networks


@pytest.mark.slow
def test_a_race_with_your_own_networks_trains_back_on_its_first_verdict_seed(tiny_study, tmp_path):
    study_file = tiny_study(n_trials=8, steps=10, eval_every=10, checkpoint_every=0, strategy="race")
    study_file.write_text(study_file.read_text() + FACTORY)
    assert main(["run", str(study_file)]) == 0
    export = tmp_path / "race.yaml"
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    assert main(["export", "--storage", storage, "--study", "tiny", "-o", str(export)]) == 0
    exported = yaml.safe_load(export.read_text())
    first = verdict_seeds(0, 8)[0]
    assert exported["seed"] == first
    result = _train_back(export, tmp_path / "out")
    # The exported FID is the mean over the verdict's seeds; `train` repeats the run of the first.
    assert result["seed"] == first and "verdict" in result["seed_note"]
    assert result["fid"] == exported["race"]["fid_by_seed"][first]  # bit for bit
    assert result["export_seed_fid"] == result["fid"] and result["reproduces_export_seed_fid"] is True


@pytest.mark.slow
def test_a_study_judging_the_ema_generator_trains_back_to_the_ema_fid(tiny_study, tmp_path):
    study_file = tiny_study(n_trials=1, steps=20, checkpoint_every=0, control=False)
    text = study_file.read_text().replace("[search]", 'objective = "fid_ema"\n\n[search]')
    study_file.write_text(text.replace("[fid]", "ema = 0.9\n\n[fid]") + FACTORY)
    assert main(["run", str(study_file)]) == 0
    export = tmp_path / "best.yaml"
    assert main(["export", "--storage", f"sqlite:///{tmp_path / 'tiny.db'}", "--study", "tiny", "-o", str(export)]) == 0
    result = _train_back(export, tmp_path / "out")
    assert result["objective"] == "fid_ema" and result["fid"] == result["fids"]["fid_ema"] != result["fids"]["fid"]
    assert result["fid"] == yaml.safe_load(export.read_text())["fid"]["value"]  # the EMA's, bit for bit
    assert result["reproduces_export_seed_fid"] is True
