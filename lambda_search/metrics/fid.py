"""FID with torchmetrics: feature networks, real statistics computed once, scoring (and KID).

Two feature networks:
- "inception": the standard FID Inception-v3 (torch-fidelity's port, through
  torchmetrics) from a local weights file. uint8 images, grayscale repeated to
  3 channels, the legacy (non-antialiased) resize, float64 statistics: these
  numbers compare with published FIDs.
- "lenet": a small classifier trained on the dataset's labelled images; the 128
  pre-activations of its penultimate layer are the features. Offline, fast, and
  comparable across λ within one protocol, but never with published Inception FIDs.

The ruler is data. The same code trained on another CPU type or thread count gives
other weights, so a LeNet is named by the sha256 of its weights file, never by how it
was made: the mnist-5k LeNet ships inside the package; for any other dataset the
first worker of a study trains one and stores it with the study (`sweep.storage`), and
every worker loads that file. Loading checks the hash; a file that does not match
is an error. The Inception path names its weights file by its sha256 as well.

The same features also give the KID (`kid.py`) at a trial's final evaluation.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.image.fid import FrechetInceptionDistance

from lambda_search._files import cache_dir, write_atomically
from lambda_search.config import SHIPPED_LENET_DATASET, FidSection
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
LENET_VERSION = "lenet-v3"
_LENET_EPOCHS = 12
_LENET_SEED = 0
# The mnist-5k LeNet ships with the package (written once by `python -m lambda_search.metrics.fid`);
# its sha256 is its name, and loading checks it.
SHIPPED_LENET = "metrics/lenet-mnist-5k.pt"
SHIPPED_LENET_SHA256 = "a1e0d4946ef718ec6b2d8e68a29716047def6aa97d42dd24dcad6d3574b1e887"
SHIPPED_DATASET = SHIPPED_LENET_DATASET


class LeNet(nn.Module):
    """A LeNet-style classifier; `forward` returns the penultimate layer's pre-activations.

    Reads what torchmetrics hands it: uint8 (B, C, H, W) images. Features before the
    nonlinearity are all alive (lenet-v2 took them after a ReLU: 62 of 128 were zero on
    every real digit), and GELU, unlike ReLU, lets every unit learn.
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
        )
        self.head = nn.Sequential(nn.GELU(), nn.Linear(self.num_features, n_classes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        # images: [-1, 1] float (B, C, H, W) → (B, 128)
        return self.body(images)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.features(pixels.to(torch.float32).div(127.5).sub(1.0))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


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


@dataclass(frozen=True)
class LenetFile:
    """A LeNet weights file's bytes, as shipped, cached or stored with a study."""

    payload: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    @property
    def name(self) -> str:
        """The protocol's `feature_net`: version and the sha256 of the weights file."""
        return f"{LENET_VERSION}:sha256:{self.sha256}"


@dataclass(frozen=True)
class FeatureNet:
    """A loaded LeNet and what the protocol says of it."""

    network: LeNet
    name: str
    accuracy: float
    rank: int


def train_lenet(data: ImageData) -> tuple[LeNet, float]:
    """Train the LeNet feature network on the CPU, deterministically (for one thread count and CPU type).

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


@torch.no_grad()
def feature_rank(network: LeNet, data: ImageData) -> int:
    """Features with non-zero variance over all the dataset's images."""
    features = torch.cat([network.features(batch) for batch in data.images.cpu().split(1000)])
    return int((features.var(0) > 0).sum())


def train_lenet_file(data: ImageData) -> LenetFile:
    """Train the LeNet on `data` and serialise it with its accuracy, rank and dataset."""
    log.info("training the LeNet feature network on %s (a few minutes on a large dataset)", data.name)
    network, accuracy = train_lenet(data)
    log.info("LeNet held-out accuracy %.4f", accuracy)
    stream = io.BytesIO()
    torch.save({"version": LENET_VERSION, "state_dict": network.state_dict(), "accuracy": accuracy,
                "rank": feature_rank(network, data), "dataset_fingerprint": data.fingerprint}, stream)
    return LenetFile(stream.getvalue())


def load_lenet(file: LenetFile, sha256: str, data: ImageData) -> FeatureNet:
    """The network in `file`, after checking that its bytes hash to `sha256` and that it is `data`'s.

    Raises:
        WeightsError: another file (hash), another version or another dataset's network.
    """
    if file.sha256 != sha256:
        raise WeightsError(f"LeNet weights file has sha256 {file.sha256}, expected {sha256}: "
                           "it is not the network this protocol names")
    saved = torch.load(io.BytesIO(file.payload), map_location="cpu", weights_only=True)
    if saved.get("version") != LENET_VERSION or saved.get("dataset_fingerprint") != data.fingerprint:
        raise WeightsError(f"LeNet weights {sha256[:16]} are {saved.get('version')} for dataset "
                           f"{str(saved.get('dataset_fingerprint'))[:16]}, not {LENET_VERSION} for "
                           f"{data.name} ({data.fingerprint[:16]})")
    network = LeNet(data.shape, data.n_classes)
    network.load_state_dict(saved["state_dict"])
    network.eval()
    return FeatureNet(network, file.name, float(saved["accuracy"]), int(saved["rank"]))


def shipped_lenet() -> LenetFile:
    """The mnist-5k LeNet file inside the package."""
    return LenetFile((resources.files("lambda_search") / SHIPPED_LENET).read_bytes())


def ships_lenet(data: ImageData) -> bool:
    """Whether the package carries this dataset's LeNet (else a study stores its own)."""
    return data.name == SHIPPED_DATASET


def local_lenet(data: ImageData, directory: Path | None = None) -> FeatureNet:
    """The shipped LeNet, or (other datasets, outside a study) one trained once and cached here."""
    if ships_lenet(data):
        return load_lenet(shipped_lenet(), SHIPPED_LENET_SHA256, data)
    return load_lenet(*cached_lenet(data, directory), data)


def cached_lenet(data: ImageData, directory: Path | None = None) -> tuple[LenetFile, str]:
    """This machine's LeNet for `data`, trained on first use, and its sha256.

    A study never takes it on trust: the first worker stores it with the study, and
    every worker then loads the study's copy (`sweep` side).
    """
    path = (directory or cache_dir()) / f"{LENET_VERSION}-{data.fingerprint[:16]}.pt"
    if path.exists():
        file = LenetFile(path.read_bytes())
        return file, file.sha256
    file = train_lenet_file(data)
    write_atomically(path, lambda stream: stream.write(file.payload))
    return file, file.sha256


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


def ship_lenet() -> None:
    """Train the mnist-5k LeNet and write it into the package; prints its sha256 for `SHIPPED_LENET_SHA256`."""
    from lambda_search.config import DataSection
    from lambda_search.data import load_images

    torch.set_num_threads(1)
    file = train_lenet_file(load_images(DataSection(dataset=SHIPPED_DATASET)))
    path = Path(str(resources.files("lambda_search") / SHIPPED_LENET))
    write_atomically(path, lambda stream: stream.write(file.payload))
    print(f"{path}: sha256 {file.sha256}")


if __name__ == "__main__":
    ship_lenet()
