"""FID with torchmetrics: feature networks, real statistics computed once, scoring (and KID).

Two feature networks:
- "inception": the standard FID Inception-v3 (torch-fidelity's port, through
  torchmetrics) from a local weights file. uint8 images, grayscale repeated to
  3 channels, the legacy (non-antialiased) resize, float64 statistics: these
  numbers compare with published FIDs.
- "lenet": a small classifier trained once on the dataset's labelled images, on
  the CPU with a fixed seed so every worker gets the same weights, cached on disk
  by a fingerprint of the data and the architecture. Its penultimate layer gives
  the features. Offline, fast, and comparable across λ within one protocol, but
  never with published Inception FIDs.

The same features also give the KID (`kid.py`) at a trial's final evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.image.fid import FrechetInceptionDistance

from lambda_search._files import cache_dir, write_atomically
from lambda_search.config import FidSection
from lambda_search.data import ImageData, to_uint8
from lambda_search.errors import WeightsError
from lambda_search.metrics.kid import KID_MAX_REAL, KidMetric, kid_protocol

log = logging.getLogger(__name__)

INCEPTION_FEATURES = 2048
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_FILE
)
LENET_MIN_ACCURACY = 0.97
_LENET_VERSION = "lenet-v2"
_LENET_EPOCHS = 12
_LENET_SEED = 0


class LeNet(nn.Module):
    """A LeNet-style classifier; `forward` returns the penultimate features.

    Reads what torchmetrics hands it: uint8 (B, C, H, W) images.
    """

    num_features = 128

    def __init__(self, shape: tuple[int, int, int], n_classes: int) -> None:
        super().__init__()
        channels, height, width = shape
        self.body = nn.Sequential(
            # input is C x H x W; strided convolutions instead of pooling: half the cost
            nn.Conv2d(channels, 32, 4, 2, 1),
            nn.ReLU(),
            # state size. 32 x H/2 x W/2
            nn.Conv2d(32, 64, 4, 2, 1),
            nn.ReLU(),
            # state size. 64 x H/4 x W/4
            nn.Flatten(),
            nn.Linear(64 * (height // 4) * (width // 4), self.num_features),
            nn.ReLU(),
        )
        self.head = nn.Linear(self.num_features, n_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        # images: [-1, 1] float (B, C, H, W) → (B, 128)
        return self.body(images)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.features(pixels.to(torch.float32).div(127.5).sub(1.0))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@dataclass(frozen=True)
class FidProtocol:
    """What an FID number means; stored on every trial so protocols never mix."""

    features: str
    feature_net: str
    feature_net_accuracy: float | None
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


def _fingerprint_lenet(data: ImageData) -> str:
    architecture = repr(LeNet(data.shape, data.n_classes))
    digest = hashlib.sha256(f"{_LENET_VERSION}|{architecture}|{data.fingerprint}".encode())
    return digest.hexdigest()[:16]


def train_lenet(data: ImageData) -> tuple[LeNet, float]:
    """Train the LeNet feature network on the CPU, deterministically.

    Returns:
        The network in eval mode and its accuracy on a held-out 10% of the images.
    """
    generator = torch.Generator().manual_seed(_LENET_SEED)
    torch.manual_seed(_LENET_SEED)
    order = torch.randperm(len(data.labels), generator=generator)
    held_out = order[: len(order) // 10]
    training = order[len(order) // 10 :]
    images, labels = data.images.cpu(), data.labels.cpu()
    network = LeNet(data.shape, data.n_classes)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, _LENET_EPOCHS)
    for _ in range(_LENET_EPOCHS):
        network.train()
        shuffled = training[torch.randperm(len(training), generator=generator)]
        for batch in shuffled.split(64):
            loss = F.cross_entropy(network.classify(_jitter(images[batch], generator)), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
    network.eval()
    with torch.no_grad():
        predictions = network.classify(images[held_out]).argmax(1)
    accuracy = (predictions == labels[held_out]).float().mean().item()
    return network, accuracy


def _jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each batch by up to 2 pixels: 4,500 digits are few, and this lifts held-out accuracy."""
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))


def load_or_train_lenet(data: ImageData, directory: Path | None = None) -> tuple[LeNet, str, float]:
    """The cached LeNet for this dataset, trained on first use.

    Returns:
        (network, its fingerprint, its held-out accuracy).
    """
    fingerprint = _fingerprint_lenet(data)
    path = (directory or cache_dir()) / f"lenet-{fingerprint}.pt"
    network = LeNet(data.shape, data.n_classes)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(saved["state_dict"])
        network.eval()
        return network, fingerprint, float(saved["accuracy"])
    log.info("training the LeNet feature network on %s (once; cached in %s)", data.name, path.parent)
    network, accuracy = train_lenet(data)
    payload = {"state_dict": network.state_dict(), "accuracy": torch.tensor(accuracy)}
    write_atomically(path, lambda stream: torch.save(payload, stream))
    log.info("LeNet held-out accuracy %.4f", accuracy)
    return network, fingerprint, accuracy


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
    order = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(_LENET_SEED))
    return data.images[order[:n_real].to(data.images.device)]


class FidScorer:
    """Scores generators against one dataset's real statistics.

    The real statistics are computed once (and cached on disk by protocol), then
    every `score` only adds the fake images: torchmetrics' ``reset_real_features=False``.
    The KID's real features are cached the same way; its fake features are the ones
    the FID computed, taken as they pass (one pass of the feature network feeds both).
    """

    def __init__(self, section: FidSection, data: ImageData, device: torch.device,
                 directory: Path | None = None) -> None:
        self.device = device
        self.n_samples = section.n_samples
        self.batch_size = 2000 if device.type == "cuda" else 500
        self.channels = data.shape[0]
        self.directory = directory or cache_dir()
        real = _real_images(data, section.n_real)
        if section.features == "inception":
            self.metric = FrechetInceptionDistance(
                feature=INCEPTION_FEATURES,
                reset_real_features=False,
                feature_extractor_weights_path=str(inception_weights_path(section)),
                antialias=False,
            )
            self.repeat_gray = True
            feature_net, accuracy = f"inception-v3-compat:{INCEPTION_WEIGHTS_FILE}", None
        else:
            lenet, fingerprint, accuracy = load_or_train_lenet(data, self.directory)
            self.metric = FrechetInceptionDistance(feature=lenet, reset_real_features=False)
            self.repeat_gray = False
            feature_net = f"{_LENET_VERSION}:{fingerprint}"
        # Features stay float32; torchmetrics accumulates the statistics in float64.
        self.metric = self.metric.to(device)
        self.protocol = FidProtocol(
            features=section.features,
            feature_net=feature_net,
            feature_net_accuracy=accuracy,
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
