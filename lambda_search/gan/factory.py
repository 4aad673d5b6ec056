"""The networks a study trains: the built-in DCGAN, or the user's own (`[model] factory`).

A factory is a function named as ``"package.module:build"``::

    def build(image_shape: tuple[int, int, int], latent_dim: int, width: int) -> tuple[nn.Module, nn.Module]:
        ...
        return generator, discriminator

- `image_shape` is the dataset's (channels, height, width), `latent_dim` and `width` are
  ``[train] latent_dim`` and ``[train] width`` (the factory may ignore `width`).
- The generator maps noise (N, latent_dim) to images (N, C, H, W) in [-1, 1] (end on a tanh).
- The discriminator maps images (N, C, H, W) to logits (N,) or (N, 1), no sigmoid: the loss
  is the non-saturating GAN loss on logits (`train`).
- The pair is freshly initialised on each call; the global RNG is seeded before it (`new_state`),
  so initial weights follow the run's seed.

The penalty covers the tensors ``[train] penalize`` names (`penalty.decayed_parameters`),
whatever the networks. The model's identity, stored with the study, its trials and its
export, is the factory's path and its ``[model] factory_version``, or else the sha256 of its
module's source (that module only, not those it imports): a study refuses a worker whose model
differs, and `train` an export's.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lambda_search.config import ModelSection
from lambda_search.errors import ConfigError
from lambda_search.gan.models import build_gan
from lambda_search.names import builtin_model

# (image_shape, latent_dim, width) → (generator, discriminator)
Builder = Callable[[tuple[int, int, int], int, int], tuple[nn.Module, nn.Module]]
# Images the shape check builds and scores: the smallest batch BatchNorm trains on.
_CHECK_BATCH = 2


def dcgan(image_shape: tuple[int, int, int], latent_dim: int, width: int) -> tuple[nn.Module, nn.Module]:
    """The built-in networks (`models.build_gan`) behind the factory signature."""
    return build_gan(latent_dim, image_shape, width)


@dataclass(frozen=True)
class Model:
    """How to build a study's networks, and what identifies them in its storage and exports."""

    build: Builder
    # {"factory": "package.module:build" or "" (built-in), "version": factory_version or "sha256:<source>"}
    identity: dict[str, str]


# The built-in DCGAN, `[model] factory = ""`.
BUILTIN = Model(dcgan, builtin_model())


def load_model(section: ModelSection) -> Model:
    """The built-in DCGAN, or the factory `section` names, imported (from the working directory too).

    Raises:
        ConfigError: the module cannot be imported, or has no such callable.
    """
    if not section.factory:
        return BUILTIN
    module_name, _, function = section.factory.partition(":")
    if os.getcwd() not in sys.path:
        # As `python -m` does: a factory in the project the user runs from imports without installing it.
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # whatever the user's module raises on import, it is a bad factory
        raise ConfigError(f"[model] factory = {section.factory!r}: cannot import {module_name!r} "
                          f"({type(error).__name__}: {_first_line(error)})") from None
    build = getattr(module, function, None)
    if not callable(build):
        raise ConfigError(f"[model] factory = {section.factory!r}: module {module_name!r} has no callable "
                          f"{function!r}")
    version = section.factory_version or f"sha256:{_source_sha256(module, section.factory)}"
    return Model(build, {"factory": section.factory, "version": version})


def _source_sha256(module: object, factory: str) -> str:
    try:
        source = inspect.getsource(module)  # type: ignore[arg-type]
    except (OSError, TypeError):
        raise ConfigError(f"[model] factory = {factory!r}: its module's source cannot be read to identify it; "
                          "set [model] factory_version") from None
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def build_networks(model: Model, image_shape: tuple[int, int, int], latent_dim: int,
                   width: int) -> tuple[nn.Module, nn.Module]:
    """A fresh (generator, discriminator) pair from `model` (seed the RNG before calling).

    Raises:
        ConfigError: the factory raised, or did not return two `nn.Module`s.
    """
    try:
        networks = model.build(image_shape, latent_dim, width)
    except Exception as error:  # the user's code: any failure is a bad factory
        raise ConfigError(f"[model] factory = {model.identity['factory']!r} raised "
                          f"{type(error).__name__}: {_first_line(error)}") from None
    if not (isinstance(networks, tuple) and len(networks) == 2 and all(isinstance(n, nn.Module) for n in networks)):
        raise ConfigError(f"[model] factory = {model.identity['factory']!r} must return (generator, "
                          f"discriminator), two torch.nn.Module; got {type(networks).__name__}")
    return networks[0], networks[1]


def check_model(model: Model, image_shape: tuple[int, int, int], latent_dim: int, width: int) -> None:
    """Build the networks once on the CPU and run a tiny batch through them, checking the shapes.

    The global RNG is left as it was.

    Raises:
        ConfigError: the factory fails, or its networks take or give the wrong shapes.
    """
    factory = model.identity["factory"] or "built-in DCGAN"
    expected = (_CHECK_BATCH, *image_shape)
    with torch.random.fork_rng(devices=[]):
        generator, discriminator = build_networks(model, image_shape, latent_dim, width)
        try:
            with torch.no_grad():
                images = generator(torch.randn(_CHECK_BATCH, latent_dim))
                logits = discriminator(images) if tuple(images.shape) == expected else None
        except Exception as error:  # the user's forward pass
            raise ConfigError(f"[model] factory = {factory!r}: a batch of {_CHECK_BATCH} failed "
                              f"({type(error).__name__}: {_first_line(error)})") from None
    if logits is None:
        raise ConfigError(f"[model] factory = {factory!r}: the generator maps noise ({_CHECK_BATCH}, {latent_dim}) "
                          f"to {tuple(images.shape)}; the data needs {expected}")
    if tuple(logits.shape) not in ((_CHECK_BATCH,), (_CHECK_BATCH, 1)):
        raise ConfigError(f"[model] factory = {factory!r}: the discriminator maps {expected} to "
                          f"{tuple(logits.shape)}; it must give one logit per image, ({_CHECK_BATCH},) or "
                          f"({_CHECK_BATCH}, 1)")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]
