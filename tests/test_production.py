"""Production training from an export: the exported λ and config are the ones used, end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_tiny_study

from lambda_search.cli import main
from lambda_search.gan.models import build_gan


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny networks: one thread beats two contended ones on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory, _one_thread) -> Path:
    """The YAML export of a finished tiny study (trained once for this module)."""
    directory = tmp_path_factory.mktemp("production")
    url = run_tiny_study(directory, n_trials=2, seed=2)
    path = directory / "export" / "best.yaml"
    assert main(["export", "--storage", url, "--study", "tiny", "-o", str(path)]) == 0
    return path


def test_train_reproduces_the_exported_trial(export, tmp_path, capsys):
    exported = yaml.safe_load(export.read_text())
    out = tmp_path / "out"
    assert main(["train", str(export), "-o", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing written beside OUTDIR
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curves.csv", "result.json", "samples.png"]

    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["lambda"] == exported["lambda"]
    assert checkpoint["config"] == exported["config"]
    assert checkpoint["step"] == exported["config"]["train"]["steps"]
    result = json.loads((out / "result.json").read_text())
    assert result["lambda"] == exported["lambda"]
    assert result["same_protocol_as_export"] is True
    # Same λ, config and seed as the sweep's best trial: the same network, so the same FID.
    assert result["fid"] == pytest.approx(exported["fid"]["value"], rel=1e-6)
    # The KID of the run repeated, as the sweep trial stored it: the same computation, the same number.
    assert result["kid"]["generator"] == "live"
    assert result["kid"]["value"] == pytest.approx(exported["kid"]["value"], rel=1e-6)
    assert (out / "samples.png").read_bytes().startswith(b"\x89PNG")
    assert "FID" in capsys.readouterr().out


def test_train_longer_on_request_and_the_checkpoint_loads_into_the_models(export, tmp_path):
    exported = yaml.safe_load(export.read_text())
    out = tmp_path / "longer"
    assert main(["train", str(export), "-o", str(out), "--steps", "24", "--device", "cpu"]) == 0
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 24
    assert checkpoint["config"]["train"]["steps"] == 24
    assert checkpoint["config"]["train"]["device"] == "cpu"
    assert {k: v for k, v in checkpoint["config"]["train"].items() if k not in ("steps", "device")} == \
        {k: v for k, v in exported["config"]["train"].items() if k not in ("steps", "device")}
    train = exported["config"]["train"]
    generator, discriminator = build_gan(train["latent_dim"], (1, 28, 28), train["width"])
    generator.load_state_dict(checkpoint["generator"])
    discriminator.load_state_dict(checkpoint["discriminator"])
    with torch.no_grad():
        images = generator.eval()(torch.randn(4, train["latent_dim"]))
    assert images.shape == (4, 1, 28, 28)
    assert math.isfinite(json.loads((out / "result.json").read_text())["fid"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("lambda: 0.001\n", "no `config` table"),
        ("lambda: fast\nconfig: {}\n", "`lambda` must be a finite number"),
        ("{unclosed", "cannot read export file"),
        # A race section without its verdict's figures: not a layout any export of this version holds.
        ("lambda: 0.001\nconfig: {study: {}, data: {}, train: {}, fid: {}}\nrace: {seeds: [1]}\n",
         "is not an export this version reads (KeyError: 'fid_by_seed')"),
    ],
)
def test_a_bad_export_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code = main(["train", str(path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_missing_export_is_exit_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "absent.yaml"), "-o", str(tmp_path / "out")]) == 2
    assert "export file not found" in capsys.readouterr().err
