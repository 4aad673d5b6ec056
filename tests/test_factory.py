"""`[model] factory`: the user's networks are built, checked, identified, and a changed model is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from lambda_search.cli import main
from lambda_search.config import ModelSection, StudyConfig, TrainSection
from lambda_search.errors import ConfigError
from lambda_search.gan.factory import BUILTIN, check_model, load_model
from lambda_search.gan.penalty import decayed_parameters
from lambda_search.gan.train import new_state
from lambda_search.names import MODEL, builtin_model

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (1, 28, 28)
BAD_FACTORIES = '''
from torch import nn

def wrong_image_shape(image_shape, latent_dim, width):
    return nn.Sequential(nn.Linear(latent_dim, 10), nn.Unflatten(1, (1, 2, 5))), nn.Flatten()

def many_logits(image_shape, latent_dim, width):
    import math
    pixels = math.prod(image_shape)
    return (nn.Sequential(nn.Linear(latent_dim, pixels), nn.Unflatten(1, image_shape)),
            nn.Sequential(nn.Flatten(), nn.Linear(pixels, 3)))

def one_network(image_shape, latent_dim, width):
    return nn.Linear(latent_dim, 1)

def raises(image_shape, latent_dim, width):
    raise RuntimeError("no GPU for my model\\nsecond line")

not_callable = 3
'''


@pytest.fixture(autouse=True)
def _from_the_root(monkeypatch, tmp_path):
    """Factories import from the working directory: the repository's examples, and this test's bad ones."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "bad_factories.py").write_text(BAD_FACTORIES)


def test_the_example_networks_differ_from_the_dcgan_and_pass_the_check():
    model = load_model(ModelSection(factory="examples.my_gan:build"))
    check_model(model, SHAPE, 16, 8)
    state = new_state(TrainSection(latent_dim=16, width=8), SHAPE, 0, torch.device("cpu"), model)
    builtin = new_state(TrainSection(latent_dim=16, width=8), SHAPE, 0, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.Conv2d) for m in state.discriminator.modules())
    assert state.generator.state_dict().keys() != builtin.generator.state_dict().keys()
    images = state.generator(torch.randn(4, 16))
    assert images.shape == (4, *SHAPE) and images.abs().max() <= 1
    assert state.discriminator(images).shape == (4, 1)
    # λ decays the Linear kernels, not the biases nor the LayerNorm's scale and shift.
    assert [p.shape for p in decayed_parameters(state.generator)] == [(64, 16), (784, 64)]


def test_the_same_seed_builds_the_same_networks_and_the_check_leaves_the_rng_alone():
    model = load_model(ModelSection(factory="examples.my_gan:build"))
    torch.manual_seed(5)
    check_model(model, SHAPE, 16, 8)
    after_check = torch.randn(3)
    torch.manual_seed(5)
    assert torch.equal(torch.randn(3), after_check)
    first, second = (new_state(TrainSection(latent_dim=16, width=8), SHAPE, 7, torch.device("cpu"), model)
                     for _ in range(2))
    for a, b in zip(first.generator.parameters(), second.generator.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_identity_is_the_source_hash_or_the_version_given():
    hashed = load_model(ModelSection(factory="examples.my_gan:build")).identity
    assert hashed["factory"] == "examples.my_gan:build" and len(hashed["version"]) == len("sha256:") + 64
    versioned = load_model(ModelSection(factory="examples.my_gan:build", factory_version="2.1")).identity
    assert versioned == {"factory": "examples.my_gan:build", "version": "2.1"}
    assert load_model(ModelSection()) is BUILTIN and BUILTIN.identity == builtin_model()


@pytest.mark.parametrize(("factory", "message"), [
    ("absent_module_xyz:build", "cannot import 'absent_module_xyz' (ModuleNotFoundError"),
    ("examples.my_gan:missing", "has no callable 'missing'"),
    ("bad_factories:not_callable", "has no callable 'not_callable'"),
    ("bad_factories:one_network", "must return (generator, discriminator)"),
    ("bad_factories:raises", "raised RuntimeError: no GPU for my model"),
    ("bad_factories:wrong_image_shape", "to (2, 1, 2, 5); the data needs (2, 1, 28, 28)"),
    ("bad_factories:many_logits", "to (2, 3); it must give one logit per image"),
])
def test_check_and_run_refuse_a_bad_factory_in_one_line(tiny_study, capsys, factory, message):
    study_file = tiny_study()
    study_file.write_text(study_file.read_text() + f'\n[model]\nfactory = "{factory}"\n')
    for command in ("check", "run"):
        assert main([command, str(study_file)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not study_file.with_suffix(".db").exists()  # refused before the storage was touched


@pytest.mark.parametrize(("model", "train", "message"), [
    ({"factory": "examples.my_gan"}, {}, "is not 'package.module:function'"),
    ({"factory": "examples/my_gan.py:build"}, {}, "is not 'package.module:function'"),
    ({"factory_version": "1"}, {}, "set [model] factory too"),
    ({"factory": "examples.my_gan:build"}, {"fuse": 4}, "fused trials stack the built-in DCGAN only"),
])
def test_the_study_file_refuses_what_cannot_work(model, train, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        StudyConfig().with_overrides(model=model, train=train)


@pytest.mark.parametrize(("stored", "factory"), [
    ({"factory": "examples.my_gan:build", "version": "sha256:" + "0" * 64}, "examples.my_gan:build"),
    (None, "examples.my_gan:build"),  # a study made before [model] trained the built-in DCGAN
    ({"factory": "examples.my_gan:build", "version": "2.1"}, ""),
])
def test_a_study_refuses_a_worker_whose_networks_differ(tiny_study, tmp_path, capsys, stored, factory):
    study_file = tiny_study()
    study_file.write_text(study_file.read_text() + f'\n[model]\nfactory = "{factory}"\n')
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    study.set_user_attr("search", dataclasses.asdict(StudyConfig().search))
    if stored is not None:
        study.set_user_attr(MODEL, stored)
    assert main(["run", str(study_file)]) == 2
    err = capsys.readouterr().err
    assert "FIDs of different networks do not compare, use another study name" in err
    assert len(study.trials) == 0


@pytest.mark.parametrize("factory", ["", "examples.my_gan:build"])
def test_train_refuses_an_export_found_with_other_networks(finished_study, tmp_path, capsys, factory):
    path = tmp_path / "best.yaml"
    assert main(["export", "--storage", finished_study, "--study", "tiny", "-o", str(path)]) == 0
    exported = yaml.safe_load(path.read_text())
    assert exported[MODEL] == builtin_model()
    # The export says my_gan at another source; here the config builds the DCGAN or today's my_gan.
    exported[MODEL] = {"factory": "examples.my_gan:build", "version": "sha256:" + "0" * 64}
    exported["config"]["model"] = {"factory": factory, "factory_version": ""}
    path.write_text(yaml.safe_dump(exported))
    capsys.readouterr()
    assert main(["train", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the networks differ" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
