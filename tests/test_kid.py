"""KID on the FID's features: ≈ 0 for real digits, large for noisy ones, unbiased where FID is not."""

from __future__ import annotations

import pytest
import torch

from lambda_search._files import cache_dir
from lambda_search.config import DataSection, FidSection
from lambda_search.data import load_images
from lambda_search.metrics.fid import FidScorer
from lambda_search.metrics.kid import KID_SUBSETS

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mnist():
    return load_images(DataSection())


@pytest.fixture(scope="module")
def order():
    """The seeded order FidScorer draws its real images from: the first 2,000 are its real set."""
    return torch.randperm(5000, generator=torch.Generator().manual_seed(0))


def _scorer(mnist, n_samples: int) -> FidScorer:
    return FidScorer(FidSection(n_samples=n_samples, n_real=2000), mnist, CPU)


def _noisy(images: torch.Tensor, amount: float) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    return (images + amount * noise).clamp(-1, 1)


def test_kid_of_other_real_digits_is_near_zero_and_far_below_noisy_digits(mnist, order):
    scorer = _scorer(mnist, 1000)
    other_real = mnist.images[order[2000:3000]]  # not among the 2,000 real images scored against
    real = scorer.image_scores(other_real, kid=True)
    noisy = scorer.image_scores(_noisy(other_real, 0.5), kid=True)
    assert real.kid is not None and noisy.kid is not None
    assert abs(real.kid) < 0.05 * noisy.kid
    assert noisy.kid > 10 * noisy.kid_std  # far beyond the spread between subsets


def test_at_a_small_sample_count_fid_is_biased_and_kid_is_not(mnist, order):
    few, many = (_scorer(mnist, n).image_scores(mnist.images[order[2000:2000 + n]], kid=True) for n in (100, 1000))
    # FID of 100 real digits against real digits is 9× that of 1,000: its bias shrinks with n.
    assert few.fid > 5 * many.fid
    # KID of 100 stays within its spread of 0 and of the KID of 1,000.
    assert few.kid_std is not None and few.kid is not None and many.kid is not None
    assert abs(few.kid) < few.kid_std and abs(few.kid - many.kid) < few.kid_std


def test_subsets_never_exceed_the_samples_there_are(mnist, order):
    scorer = FidScorer(FidSection(n_samples=50, n_real=40), mnist, CPU)
    assert scorer.kid.protocol.to_dict() == {"subsets": KID_SUBSETS, "subset_size": 40, "n_real": 40,
                                             "n_fake": 50, "kernel": "polynomial (x·y / d + 1)^3", "seed": 0}
    assert scorer.image_scores(mnist.images[order[2000:2050]], kid=True).kid is not None


def test_a_generator_kid_is_reproducible_uses_the_fid_features_and_leaves_the_global_rng_alone(mnist):
    scorer = _scorer(mnist, 1000)
    generator = torch.nn.Sequential(torch.nn.Linear(8, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28)))
    noise = torch.randn(1000, 8)
    rng = torch.get_rng_state()
    first = scorer.scores(generator, noise, kid=True)
    assert torch.equal(rng, torch.get_rng_state())
    assert first == scorer.scores(generator, noise, kid=True)
    with torch.no_grad():
        assert scorer.image_scores(generator(noise), kid=True) == pytest.approx(first)
    assert scorer.scores(generator, noise) == (first.fid, None, None)  # KID only when asked for
    assert first.kid is not None and first.kid > 100


def test_real_features_are_computed_once_per_protocol_and_cached(mnist, order):
    first = _scorer(mnist, 1000)
    cached = torch.load(cache_dir() / f"kid-real-features-{first.protocol.key}-2000.pt", weights_only=True)
    assert cached.shape == (2000, 128)  # the LeNet features of the 2,000 real images
    images = mnist.images[order[2000:3000]]
    assert first.image_scores(images, kid=True) == _scorer(mnist, 1000).image_scores(images, kid=True)
