"""The EMA generator (`[train] ema`): the average, its BatchNorm recompute, both FIDs and KIDs on every trial,
a pre-registered `[study] objective` (its generator's KID is the one shown), fused members and SIGTERM/resume."""

from __future__ import annotations

import contextlib
import copy
import io
import shutil
import signal
import time

import optuna
import pytest
import torch
import yaml
from _workers import end_stored_study_at, observer, poll, wait_all, workers
from conftest import TINY_STUDY
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState, create_trial
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from lambda_search.cli import main
from lambda_search.config import DataSection, FidSection, StudyConfig, TrainSection, load_config
from lambda_search.data import load_images
from lambda_search.gan.ema import ema_scores, score_ema
from lambda_search.gan.fused import fuse, train_fused, unfuse
from lambda_search.gan.train import TrainHooks, fixed_noise, new_state, train
from lambda_search.metrics.fid import FidScorer
from lambda_search.names import CURVES_FILE, EVALUATIONS, FID, FID_EMA, PARAM
from lambda_search.records import keys
from lambda_search.records.export import load_export
from lambda_search.records.trials import parse_curves
from lambda_search.results.read_model import read_artifact
from lambda_search.results.report import gather_report, render_report

CPU = torch.device("cpu")
SECTION = TrainSection(batch_size=16, width=8, latent_dim=16, ema=0.9)


@pytest.fixture(scope="module")
def mnist():
    return load_images(DataSection())


def _with_ema(path, ema: float = 0.95, objective: str = FID_EMA):
    """The tiny study file at `path` with `[train] ema` and `[study] objective` set."""
    text = path.read_text().replace("[train]\n", f"[train]\nema = {ema}\n")
    path.write_text(text.replace("[study]\n", f'[study]\nobjective = "{objective}"\n'))
    return path


def test_the_average_is_swa_utils_ema_of_the_parameters_and_not_of_the_batchnorm_buffers(mnist):
    state = new_state(SECTION, mnist.shape, 0, CPU)
    reference = AveragedModel(copy.deepcopy(state.generator), multi_avg_fn=get_ema_multi_avg_fn(SECTION.ema),
                              use_buffers=False)
    reference.update_parameters(state.generator)  # step 0: a copy of the initial weights
    train(state, mnist, SECTION, 1e-3, 12, TrainHooks(after_step=lambda s: reference.update_parameters(s.generator)))
    assert state.ema is not None
    for name, value in reference.module.named_parameters():
        assert torch.equal(state.ema[name], value), name
    assert not any("running" in name for name in state.ema)
    assert not torch.equal(state.ema["upsample.0.weight"], state.generator.state_dict()["upsample.0.weight"])


def test_a_fused_member_keeps_its_own_average(mnist):
    torch.set_default_dtype(torch.float64)  # exact up to rounding: members and lone trials sum in another order
    try:
        data = type(mnist)(mnist.images.double(), mnist.labels, mnist.name, mnist.fingerprint)
        seeds, lams = [0, 1], [1e-4, 1e-2]
        fused = fuse([new_state(SECTION, data.shape, seed, CPU) for seed in seeds], lams, seeds, SECTION, data.shape)
        fused, _ = train_fused(fused, data, SECTION, 10, eval_every=100, evaluate=lambda f: {},
                               on_leave=lambda f, leaving: None)
        for index, (seed, lam) in enumerate(zip(seeds, lams, strict=True)):
            lone = new_state(SECTION, data.shape, seed, CPU)
            train(lone, data, SECTION, lam, 10)
            member = unfuse(fused, index, SECTION, data.shape)
            assert member.ema is not None and lone.ema is not None
            for name, value in lone.ema.items():
                assert (member.ema[name] - value).abs().max().item() <= 1e-12, name
    finally:
        torch.set_default_dtype(torch.float32)


