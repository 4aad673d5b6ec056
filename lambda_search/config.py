"""The study file: its sections (`sections`) in one frozen `StudyConfig`, loaded from TOML and validated once.

No torch import here: validating a study file must be instant and must not need
a GPU stack.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambda_search.errors import ConfigError
from lambda_search.names import FID_EMA, MIN_RUNS, MIN_SEARCH_RUNS, MIN_VERDICT_SEEDS
from lambda_search.sections import (
    MNIST_SIZE,
    SHIPPED_LENET_DATASET,
    DataSection,
    FidSection,
    ModelSection,
    SearchSection,
    StudySection,
    TrainSection,
)

# The sections are defined in `sections` and imported from here, with the config they make up.
__all__ = [
    "DataSection",
    "FidSection",
    "ModelSection",
    "SearchSection",
    "StudyConfig",
    "StudySection",
    "TrainSection",
    "check_limits",
    "config_from_dict",
    "fid_sample_bytes",
    "load_config",
]


@dataclass(frozen=True)
class StudyConfig:
    study: StudySection = field(default_factory=StudySection)
    search: SearchSection = field(default_factory=SearchSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    fid: FidSection = field(default_factory=FidSection)
    model: ModelSection = field(default_factory=ModelSection)

    def __post_init__(self) -> None:
        if self.study.objective == FID_EMA and not self.train.ema:
            raise ConfigError("[study] objective = 'fid_ema' scores the EMA generator: set [train] ema, "
                              "e.g. 0.95 (it is 0, off)")
        if self.study.strategy == "race":
            _check_race(self)
        if self.model.factory and self.train.fuse > 1:
            raise ConfigError(f"[model] factory = {self.model.factory!r}: fused trials stack the built-in DCGAN "
                              f"only; set [train] fuse = 1 (got {self.train.fuse}) to train your own networks")
        if self.data.dataset == SHIPPED_LENET_DATASET and self.fid.features == "lenet" and \
                self.data.image_size not in (0, MNIST_SIZE):
            raise ConfigError(f"[data] image_size = {self.data.image_size}: the LeNet shipped for "
                              f"{SHIPPED_LENET_DATASET} scores its own {MNIST_SIZE}×{MNIST_SIZE} images; "
                              f"set image_size = 0 or {MNIST_SIZE}, or [fid] features = 'inception'")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def training_identity(self) -> dict[str, Any]:
        """What makes two runs the same training: data, seed and the train section, less where
        and how fast it runs (device, fusing, CUDA graphs, checkpoint spacing), so a fused
        group's checkpoint resumes alone, on another device, and the other way round; and
        less `steps`, which only says where training ends (no schedule depends on it)."""
        train = {key: value for key, value in dataclasses.asdict(self.train).items()
                 if key not in ("device", "fuse", "cuda_graph", "checkpoint_every", "steps")}
        return {"data": dataclasses.asdict(self.data), "seed": self.study.seed, "train": train}

    def with_overrides(self, **sections: dict[str, Any]) -> StudyConfig:
        """Return a copy with some keys replaced, e.g. ``train={"device": "cpu"}``."""
        merged = self.to_dict()
        for section, values in sections.items():
            merged[section].update(values)
        return config_from_dict(merged)


def _check_race(config: StudyConfig) -> None:
    n_trials, seeds = config.study.n_trials, config.study.verdict_seeds
    if seeds and seeds < MIN_VERDICT_SEEDS:
        raise ConfigError(f"[study] verdict_seeds must be 0 (a quarter of n_trials) or >= {MIN_VERDICT_SEEDS}, "
                          f"got {seeds}")
    if seeds and n_trials - 2 * seeds < MIN_SEARCH_RUNS:
        raise ConfigError(f"[study] verdict_seeds = {seeds} takes {2 * seeds} of the {n_trials} runs, leaving "
                          f"{n_trials - 2 * seeds} to search: raise n_trials to >= {2 * seeds + MIN_SEARCH_RUNS}")
    if n_trials < MIN_RUNS:
        raise ConfigError(f"[study] strategy = 'race' needs n_trials >= {MIN_RUNS} (the verdict alone takes 6 runs), "
                          f"got {n_trials}")
    if config.study.pruner != "none":
        raise ConfigError(f"[study] strategy = 'race' compares whole runs: set pruner = 'none' "
                          f"(got {config.study.pruner!r})")
    if config.train.fuse != 1:
        raise ConfigError(f"[study] strategy = 'race' trains one run at a time: set [train] fuse = 1 "
                          f"(got {config.train.fuse})")


def _suggest(name: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_type(section: str, key: str, value: Any, annotation: Any) -> Any:
    expected = {"str": str, "int": int, "float": float, "bool": bool}[annotation]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(
            f"[{section}] {key} must be {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, str) and "\x00" in value:
        raise ConfigError(f"[{section}] {key} must not hold a NUL character, got {value!r}")
    return value


def _build_section(name: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table of keys, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key [{name}] {key}{_suggest(key, known)}")
    checked = {key: _check_type(name, key, value, known[key].type) for key, value in values.items()}
    return cls(**checked)


def config_from_dict(raw: dict[str, Any]) -> StudyConfig:
    """Validate a parsed study file (sections of keys) into a frozen config."""
    sections = {f.name: f for f in dataclasses.fields(StudyConfig)}
    for name in raw:
        if name not in sections:
            raise ConfigError(f"unknown section [{name}]{_suggest(name, sections)}")
    built = {
        name: _build_section(name, _section_class(f), raw.get(name, {}))
        for name, f in sections.items()
    }
    return StudyConfig(**built)


def _section_class(f: dataclasses.Field[Any]) -> type:
    hints = typing.get_type_hints(StudyConfig)
    cls = hints[f.name]
    assert isinstance(cls, type) and not isinstance(cls, types.GenericAlias)
    return cls


# Bytes one FID sample holds for a whole evaluation: its float32 latent vector (the fixed
# noise) and its float32 features kept for the KID (2048 for Inception, the widest network).
_FEATURES_MAX = 2048
# The fixed noise and the KID features may take at most this share of the device's memory.
_MEMORY_SHARE = 0.5


def fid_sample_bytes(latent_dim: int) -> int:
    """Memory one generated sample holds throughout a FID evaluation."""
    return 4 * (latent_dim + _FEATURES_MAX)


def check_limits(config: StudyConfig, dataset_size: int, memory_bytes: int) -> None:
    """The limits that follow from the data and the machine, checked before anything is written.

    Raises:
        ConfigError: ``batch_size`` exceeds the dataset, or ``n_samples`` needs more than
            half of `memory_bytes` (the device's memory) for one evaluation.
    """
    if config.train.batch_size > dataset_size:
        raise ConfigError(
            f"[train] batch_size = {config.train.batch_size} exceeds the {dataset_size:,} images "
            f"of dataset {config.data.dataset!r}"
        )
    largest = int(memory_bytes * _MEMORY_SHARE) // fid_sample_bytes(config.train.latent_dim)
    if config.fid.n_samples > largest:
        raise ConfigError(
            f"[fid] n_samples = {config.fid.n_samples} needs "
            f"{config.fid.n_samples * fid_sample_bytes(config.train.latent_dim) / 2**30:,.1f} GiB in one "
            f"evaluation; this device ({memory_bytes / 2**30:,.1f} GiB) allows at most {largest:,}"
        )


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study file.

    Raises:
        ConfigError: the file is missing, is not TOML, or breaks a rule.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"study file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read study file {path}: {error}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return config_from_dict(raw)
