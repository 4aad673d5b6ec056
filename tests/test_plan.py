"""`lambda-search plan`: verdict seeds for 80% power, from a pilot's paired runs or the documented default."""

from __future__ import annotations

import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from lambda_search.cli import main
from lambda_search.config import config_from_dict
from lambda_search.errors import ConfigError
from lambda_search.metrics.stats import power_at
from lambda_search.names import CONTROL, PARAM
from lambda_search.results.plan import DEFAULT_SD, plan
from lambda_search.sweep.race.rule import VERDICT_SEED_OFFSET

QUICKSTART = Path(__file__).parent.parent / "studies" / "quickstart.toml"
DISTRIBUTION = {PARAM: FloatDistribution(0.0, 1e-2)}
# The pilot race's verdict: λ = 1e-3 and λ = 0 on its 3 fresh seeds.
VERDICT_FIDS = [50.0, 60.0, 40.0]
VERDICT_CONTROL = [55.0, 52.0, 47.0]


def _run(study: optuna.Study, lam: float, seed: int, role: str, fid: float) -> None:
    study.add_trial(create_trial(value=fid, params={PARAM: lam}, distributions=DISTRIBUTION,
                                 user_attrs={"seed": seed, "role": role}))


def pilot_race(url: str, name: str = "pilot") -> None:
    """A finished race of 8 runs, built without training: λ = 0 and one λ searched, then the verdict."""
    config = config_from_dict({"study": {"name": name, "n_trials": 8, "strategy": "race", "storage": url}})
    study = optuna.create_study(study_name=name, storage=url)
    study.set_user_attr("config", config.to_dict())
    control = optuna.create_study(study_name=f"{name}.control", storage=url)
    _run(control, CONTROL, 0, "search", 70.0)
    _run(study, 1e-3, 0, "search", 65.0)
    for index, (fid, control_fid) in enumerate(zip(VERDICT_FIDS, VERDICT_CONTROL, strict=True)):
        _run(study, 1e-3, VERDICT_SEED_OFFSET + index, "verdict", fid)
        _run(control, CONTROL, VERDICT_SEED_OFFSET + index, "verdict", control_fid)


def test_plan_for_the_quickstart_answers_without_training_or_torch(tmp_path):
    """From a folder with no quickstart.db: the documented default sd; nothing is written, torch is never imported."""
    (tmp_path / "studies").mkdir()
    shutil.copy(QUICKSTART, tmp_path / "studies")
    code = ("import sys; from lambda_search.cli import main; "
            "code = main(['plan', 'studies/quickstart.toml', '--effect', '5']); "
            "assert code == 0, code; assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(Path(__file__).parent.parent), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[1] == ("paired-difference sd: 11.00 FID, from the documented default: the quickstart setting, "
                        "measured 2026-12, 8 paired seeds, 2-core CPU")
    # 40 seeds at sd 11 for 5 FID (the "~40"); the search keeps its 14 runs: 14 + 2 × 40 = 94.
    assert lines[2] == ("needs 40 verdict seeds: 94 runs (14 search + 2 × 40); in [study] put verdict_seeds = 40 "
                        "and n_trials = 94")
    assert lines[3].startswith("as the file stands: 3 verdict seeds of 20 runs, 8% power for 5 FID (detectable: ≥ 35.9")
    assert sorted(path.name for path in (tmp_path / "studies").iterdir()) == ["quickstart.toml"]


def test_the_plan_gives_the_power_it_promises_and_no_seed_less_would(tmp_path):
    alone = tmp_path / "alone.toml"  # its storage does not exist: the default sd
    alone.write_text(QUICKSTART.read_text().replace("sqlite:///studies/", f"sqlite:///{tmp_path}/"))
    result = plan(alone, 8.0)
    assert result.pilot.sd == DEFAULT_SD and not (tmp_path / "quickstart.db").exists()
    assert power_at(8.0, DEFAULT_SD, result.verdict_seeds) >= 0.8 > power_at(8.0, DEFAULT_SD, result.verdict_seeds - 1)
    assert (result.search_runs, result.n_trials) == (14, 14 + 2 * result.verdict_seeds)


def test_a_finished_race_is_the_pilot_named_or_in_the_files_own_storage(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'pilot.db'}"
    pilot_race(url)
    sd = statistics.stdev(f - c for f, c in zip(VERDICT_FIDS, VERDICT_CONTROL, strict=True))
    named = plan(QUICKSTART, 5.0, f"{url}/pilot")
    assert named.pilot.sd == pytest.approx(sd) and named.pilot.n == 3
    assert named.pilot.source == f"3 paired seeds of the race verdict of study 'pilot' in {url}"
    # The same race read as the file's own study: the file names its storage and study.
    own = tmp_path / "own.toml"
    own.write_text(QUICKSTART.read_text().replace('name = "quickstart"', 'name = "pilot"')
                   .replace("sqlite:///studies/quickstart.db", url))
    assert plan(own, 5.0).pilot == named.pilot
    assert main(["plan", str(own), "--effect", "5"]) == 0
    out = capsys.readouterr().out
    assert f"paired-difference sd: {sd:.2f} FID, from 3 paired seeds of the race verdict" in out
    assert f"verdict_seeds = {named.verdict_seeds} " in out


