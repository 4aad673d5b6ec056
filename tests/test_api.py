"""The public API: the exported λ applied in one's own loop trains the weights the sweep trained."""

from __future__ import annotations

import math
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_export import _confirmation, _flat_race_verdict, _race_study

import lambda_search
from examples.apply_lambda import train_gan
from lambda_search.cli import main
from lambda_search.config import StudyConfig
from lambda_search.data import from_uint8
from lambda_search.errors import ConfigError
from lambda_search.gan.factory import load_model
from lambda_search.gan.train import new_state, train
from lambda_search.names import builtin_model
from lambda_search.records.export import Export
from lambda_search.results.export import best_config, write_export

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread_from_the_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # where `examples.my_gan:build` imports from
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread beats two contended ones on a shared machine
    yield
    torch.set_num_threads(threads)


def test_importing_the_package_and_reading_an_export_import_no_torch():
    code = ("import sys, lambda_search; lambda_search.load_export; lambda_search.Export; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert set(lambda_search.__all__) >= {"penalty", "decayed_parameters", "param_groups", "load_export", "Export"}


def test_help_of_param_groups_states_its_equivalence_with_the_sweep():
    text = pydoc.render_doc(lambda_search.param_groups, renderer=pydoc.plaintext)
    assert "torch.optim.Adam(param_groups(model, λ, \"l2\")" in text and "weight_decay = 2λ" in text
    assert "torch.optim.AdamW(param_groups(model, λ, \"decoupled\")" in text


def test_penalty_and_groups_cover_the_kernels_only():
    generator, _ = load_model(StudyConfig().with_overrides(model={"factory": "examples.my_gan:build"}).model).build(
        (1, 28, 28), 16, 8)
    kernels = [module.weight for module in generator.modules() if isinstance(module, torch.nn.Linear)]
    expected = 0.01 * sum(float(kernel.detach().pow(2).sum()) for kernel in kernels)
    assert lambda_search.penalty(generator, 0.01).item() == pytest.approx(expected, rel=1e-6)
    decayed, others = lambda_search.param_groups(generator, 0.01, "l2")
    assert [id(p) for p in decayed["params"]] == [id(k) for k in kernels] and decayed["weight_decay"] == 0.02
    assert others["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"] + others["params"]} == {id(p) for p in generator.parameters()}
    assert len(lambda_search.decayed_parameters(generator, "all")) == len(list(generator.parameters()))
    with pytest.raises(ConfigError, match="mode = 'adamw' is not one of: l2, decoupled"):
        lambda_search.param_groups(generator, 0.01, "adamw")


def _images() -> torch.Tensor:
    pixels = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    return from_uint8(pixels, torch.zeros(64, dtype=torch.long), "random")


# Decoupled decay shrinks by lr·λ per step (2e-4·λ): it takes a larger λ to show in 12 steps.
@pytest.mark.parametrize(("decay_mode", "penalize", "apply_to", "lam"),
                         [("l2", "weights", "generator", 0.05), ("decoupled", "all", "both", 20.0),
                          ("l2", "all", "both", 0.05)])
def test_the_example_loop_with_param_groups_trains_the_sweeps_weights(decay_mode, penalize, apply_to, lam):
    seed, steps = 4, 12
    config = StudyConfig().with_overrides(
        model={"factory": "examples.my_gan:build"},
        train={"decay_mode": decay_mode, "penalize": penalize, "apply_to": apply_to, "batch_size": 8,
               "latent_dim": 16, "width": 4, "device": "cpu"})
    data, model = _images(), load_model(config.model)
    sweep = new_state(config.train, data.shape, seed, CPU, model)
    train(sweep, data, config.train, lam, steps)

    def own_loop(lam: float) -> torch.nn.Module:
        export = Export.from_dict({"lambda": lam, "config": config.to_dict(), "seed": seed})
        torch.manual_seed(export.seed)
        generator, discriminator = model.build(data.shape, 16, 4)
        train_gan(generator, discriminator, data.images, export, steps, torch.Generator().manual_seed(seed))
        return generator

    for theirs, ours, undecayed in zip(sweep.generator.parameters(), own_loop(lam).parameters(),
                                       own_loop(0.0).parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        if theirs.dim() >= 2:  # and λ did something the tolerance could not hide
            assert (undecayed - theirs).abs().max() > 1e-4


def test_load_export_reads_what_export_wrote_in_either_format(finished_study, tmp_path):
    records = []
    for name in ("best.yaml", "best.json"):
        path = tmp_path / name
        assert main(["export", "--storage", finished_study, "--study", "tiny", "-o", str(path),
                     "--format", name.split(".")[1]]) == 0
        records.append(lambda_search.load_export(path))
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    record = records[0]
    assert record.lam == exported["lambda"] and record.seed == exported["seed"] == 0
    assert record.fid.value == record.seed_fid == exported["fid"]["value"]
    assert record.protocol == exported["fid"]["protocol"] and record.verdict == exported["verdict"]
    assert (record.apply_to, record.decay_mode, record.penalize) == ("generator", "l2", "weights")
    assert record.config.to_dict() == exported["config"] and record.model == builtin_model()
    assert record.study.name == "tiny" and record.fresh_seeds is False
    assert record.to_dict() == exported and records[1] == record


# A race's export repeats the verdict's first fresh seed, a confirmed one the confirmation's (its
# winner λ = 0.001 scored `first_run` on it, λ = 0 1450; inf: it diverged).
@pytest.mark.parametrize("format", ["yaml", "json"])  # YAML keeps the seeds of `fid_by_seed` as ints, JSON as strings
@pytest.mark.parametrize(("first_run", "seed", "expected"),
                         [(None, 10000, 1440.0), (1439.0, 1, 1439.0), (math.inf, 1, None)])
def test_a_confirmed_exports_seed_fid_is_its_runs_on_that_seed(tmp_path, format, first_run, seed, expected):
    confirmation = None if first_run is None else _confirmation(first_run)
    path = tmp_path / f"best.{format}"
    write_export(best_config(_race_study(), "sqlite://", confirmation, race=_flat_race_verdict()), path, format)
    record = lambda_search.load_export(path)
    assert record.seed == seed and record.seed_fid == expected and str(seed) in record.seed_note


def test_the_apply_lambda_example_runs_on_an_export(finished_study, tmp_path):
    export = tmp_path / "best.yaml"
    assert main(["export", "--storage", finished_study, "--study", "tiny", "-o", str(export)]) == 0
    result = subprocess.run([sys.executable, "-m", "examples.apply_lambda", str(export), "3"], cwd=ROOT,
                            capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "3 steps: generator loss" in result.stdout and "λ·Σ‖w‖² of the generator" in result.stdout
