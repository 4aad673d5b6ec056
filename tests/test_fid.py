"""FID wiring: identical sets score ≈ 0, shifted sets score higher, both feature networks load by their hash."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as fidelity_inception

from lambda_search.config import DataSection, FidSection
from lambda_search.data import load_images
from lambda_search.errors import WeightsError
from lambda_search.metrics.fid import FidScorer, inception_weights_path
from lambda_search.metrics.lenet import (
    LENET_MIN_ACCURACY,
    SHIPPED_LENET_SHA256,
    LenetFile,
    load_lenet,
    shipped_lenet,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mnist():
    return load_images(DataSection())


@pytest.fixture(scope="module")
def lenet_scorer(mnist):
    return FidScorer(FidSection(n_samples=1000, n_real=1000), mnist, CPU)


def test_the_shipped_lenet_is_a_good_classifier_named_by_its_hash(lenet_scorer):
    assert lenet_scorer.protocol.feature_net_accuracy >= LENET_MIN_ACCURACY
    assert lenet_scorer.protocol.feature_net == f"lenet-v3:sha256:{SHIPPED_LENET_SHA256}"
    assert hashlib.sha256(shipped_lenet().payload).hexdigest() == SHIPPED_LENET_SHA256


def test_every_lenet_feature_is_alive_on_the_real_digits(lenet_scorer, mnist):
    # lenet-v2 took its features after a ReLU: 62 of 128 were zero on all 5,000 digits.
    with torch.no_grad():
        features = lenet_scorer.metric.inception.features(mnist.images)  # (5000, 128)
    assert int((features.var(0) > 0).sum()) == 128 == lenet_scorer.protocol.feature_rank


def test_a_lenet_file_that_does_not_match_its_hash_is_refused(mnist):
    payload = bytearray(shipped_lenet().payload)
    payload[len(payload) // 2] ^= 1
    with pytest.raises(WeightsError, match=f"expected {SHIPPED_LENET_SHA256}"):
        load_lenet(LenetFile(bytes(payload)), SHIPPED_LENET_SHA256, mnist)


def test_identical_images_score_zero_and_shifted_images_score_higher(lenet_scorer, mnist):
    real = mnist.images[torch.randperm(5000, generator=torch.Generator().manual_seed(0))[:1000]]
    assert lenet_scorer.score_images(real) == pytest.approx(0.0, abs=1e-3)
    other_digits = mnist.images[-1000:]
    slightly_noisy = (real + 0.1 * torch.randn_like(real)).clamp(-1, 1)
    very_noisy = (real + 0.5 * torch.randn_like(real)).clamp(-1, 1)
    assert lenet_scorer.score_images(other_digits) > 1.0
    assert lenet_scorer.score_images(very_noisy) > lenet_scorer.score_images(slightly_noisy) > 0.1


def test_real_statistics_are_cached_per_protocol(lenet_scorer, mnist):
    again = FidScorer(FidSection(n_samples=1000, n_real=1000), mnist, CPU)
    assert again.protocol == lenet_scorer.protocol
    images = mnist.images[:500]
    assert again.score_images(images) == pytest.approx(lenet_scorer.score_images(images), rel=1e-9)


def test_scoring_a_generator_quantizes_to_uint8_like_saved_images(lenet_scorer):
    generator = torch.nn.Sequential(torch.nn.Linear(8, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28)))
    noise = torch.randn(1000, 8)
    first = lenet_scorer.score(generator, noise)
    assert first == lenet_scorer.score(generator, noise)
    assert first > 1.0


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A randomly initialised FID Inception state dict saved to disk (no download)."""
    original = fidelity_inception.FeatureExtractorInceptionV3.load_state_dict
    fidelity_inception.FeatureExtractorInceptionV3.load_state_dict = lambda self, state_dict: None
    original_url = fidelity_inception.load_state_dict_from_url
    fidelity_inception.load_state_dict_from_url = lambda *args, **kwargs: {}
    try:
        network = fidelity_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        fidelity_inception.FeatureExtractorInceptionV3.load_state_dict = original
        fidelity_inception.load_state_dict_from_url = original_url
    path = tmp_path_factory.mktemp("weights") / "inception.pth"
    torch.save(network.state_dict(), path)
    return path


def test_inception_features_load_weights_from_a_local_file(mnist, random_inception_weights, tmp_path):
    section = FidSection(features="inception", inception_weights=str(random_inception_weights),
                         n_samples=6, n_real=6)
    scorer = FidScorer(section, mnist, CPU, directory=tmp_path)
    assert scorer.protocol.features == "inception"
    weights_hash = hashlib.sha256(random_inception_weights.read_bytes()).hexdigest()
    assert scorer.protocol.feature_net == f"inception-v3-compat:sha256:{weights_hash}"
    assert scorer.repeat_gray  # grayscale MNIST is fed as 3 channels
    assert scorer.metric.inception.use_antialias is False  # the legacy resize published FIDs use
    real = mnist.images[torch.randperm(5000, generator=torch.Generator().manual_seed(0))[:6]]
    assert scorer.score_images(real) == pytest.approx(0.0, abs=1e-2)


def test_missing_inception_weights_name_the_file_to_provide(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError, match=r"weights-inception-2015-12-05-6726825d\.pth"):
        inception_weights_path(FidSection(features="inception"))
    with pytest.raises(WeightsError, match="does not exist"):
        inception_weights_path(FidSection(features="inception", inception_weights=str(tmp_path / "x.pth")))
