"""`report --compare`: several studies' FID against λ on one offline page, each with its decay setting and control."""

from __future__ import annotations

import re

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from test_report import _chromium, needs_chromium

from lambda_search.cli import main
from lambda_search.config import StudyConfig
from lambda_search.names import PARAM
from lambda_search.results.compare import FIGURE_ID, gather_comparison
from lambda_search.results.figures import compare_fid_against_lambda

PROTOCOL = {"features": "lenet", "dataset_fingerprint": "abc"}


def _add_study(url: str, name: str, fids: dict[float, float], control: float | None = None,
               protocol: dict[str, str] = PROTOCOL, **train: str) -> None:
    """A study as `run` leaves it, built from trials (pruned: the λ whose FID is negative), and its control."""
    study = optuna.create_study(study_name=name, storage=url)
    study.set_user_attr("config", StudyConfig().with_overrides(study={"name": name}, train=train).to_dict())
    study.set_user_attr("fid_protocol", protocol)
    for lam, fid in fids.items():
        pruned = fid < 0
        study.add_trial(create_trial(
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE, value=None if pruned else fid,
            params={PARAM: lam}, distributions={PARAM: FloatDistribution(1e-4, 1e-2, log=True)},
            intermediate_values={10: abs(fid)}))
    if control is not None:
        optuna.create_study(study_name=f"{name}.control", storage=url).add_trial(create_trial(
            value=control, params={PARAM: 0.0}, distributions={PARAM: FloatDistribution(0.0, 1e-2)}))


@pytest.fixture
def storage(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'two.db'}"
    _add_study(url, "gen", {1e-4: 30.0, 1e-3: 25.0, 1e-2: 40.0}, control=28.0)
    _add_study(url, "disc", {2e-4: 35.0, 5e-3: 22.0, 8e-3: -50.0}, apply_to="discriminator", decay_mode="decoupled")
    return url


def test_the_comparison_overlays_every_study_with_its_setting_and_control(storage):
    data = gather_comparison(storage, ["gen", "disc"])
    gen, disc = data.studies
    assert (gen.name, gen.train.apply_to, gen.control_fid) == ("gen", "generator", 28.0)
    assert (disc.train.apply_to, disc.train.decay_mode, disc.control_fid) == ("discriminator", "decoupled", None)
    assert (disc.best_lam, disc.best_fid) == (5e-3, 22.0)
    assert gen.control_comparison.startswith("The best λ scored 3.0000 FID lower than the λ = 0 control (FID 28.0000)")
    traces = {trace.name: trace for trace in compare_fid_against_lambda(data).data if trace.showlegend is not False}
    assert set(traces) == {"gen (generator, l2)", "gen: λ = 0 control", "disc (discriminator, decoupled)"}
    assert list(traces["gen (generator, l2)"].x) == [1e-4, 1e-3, 1e-2]  # joined in λ order
    assert list(traces["disc (discriminator, decoupled)"].y) == [35.0, 22.0]
    assert list(traces["gen: λ = 0 control"].x) == [1e-4, 1e-2] and set(traces["gen: λ = 0 control"].y) == {28.0}
    pruned = [trace for trace in compare_fid_against_lambda(data).data if trace.marker.symbol == "x" and trace.x]
    assert [(list(trace.x), list(trace.y)) for trace in pruned] == [([8e-3], [50.0])]


def test_report_compare_writes_one_self_contained_page(storage, tmp_path, capsys):
    output = tmp_path / "compare.html"
    assert main(["report", "--storage", storage, "--compare", "gen", "disc", "-o", str(output)]) == 0
    assert "2 studies compared" in capsys.readouterr().out
    page = output.read_text(encoding="utf-8")
    assert page.count("plotly.js v") == 1 and not re.search(r"<script[^>]+src=", page)
    assert f'id="{FIGURE_ID}"' in page
    assert "<b>gen</b> (apply_to = generator, decay_mode = l2" in page
    assert "<b>disc</b> (apply_to = discriminator, decay_mode = decoupled" in page
    assert "No λ = 0 control" in page  # disc has none


@pytest.mark.parametrize(("names", "message"), [
    (["gen", "nope"], "no study 'nope' in this storage"),
    (["gen"], "two or more study names"),
    (["gen", "disc", "gen"], "'gen' more than once"),
    (["gen", "other-protocol"], "different protocols (they differ in dataset_fingerprint)"),
])
def test_bad_names_are_one_line_exit_2_and_write_nothing(storage, tmp_path, capsys, names, message):
    _add_study(storage, "other-protocol", {1e-3: 10.0}, protocol={"features": "lenet", "dataset_fingerprint": "xyz"})
    output = tmp_path / "compare.html"
    code = main(["report", "--storage", storage, "--compare", *names, "-o", str(output)])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


@needs_chromium
def test_chromium_draws_the_comparison_without_script_errors(storage, tmp_path):
    output = tmp_path / "compare.html"
    assert main(["report", "--storage", storage, "--compare", "gen", "disc", "-o", str(output)]) == 0
    dom = _chromium(output, tmp_path / "profile", "--dump-dom")
    assert '<pre class="js-error">' not in dom
    assert dom.count('class="plot-container') == 1 and 'class="main-svg"' in dom
