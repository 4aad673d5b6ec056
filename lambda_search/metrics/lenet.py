"""The LeNet feature network of the "lenet" FID: its architecture, training, file and hash.

The ruler is data. The same code trained on another CPU type or thread count gives
other weights, so a LeNet is named by the sha256 of its weights file, never by how it
was made: the mnist-5k LeNet ships inside the package; for any other dataset the
first worker of a study trains one and stores it with the study (`sweep.storage`), and
every worker loads that file. Loading checks the hash; a file that does not match
is an error.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from lambda_search._files import cache_dir, write_atomically
from lambda_search.data import ImageData
from lambda_search.errors import WeightsError
from lambda_search.sections import SHIPPED_LENET_DATASET

log = logging.getLogger(__name__)

LENET_MIN_ACCURACY = 0.97
LENET_VERSION = "lenet-v3"
_LENET_EPOCHS = 12
_LENET_SEED = 0
# The mnist-5k LeNet ships with the package (written once by `python -m lambda_search.metrics.lenet`);
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
