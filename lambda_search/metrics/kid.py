"""KID with torchmetrics, on the features the FID already computes (see `fid.FidScorer`).

KID (kernel inception distance) is the squared maximum mean discrepancy between
real and generated features under the polynomial kernel (x·y / d + 1)³. Its
estimator is unbiased, so a few hundred samples give the same expected value as
many thousands, where FID is biased upwards by a term that shrinks with the
sample count. Like FID, its scale depends on the feature network: LeNet KIDs
compare within one protocol only.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torchmetrics.image.kid import KernelInceptionDistance

# torch-fidelity's subset size, where there are that many real and generated images.
KID_SUBSET_SIZE = 1000
# Not torch-fidelity's 100: on the quickstart study (1,000 LeNet features, 2 CPU cores) 100
# subsets cost 0.7 s a trial, 10 cost 0.07 s, and which 1,000 images the generator draws moves
# the mean about 4× more than which subsets are drawn. The per-subset spread (`kid_std`) is the same.
KID_SUBSETS = 10
# Real features kept in memory and in the cache (a seeded subset of the FID's real images):
# 10 subsets of 1,000 need no more, and 60,000 Inception features would take 0.5 GB.
KID_MAX_REAL = 10_000
# Seeds the subset draws: a generator's KID is reproducible, and the global RNG is left untouched.
KID_SEED = 0


@dataclass(frozen=True)
class KidProtocol:
    """What a KID number means, beside the FID protocol (same feature network and dataset)."""

    subsets: int
    subset_size: int
    n_real: int
    n_fake: int
    kernel: str = "polynomial (x·y / d + 1)^3"
    seed: int = KID_SEED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kid_protocol(n_real: int, n_fake: int) -> KidProtocol:
    """Subsets of at most `KID_SUBSET_SIZE`, never more than either side has (small `n_samples`)."""
    return KidProtocol(KID_SUBSETS, min(KID_SUBSET_SIZE, n_real, n_fake), n_real, n_fake)


class KidMetric:
    """torchmetrics' `KernelInceptionDistance` fed with features; the real ones are kept across resets."""

    def __init__(self, protocol: KidProtocol, real_features: torch.Tensor) -> None:
        self.protocol = protocol
        with warnings.catch_warnings():
            # It warns that it keeps every feature in memory: we keep at most KID_MAX_REAL real ones.
            warnings.filterwarnings("ignore", "Metric `Kernel Inception Distance`", UserWarning)
            self.metric = KernelInceptionDistance(feature=nn.Identity(), subsets=protocol.subsets,
                                                  subset_size=protocol.subset_size, reset_real_features=False)
        self.metric.update(real_features, real=True)

    def compute(self, fake_features: list[torch.Tensor]) -> tuple[float, float]:
        """KID mean and standard deviation over the subsets, for batches of (B, d) generated features."""
        try:
            for features in fake_features:
                self.metric.update(features, real=False)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.protocol.seed)
                mean, std = self.metric.compute()
            return float(mean), float(std)
        finally:
            self.metric.reset()