def test_the_ema_fid_with_recomputed_batchnorm_is_the_same_twice_for_a_rerun_and_beside_its_kid(mnist, warm_cache):
    config = StudyConfig(train=SECTION, fid=FidSection(n_samples=128, n_real=500))
    scorer = FidScorer(config.fid, mnist, CPU)
    noise = fixed_noise(config.fid.n_samples, SECTION.latent_dim, 0, CPU)

    def trained():
        state = new_state(SECTION, mnist.shape, 0, CPU)
        train(state, mnist, SECTION, 1e-3, 20)
        return state

    state = trained()
    live = state.generator.state_dict()
    first = score_ema(scorer, state, config, 0, noise)
    assert score_ema(scorer, state, config, 0, noise) == first
    again = trained()
    assert score_ema(scorer, again, config, 0, noise) == first
    # Its KID comes from the same pass, which it leaves alone: the FID is the same to the bit.
    scores = ema_scores(scorer, state, config, 0, noise, kid=True)
    assert scores.fid == first and scores.kid is not None and scores.kid_std is not None
    # Scoring the average leaves the live generator alone, and its FID and KID are other numbers.
    assert all(torch.equal(value, state.generator.state_dict()[name]) for name, value in live.items())
    assert scorer.score(state.generator, noise) != first
    assert scorer.scores(state.generator, noise, kid=True).kid != scores.kid


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def _curves(tmp_path, url: str, name: str, number: int) -> list[dict[str, float | None]]:
    study = optuna.load_study(study_name=name, storage=url)
    store = FileSystemArtifactStore(str(tmp_path / f"{name}.artifacts"))
    data = read_artifact(study, study.trials[number], store, CURVES_FILE)
    assert data is not None
    return parse_curves(data)


@pytest.mark.slow
@pytest.mark.parametrize(("fuse_trials", "objective"), [(1, FID_EMA), (2, FID)])
def test_a_study_with_ema_stores_both_fids_and_both_kids_on_every_trial(tiny_study, tmp_path, warm_cache, fuse_trials,
                                                                         objective):
    path = _with_ema(tiny_study(name="ema", n_trials=3, fuse=fuse_trials), objective=objective)
    assert main(["run", str(path)]) == 0
    url = f"sqlite:///{tmp_path / 'ema.db'}"
    trials = _trials(url, "ema") + _trials(url, "ema.control")
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:
        fid, fid_ema = trial.user_attrs[FID], trial.user_attrs[FID_EMA]
        assert fid != fid_ema
        # The final evaluation's KID of each generator, whichever the objective judges.
        assert trial.user_attrs[keys.KID] != trial.user_attrs[keys.KID_EMA]
        assert trial.user_attrs[keys.KID_STD] > 0 and trial.user_attrs[keys.KID_EMA_STD] > 0
        assert trial.value == trial.user_attrs[objective]
        evaluations = trial.user_attrs[EVALUATIONS]
        assert [e["step"] for e in evaluations] == [10, 20]
        assert (evaluations[-1][FID], evaluations[-1][FID_EMA]) == (fid, fid_ema)
        # The intermediate values Optuna holds (and prunes on) are the objective's.
        assert trial.intermediate_values == {e["step"]: e[objective] for e in evaluations}
    rows = [row for row in _curves(tmp_path, url, "ema", 0) if row[FID_EMA] is not None]
    assert [(row["step"], row[FID], row[FID_EMA]) for row in rows] == \
        [(e["step"], pytest.approx(e[FID]), pytest.approx(e[FID_EMA])) for e in trials[0].user_attrs[EVALUATIONS]]


def _cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


@pytest.mark.parametrize(("ema", "objective", "field"), [(0.95, FID, "[study] objective"),
                                                          (0.9, FID_EMA, "[train] ema")])
def test_the_objective_and_the_decay_cannot_change_on_a_running_study(tiny_study, tmp_path, warm_cache,
                                                                        ema, objective, field):
    path = _with_ema(tiny_study(name="fixed", n_trials=1, steps=10, control=False))
    assert main(["run", str(path)]) == 0
    url = f"sqlite:///{tmp_path / 'fixed.db'}"
    before = _trials(url, "fixed"), optuna.load_study(study_name="fixed", storage=url).user_attrs
    path.write_text(path.read_text().replace("n_trials = 1", "n_trials = 2"))
    text = path.read_text().replace("ema = 0.95", f"ema = {ema}")
    path.write_text(text.replace('objective = "fid_ema"', f'objective = "{objective}"'))
    assert load_config(path).study.n_trials == 2  # the file itself is valid
    code, stderr = _cli("run", str(path))
    assert code == 2
    assert len(stderr.splitlines()) == 1 and field in stderr and "use another study name" in stderr, stderr
    assert (_trials(url, "fixed"), optuna.load_study(study_name="fixed", storage=url).user_attrs) == before


