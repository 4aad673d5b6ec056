"""The HTML report: gathered data, a self-contained page, and the page as headless Chromium renders it."""

from __future__ import annotations

import base64
import math
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from lambda_search.cli import main
from lambda_search.config import StudyConfig
from lambda_search.errors import NoResultError
from lambda_search.names import PARAM
from lambda_search.results.report import FIGURE_IDS, gather_report
from lambda_search.sweep.storage import storage_of

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def _trial(state: TrialState, lam: float, fid: float | None,
           intermediate: dict[int, float]) -> optuna.trial.FrozenTrial:
    return create_trial(state=state, value=fid if state == TrialState.COMPLETE else None, params={PARAM: lam},
                        distributions={PARAM: FloatDistribution(1e-4, 1e-2, log=True)},
                        intermediate_values=intermediate, user_attrs={"steps": 20})


def _built_study() -> optuna.Study:
    study = optuna.create_study(study_name="built")
    study.set_user_attr("config", StudyConfig().to_dict())
    study.set_user_attr("fid_protocol", {"features": "lenet", "dataset_fingerprint": "abc"})
    study.add_trial(_trial(TrialState.COMPLETE, 1e-3, 30.0, {10: 60.0, 20: 30.0}))
    study.add_trial(_trial(TrialState.PRUNED, 2e-4, None, {10: 90.0}))
    study.add_trial(_trial(TrialState.COMPLETE, 5e-3, 20.0, {20: 20.0, 10: 50.0}))
    study.add_trial(_trial(TrialState.FAIL, 1e-2, None, {}))
    return study


def test_gather_marks_the_best_and_reads_pruned_fids_from_their_last_report(tmp_path):
    data = gather_report(_built_study(), FileSystemArtifactStore(str(tmp_path)))
    assert data.best_number == 2 and data.best_fid == 20.0
    assert [(row.number, row.state, row.fid) for row in data.points] == [
        (0, "COMPLETE", 30.0), (1, "PRUNED", 90.0), (2, "COMPLETE", 20.0)]
    assert [row.state for row in data.table] == ["COMPLETE", "PRUNED", "COMPLETE", "FAIL"]
    assert [(c.number, c.steps, c.fids) for c in data.fid_curves] == [
        (0, [10, 20], [60.0, 30.0]), (1, [10], [90.0]), (2, [10, 20], [50.0, 20.0])]
    # The best, then the lowest and highest λ among finished trials; the failed one is not shown.
    assert [(grid.label, grid.number) for grid in data.grids] == [("best", 2), ("lowest λ", 1)]
    assert all(grid.png is None for grid in data.grids)  # no artifacts were uploaded here
    assert data.losses == []
    assert data.config.train.apply_to == "generator"


def test_a_study_without_a_finished_trial_raises_no_result(tmp_path):
    study = optuna.create_study(study_name="empty")
    study.set_user_attr("config", StudyConfig().to_dict())
    study.add_trial(_trial(TrialState.FAIL, 1e-3, None, {}))
    with pytest.raises(NoResultError, match="no finished trial"):
        gather_report(study, FileSystemArtifactStore(str(tmp_path)))