def test_a_confirmation_is_a_pilot_with_the_pooled_sd(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    study = optuna.create_study(study_name="sweep", storage=url)
    study.set_user_attr("config", config_from_dict({"study": {"name": "sweep"}}).to_dict())
    companion = optuna.create_study(study_name="sweep.confirm", storage=url)
    control, first, second = [20.0, 22.0, 21.0, 25.0], [18.0, 23.0, 19.0, 21.0], [30.0, 22.0, 26.0, 27.0]
    for lam, fids in ((CONTROL, control), (1e-3, first), (1e-2, second)):
        for seed, fid in enumerate(fids, start=1):
            companion.add_trial(create_trial(value=fid, params={PARAM: lam}, distributions=DISTRIBUTION,
                                             user_attrs={"seed": seed}))
    variances = [statistics.variance([a - b for a, b in zip(fids, control, strict=True)]) for fids in (first, second)]
    measured = plan(QUICKSTART, 5.0, f"{url}/sweep").pilot
    assert measured.sd == pytest.approx(math.sqrt(statistics.fmean(variances))) and measured.n == 8
    assert "of the confirmation of study 'sweep'" in measured.source


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(study_name="bare", storage=url).set_user_attr(
        "config", config_from_dict({"study": {"name": "bare", "strategy": "race", "n_trials": 8}}).to_dict())
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('[study]\nname = "s"\n')
    for argv, message in (
        (["plan", str(QUICKSTART), "--effect", "0"], "the effect to detect must be a finite number > 0 FID"),
        (["plan", str(QUICKSTART), "--effect", "inf"], "the effect to detect must be a finite number > 0 FID"),
        # Past a million seeds the answer is "not at any budget", not a crash in scipy.
        (["plan", str(QUICKSTART), "--effect", "1e-12"], "takes more than 1,000,000 paired seeds"),
        (["plan", str(sweep), "--effect", "5"], "plan sizes a race's verdict"),
        (["plan", str(QUICKSTART), "--effect", "5", "--pilot", "bare"], "give STORAGE/STUDY"),
        (["plan", str(QUICKSTART), "--effect", "5", "--pilot", "mysql://db/x/bare"], "'mysql' is not one of"),
        (["plan", str(QUICKSTART), "--effect", "5", "--pilot", f"{url}/bare"], "holds no finished race verdict"),
    ):
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1
    with pytest.raises(ConfigError):
        plan(QUICKSTART, -1.0)


def test_the_default_sd_is_the_one_measured_where_the_file_trains_and_for_the_fid_it_judges(tmp_path):
    """The pre-registered GPU EMA finding (cuda, fid_ema): the H200's EMA sd, not the CPU quickstart's 11."""
    gpu = tmp_path / "gpu-ema.toml"
    source = Path(__file__).parent.parent / "studies" / "finding-gpu-ema-generator.toml"
    gpu.write_text(source.read_text().replace("sqlite:///studies/", f"sqlite:///{tmp_path}/"))
    result = plan(gpu, 5.0)
    assert (result.pilot.sd, result.pilot.n) == (7.48, 12) and "H200" in result.pilot.source
    assert power_at(5.0, 7.48, result.verdict_seeds) >= 0.8 > power_at(5.0, 7.48, result.verdict_seeds - 1)
    # The same file on the CPU: the EMA finding's sd, measured on 14 paired seeds.
    cpu = tmp_path / "cpu-ema.toml"
    cpu.write_text(gpu.read_text().replace('device = "cuda"', 'device = "cpu"'))
    assert (plan(cpu, 5.0).pilot.sd, plan(cpu, 5.0).pilot.n) == (6.11, 14)


def test_a_default_measured_at_another_size_is_flagged(tmp_path):
    """The pre-registered GPU finding trains 3,000 steps at EMA 0.99; its default sd was measured at 2,000 and 0.95."""
    gpu = tmp_path / "gpu-ema.toml"
    source = Path(__file__).parent.parent / "studies" / "finding-gpu-ema-generator.toml"
    gpu.write_text(source.read_text().replace("sqlite:///studies/", f"sqlite:///{tmp_path}/"))
    caution = plan(gpu, 5.0).lines()[-1]
    assert caution.startswith("caution: the default sd was measured at another size (steps 3000 here, 2000 there; "
                              "ema 0.99 here, 0.95 there)")
    assert not any(line.startswith("caution") for line in plan(QUICKSTART, 5.0).lines())  # the size it was measured at