@pytest.mark.slow
def test_sigterm_then_resume_gives_the_fids_of_an_uninterrupted_run(tiny_study, tmp_path, mnist, warm_cache):
    """Preempted mid-training and resumed, a trial ends with exactly the live and EMA FIDs of a run never stopped."""
    long, name, url = 50_000, "stopped", f"sqlite:///{tmp_path / 'stopped.db'}"
    path = _with_ema(tiny_study(name=name, storage=url, n_trials=1, steps=long, eval_every=long,
                                checkpoint_every=0, control=False))
    storage = observer(url)

    def running() -> bool:
        return name in optuna.get_all_study_names(storage) and any(
            t.state == TrialState.RUNNING and "worker" in t.user_attrs for t in _trials(url, name))

    with workers(tmp_path, path, 1) as started:
        poll(running, 90, "the running trial")
        time.sleep(1.0)  # well inside training
        started[0].process.send_signal(signal.SIGTERM)
        assert wait_all(started, 90) == [143], started[0].output
    saved = torch.load(tmp_path / f"{name}.artifacts" / "checkpoints" / name / "trial-0.pt", weights_only=True)
    assert 0 < saved["step"] < long and saved["ema"] is not None
    steps = saved["step"] + 20
    path.write_text(path.read_text().replace(f"steps = {long}", f"steps = {steps}")
                    .replace(f"eval_every = {long}", "eval_every = 10"))
    end_stored_study_at(url, name, steps, 10)
    with workers(tmp_path, path, 1) as [second]:
        assert wait_all([second], 120) == [0], second.output
    resumed = next(t for t in _trials(url, name) if t.state == TrialState.COMPLETE)
    assert resumed.user_attrs["resumed_from_step"] == saved["step"]

    # The same trial trained here without a stop: same seed, λ, steps and fixed noise, one thread as the worker.
    config = load_config(path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        state = new_state(config.train, mnist.shape, config.study.seed, CPU)
        train(state, mnist, config.train, resumed.params[PARAM], steps)
        scorer = FidScorer(config.fid, mnist, CPU)
        noise = fixed_noise(config.fid.n_samples, config.train.latent_dim, config.study.seed, CPU)
        seed = config.study.seed
        uninterrupted = (scorer.score(state.generator, noise),
                         score_ema(scorer, state, config, seed, noise))
    finally:
        torch.set_num_threads(threads)
    assert (resumed.user_attrs[FID], resumed.user_attrs[FID_EMA]) == uninterrupted
    storage.engine.dispose()


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Storage URL of a finished study "judged" by the EMA generator (one trial, no control). Read-only: copy it."""
    directory = tmp_path_factory.mktemp("judged")
    url = f"sqlite:///{directory / 'judged.db'}"
    path = directory / "judged.toml"
    path.write_text(TINY_STUDY.format(name="judged", storage=url, n_trials=1, seed=0, steps=20, eval_every=10,
                                      checkpoint_every=10, control="false", strategy="sweep", fuse=1))
    assert main(["run", str(_with_ema(path))]) == 0
    return url


def _copy(url: str, tmp_path) -> str:
    """A copy of the SQLite storage at `url` in tmp_path, to change."""
    shutil.copy(url.removeprefix("sqlite:///"), tmp_path / "copy.db")
    return f"sqlite:///{tmp_path / 'copy.db'}"


def _report(url: str, name: str, tmp_path) -> str:
    study = optuna.load_study(study_name=name, storage=url)
    return render_report(gather_report(study, FileSystemArtifactStore(str(tmp_path))))


@pytest.mark.slow
def test_confirm_status_and_export_judge_the_objective(judged, tmp_path, capsys):
    url = _copy(judged, tmp_path)
    assert main(["confirm", "--storage", url, "--study", "judged", "--top", "1", "--seeds", "2"]) == 0
    runs = _trials(url, "judged.confirm")
    assert len(runs) == 4
    assert all(run.value == run.user_attrs[FID_EMA] != run.user_attrs[FID] for run in runs)
    assert all(run.user_attrs[keys.KID_EMA] != run.user_attrs[keys.KID] for run in runs)
    capsys.readouterr()
    assert main(["status", "--storage", url, "--study", "judged"]) == 0
    assert "every FID of this study is the EMA generator's (fid_ema, decay 0.95" in capsys.readouterr().out
    assert main(["export", "--storage", url, "--study", "judged", "-o", str(tmp_path / "best.yaml")]) == 0
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert (exported["fid"]["objective"], exported["fid"]["ema"]) == (FID_EMA, 0.95)
    assert exported["fresh_seeds"]
    winner = [run.value for run in runs if run.params[PARAM] == exported["lambda"]]
    assert exported["fid"]["value"] == pytest.approx(sum(winner) / len(winner))


@pytest.mark.slow
def test_an_ema_judged_export_and_report_show_the_ema_kid_and_say_so(judged, tmp_path):
    [trial] = _trials(judged, "judged")
    path = tmp_path / "best.yaml"
    assert main(["export", "--storage", judged, "--study", "judged", "-o", str(path)]) == 0
    exported = yaml.safe_load(path.read_text())
    assert exported["fid"]["value"] == trial.user_attrs[FID_EMA]
    assert exported["kid"] == {"value": trial.user_attrs[keys.KID_EMA], "std": trial.user_attrs[keys.KID_EMA_STD],
                               "generator": "ema", "protocol": trial.user_attrs[keys.KID_PROTOCOL]}
    assert load_export(path).kid.generator == "ema"
    page = _report(judged, "judged", tmp_path)
    assert "KID of the EMA generator (± sd over subsets)" in page and "KID of the EMA generator against" in page
    assert f"<td class=n>{trial.user_attrs[keys.KID_EMA]:.4g} ± " in page
    assert f"{trial.user_attrs[keys.KID]:.4g} ± " not in page


@pytest.mark.slow
def test_a_trial_stored_before_the_ema_kid_shows_its_live_kid_labelled_live(judged, tmp_path):
    """A trial of an EMA-judged study stored as before the EMA KID existed: its KID is the live one, and says so."""
    url = _copy(judged, tmp_path)
    [trial] = _trials(url, "judged")
    old = {key: value for key, value in trial.user_attrs.items() if key not in (keys.KID_EMA, keys.KID_EMA_STD)}
    study = optuna.create_study(study_name="old", storage=url)
    for key, value in optuna.load_study(study_name="judged", storage=url).user_attrs.items():
        study.set_user_attr(key, value)
    study.add_trial(create_trial(value=trial.value, params=trial.params, distributions=trial.distributions,
                                 intermediate_values=trial.intermediate_values, user_attrs=old))
    path = tmp_path / "old.yaml"
    assert main(["export", "--storage", url, "--study", "old", "-o", str(path)]) == 0
    exported = yaml.safe_load(path.read_text())
    assert (exported["fid"]["objective"], exported["fid"]["value"]) == (FID_EMA, trial.user_attrs[FID_EMA])
    assert (exported["kid"]["value"], exported["kid"]["generator"]) == (trial.user_attrs[keys.KID], "live")
    # An export written before `kid.generator` existed held the live generator's KID: it reads as such.
    del exported["kid"]["generator"]
    path.write_text(yaml.safe_dump(exported, sort_keys=False, allow_unicode=True))
    assert load_export(path).kid.generator == "live"
    page = _report(url, "old", tmp_path)
    assert "KID of the live generator (± sd over subsets)" in page and "EMA generator (± sd" not in page
    assert f"<td class=n>{trial.user_attrs[keys.KID]:.4g} ± " in page
    # Beside a trial stored since: the heading names both, and each cell its own.
    study.add_trial(create_trial(value=trial.value, params=trial.params, distributions=trial.distributions,
                                 user_attrs=trial.user_attrs))
    page = _report(url, "old", tmp_path)
    assert "KID of the EMA generator or the live generator (± sd over subsets)" in page
    assert f"{trial.user_attrs[keys.KID]:.4g} ± {trial.user_attrs[keys.KID_STD]:.2g} (live generator)" in page
    assert f"{trial.user_attrs[keys.KID_EMA]:.4g} ± {trial.user_attrs[keys.KID_EMA_STD]:.2g} (EMA generator)" in page