@pytest.fixture(scope="module")
def finished(finished_study: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The shared finished tiny study and its report."""
    url = finished_study
    directory = tmp_path_factory.mktemp("report")
    report = directory / "report.html"
    assert main(["report", "--storage", url, "--study", "tiny", "-o", str(report)]) == 0
    return url, report


def _featured_count(study: optuna.Study) -> int:
    """How many sample grids the report shows: best, lowest λ, highest λ, without repeats."""
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    best = min(trials, key=lambda trial: trial.value)
    by_lambda = sorted(trials, key=lambda trial: trial.params[PARAM])
    return len({best.number, by_lambda[0].number, by_lambda[-1].number})


def test_the_report_is_self_contained_and_embeds_the_stored_sample_grids(finished):
    url, report = finished
    page = report.read_text(encoding="utf-8")
    assert page.count("plotly.js v") == 1  # the library once, inlined
    assert not re.search(r"<script[^>]+src=", page)  # nothing loaded from the network
    for div_id in FIGURE_IDS:
        assert f'id="{div_id}"' in page
    study = optuna.load_study(study_name="tiny", storage=url)
    store = FileSystemArtifactStore(str(Path(url.removeprefix("sqlite:///")).with_name("tiny.artifacts")))
    stored = set()
    control = optuna.load_study(study_name="tiny.control", storage=url).trials[0]
    for trial in [*study.trials, control]:
        for meta in optuna.artifacts.get_all_artifact_meta(trial, storage=storage_of(study)):
            if meta.filename == "samples.png":
                with store.open_reader(meta.artifact_id) as reader:
                    stored.add(reader.read())
    grids = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    embedded = {base64.b64decode(png) for png in grids}
    assert len(embedded) == _featured_count(study) + 1 and embedded <= stored  # and the control's grid
    assert page.count("<tr") >= 1 + 3 and "dataset_fingerprint" in page and "apply_to" in page


def test_the_report_states_the_decay_setting_and_the_control(finished):
    url, report = finished
    page = report.read_text(encoding="utf-8")
    control = optuna.load_study(study_name="tiny.control", storage=url).trials[0]
    assert "<p class=decay><b>apply_to = generator, decay_mode = l2, penalize = weights</b>" in page
    assert f"λ = 0 control (FID {control.value:.4f})" in page and "unconfirmed" in page  # the lead sentence
    assert f"\\u03bb = 0 control: FID {control.value:.4f}" in page  # the line on the FID-λ plot
    assert '<img alt="λ = 0 control (study tiny.control), same seed"' in page
    store = FileSystemArtifactStore(str(Path(url.removeprefix("sqlite:///")).with_name("tiny.artifacts")))
    data = gather_report(optuna.load_study(study_name="tiny", storage=url), store)
    assert data.control is not None and data.control.fid == control.value and data.control.study == "tiny.control"
    assert [curve.label for curve in data.losses][-1] == "λ = 0 control"


def test_every_complete_trial_stores_its_kid_and_the_report_draws_it(finished):
    url, report = finished
    study = optuna.load_study(study_name="tiny", storage=url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete
    for trial in complete:
        assert math.isfinite(trial.user_attrs["kid"])
        assert trial.user_attrs["kid_std"] >= 0
        # n_samples = 128 generated images: subsets of 128, not torch-fidelity's 1,000.
        assert trial.user_attrs["kid_protocol"]["subset_size"] == 128
    page = report.read_text(encoding="utf-8")
    assert 'id="kid-vs-lambda"' in page and "KID against" in page and "KID (± sd over subsets)" in page
    for trial in complete:
        assert f"{trial.user_attrs['kid']:.4g} ± " in page  # its cell in the trial table


def test_report_of_a_study_without_finished_trials_is_exit_1(finished, tmp_path, capsys):
    url, _ = finished
    study = optuna.create_study(study_name="nothing-yet", storage=url)
    study.set_user_attr("config", StudyConfig().to_dict())
    output = tmp_path / "report.html"
    code = main(["report", "--storage", url, "--study", "nothing-yet", "-o", str(output)])
    err = capsys.readouterr().err
    assert code == 1 and "no finished trial" in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


def _chromium(page: Path, profile: Path, *arguments: str) -> str:
    command = [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--virtual-time-budget=5000", *arguments, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def _figure_blocks(dom: str) -> dict[str, str]:
    """The DOM between each figure's div and the next one's."""
    starts = sorted((dom.index(f'id="{div_id}"'), div_id) for div_id in FIGURE_IDS)
    ends = [start for start, _ in starts[1:]] + [len(dom)]
    return {div_id: dom[start:end] for (start, div_id), end in zip(starts, ends, strict=True)}


@needs_chromium
def test_chromium_renders_every_figure_without_script_errors(finished, tmp_path):
    url, report = finished
    dom = _chromium(report, tmp_path / "profile", "--dump-dom")
    assert '<pre class="js-error">' not in dom
    blocks = _figure_blocks(dom)
    for div_id, block in blocks.items():
        assert 'class="plot-container' in block and 'class="main-svg"' in block, div_id
    assert dom.count('class="plot-container') == len(FIGURE_IDS)
    # FID and KID side by side: each drawn at half the page's width, not clipped at full width.
    widths = {div_id: float(re.search(r'class="main-svg"[^>]*? width="([\d.]+)"', block).group(1))
              for div_id, block in blocks.items()}
    assert widths["fid-vs-lambda"] == widths["kid-vs-lambda"] < 0.6 * widths["optimization-history"]
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(re.findall(r'<img alt="[^"]*trial \d+[^"]*" src="data:image/png', dom)) == _featured_count(study)
    shot = tmp_path / "report.png"
    _chromium(report, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars")
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000


@needs_chromium
def test_a_script_error_in_the_report_would_show_in_the_dom(finished, tmp_path):
    _, report = finished
    broken = tmp_path / "broken.html"
    broken.write_text(report.read_text(encoding="utf-8").replace("</body>", "<script>notAFunction()</script></body>"),
                      encoding="utf-8")
    dom = _chromium(broken, tmp_path / "profile", "--dump-dom")
    assert '<pre class="js-error">JavaScript error:' in dom
