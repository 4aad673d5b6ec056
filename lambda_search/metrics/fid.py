"""FID with torchmetrics: feature networks, real statistics computed once, scoring (and KID).

Two feature networks:
- "inception": the standard FID Inception-v3 (torch-fidelity's port, through
  torchmetrics) from a local weights file. uint8 images, grayscale repeated to
  3 channels, the legacy (non-antialiased) resize, float64 statistics: these
  numbers compare with published FIDs.
- "lenet": a small classifier trained on the dataset's labelled images (`lenet`); the
  128 pre-activations of its penultimate layer are the features. Offline, fast, and
  comparable across λ within one protocol, but never with published Inception FIDs.

Each network is named in the protocol by the sha256 of its weights file.

The same features also give the KID (`kid.py`) at a trial's final evaluation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from lambda_search._files import cache_dir, write_atomically
from lambda_search.config import FidSection
from lambda_search.data import ImageData, to_uint8
from lambda_search.errors import WeightsError
from lambda_search.metrics.kid import KID_MAX_REAL, KidMetric, kid_protocol
from lambda_search.metrics.lenet import FeatureNet, local_lenet

INCEPTION_FEATURES = 2048
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_FILE
)
# Seeds the choice of `[fid] n_real` real images, a part of the protocol: fixed for every study.
_REAL_SUBSET_SEED = 0


@dataclass(frozen=True)
class FidProtocol:
    """What an FID number means; stored on every trial so protocols never mix.

    `feature_net` names the network by the sha256 of its weights file; `feature_rank`
    counts its features with non-zero variance on the dataset (None for Inception).
    """

    features: str
    feature_net: str
    feature_net_accuracy: float | None
    feature_rank: int | None
    dataset: str
    dataset_fingerprint: str
    n_real: int
    n_fake: int
    image_dtype: str = "uint8"
    statistics_dtype: str = "float64"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class Scores(NamedTuple):
    """One evaluation of a generator: its FID, and its KID when asked for."""

    fid: float
    kid: float | None = None
    kid_std: float | None = None


def inception_sha256(path: Path) -> str:
    """sha256 of the Inception weights file (95 MB: a fraction of a second)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inception_weights_path(section: FidSection) -> Path:
    """The local Inception weights file: `inception_weights`, else torch hub's cache.

    Raises:
        WeightsError: neither exists; the message names the file to provide.
    """
    if section.inception_weights:
        path = Path(section.inception_weights).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"[fid] inception_weights = {section.inception_weights!r} does not exist; "
                f"download {INCEPTION_WEIGHTS_URL} there"
            )
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    if cached.is_file():
        return cached
    raise WeightsError(
        f"no FID Inception weights: download {INCEPTION_WEIGHTS_URL} and set "
        f"[fid] inception_weights to its path (or place it at {cached})"
    )


def _real_images(data: ImageData, n_real: int) -> torch.Tensor:
    if not n_real or n_real >= len(data.images):
        return data.images
    order = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(_REAL_SUBSET_SEED))
    return data.images[order[:n_real].to(data.images.device)]


class FidScorer:
    """Scores generators against one dataset's real statistics.

    The real statistics are computed once (and cached on disk by protocol), then
    every `score` only adds the fake images: torchmetrics' ``reset_real_features=False``.
    The KID's real features are cached the same way; its fake features are the ones
    the FID computed, taken as they pass (one pass of the feature network feeds both).
    """

    def __init__(self, section: FidSection, data: ImageData, device: torch.device,
                 directory: Path | None = None, lenet: FeatureNet | None = None) -> None:
        """`lenet`: the study's LeNet (see `sweep`); by default the shipped one, or one cached here."""
        self.device = device
        self.n_samples = section.n_samples
        self.batch_size = 2000 if device.type == "cuda" else 500
        self.channels = data.shape[0]
        self.directory = directory or cache_dir()
        real = _real_images(data, section.n_real)
        accuracy: float | None = None
        rank: int | None = None
        if section.features == "inception":
            weights = inception_weights_path(section)
            self.metric = FrechetInceptionDistance(
                feature=INCEPTION_FEATURES,
                reset_real_features=False,
                feature_extractor_weights_path=str(weights),
                antialias=False,
            )
            self.repeat_gray = True
            feature_net = f"inception-v3-compat:sha256:{inception_sha256(weights)}"
        else:
            net = lenet or local_lenet(data, self.directory)
            self.metric = FrechetInceptionDistance(feature=net.network, reset_real_features=False)
            self.repeat_gray = False
            feature_net, accuracy, rank = net.name, net.accuracy, net.rank
        # Features stay float32; torchmetrics accumulates the statistics in float64.
        self.metric = self.metric.to(device)
        self.protocol = FidProtocol(
            features=section.features,
            feature_net=feature_net,
            feature_net_accuracy=accuracy,
            feature_rank=rank,
            dataset=data.name,
            dataset_fingerprint=data.fingerprint,
            n_real=len(real),
            n_fake=section.n_samples,
        )
        self._load_or_compute_real(real)
        kid_real = self._load_or_compute_real_features(_real_images(data, min(len(real), KID_MAX_REAL)))
        self.kid = KidMetric(kid_protocol(len(kid_real), section.n_samples), kid_real)

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        pixels = to_uint8(images)
        if self.repeat_gray and pixels.shape[1] == 1:
            pixels = pixels.repeat(1, 3, 1, 1)
        return pixels

    def _load_or_compute_real(self, real: torch.Tensor) -> None:
        path = self.directory / f"real-stats-{self.protocol.key}.pt"
        names = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
        if path.exists():
            saved = torch.load(path, map_location=self.device, weights_only=True)
            for name in names:
                setattr(self.metric, name, saved[name].to(self.device))
            return
        with torch.no_grad():
            for batch in real.split(self.batch_size):
                self.metric.update(self._pixels(batch.to(self.device)), real=True)
        state = {name: getattr(self.metric, name).cpu() for name in names}
        write_atomically(path, lambda stream: torch.save(state, stream))

    def _load_or_compute_real_features(self, real: torch.Tensor) -> torch.Tensor:
        path = self.directory / f"kid-real-features-{self.protocol.key}-{len(real)}.pt"
        if path.exists():
            return torch.load(path, map_location=self.device, weights_only=True)
        with torch.no_grad():
            # (n_real, C, H, W) → (n_real, d), through the network the FID metric holds
            features = torch.cat([self.metric.inception(self._pixels(batch.to(self.device)))
                                  for batch in real.split(self.batch_size)])
        write_atomically(path, lambda stream: torch.save(features.cpu(), stream))
        return features

    def score(self, generator: nn.Module, noise: torch.Tensor) -> float:
        """FID of `generator` on the fixed `noise` batch (n_samples, latent_dim)."""
        return self.scores(generator, noise).fid

    @torch.no_grad()
    def scores(self, generator: nn.Module, noise: torch.Tensor, kid: bool = False) -> Scores:
        """FID of `generator` on the fixed `noise` batch (n_samples, latent_dim), and its KID if `kid`."""
        was_training = generator.training
        generator.eval()
        try:
            return self._measure((generator(batch.to(self.device)) for batch in noise.split(self.batch_size)), kid)
        finally:
            generator.train(was_training)

    def score_images(self, images: torch.Tensor) -> float:
        """FID of a set of [-1, 1] images (used by tests and by `confirm`-style checks)."""
        return self.image_scores(images).fid

    @torch.no_grad()
    def image_scores(self, images: torch.Tensor, kid: bool = False) -> Scores:
        """FID of a set of [-1, 1] images, and their KID if `kid`."""
        return self._measure((batch.to(self.device) for batch in images.split(self.batch_size)), kid)

    def _measure(self, batches: Iterator[torch.Tensor], kid: bool) -> Scores:
        captured: list[torch.Tensor] = []
        # The FID metric runs the feature network on each batch; the hook keeps those (B, d) features for KID.
        hook = self.metric.inception.register_forward_hook(
            lambda _module, _inputs, features: captured.append(features)) if kid else None
        try:
            for images in batches:
                self.metric.update(self._pixels(images), real=False)
            fid = float(self.metric.compute())
        finally:
            self.metric.reset()
            if hook is not None:
                hook.remove()
        if not kid:
            return Scores(fid)
        return Scores(fid, *self.kid.compute(captured))
