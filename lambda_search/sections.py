"""The study file's sections: one frozen dataclass each, its keys' defaults and the checks of each key alone.

`config` assembles them into a `StudyConfig`, checks the rules that span sections and
loads the file. No torch import.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from lambda_search.errors import ConfigError
from lambda_search.names import COMPANION_SUFFIXES, FID, FID_EMA
from lambda_search.storage_url import storage_url_problem

SAMPLERS = ("tpe", "random", "gp", "qmc")
STRATEGIES = ("sweep", "race")
PRUNERS = ("none", "median", "sha", "hyperband")
DATASETS = ("mnist-5k", "mnist", "fashion-mnist", "cifar10", "folder")
APPLY_TO = ("generator", "discriminator", "both")
PENALIZE = ("weights", "all")
DECAY_MODES = ("l2", "decoupled")
PRECISIONS = ("fp32", "bf16")
FUSED_CONVS = ("grouped", "batched")
FEATURES = ("lenet", "inception")
# The one dataset whose FID LeNet ships with the package (`metrics.lenet`), trained on its 28×28 images.
SHIPPED_LENET_DATASET = "mnist-5k"
MNIST_SIZE = 28
# Which FID a study judges: the live generator's, or its exponential moving average's (`[train] ema`).
OBJECTIVES = (FID, FID_EMA)
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_DEVICE = re.compile(r"auto|cpu|cuda|cuda:\d+")
# Optuna's samplers seed numpy, which takes 0 … 2**32 - 1; every seed derived from the study seed
# for torch (the FID noise's seed + 1, the race's and the confirmation's fresh seeds) stays far
# below torch's 2**64, and a worker's sampler seed wraps around (`sweep.study.make_sampler`).
SEED_MAX = 2**32 - 1
# A heartbeat once a day already notices a dead worker only after two days; past that, none.
HEARTBEAT_MAX_SECONDS = 86_400


def _one_of(section: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"[{section}] {key} = {value!r} is not one of: {', '.join(choices)}")


def _positive(section: str, key: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"[{section}] {key} must be > 0 and finite, got {value!r}")


@dataclass(frozen=True)
class StudySection:
    name: str = "lambda-sweep"
    # Empty means sqlite:///studies/<name>.db, resolved by `resolved_storage`.
    storage: str = ""
    # Finished (COMPLETE or PRUNED) trials the study should hold, across all workers.
    n_trials: int = 8
    sampler: str = "tpe"
    # "sweep": one run per λ, all with `seed`; "race": one run per λ on `seed`, the λ with the
    # lowest fitted FID then judged against λ = 0 on fresh seeds (see lambda_search.sweep.race.rule).
    strategy: str = "sweep"
    seed: int = 0
    pruner: str = "none"
    # A worker killed mid-trial is noticed after 2 × heartbeat_seconds without a beat.
    heartbeat_seconds: int = 30
    max_retries: int = 2
    # Where trial artifacts (sample grids, curves) and checkpoints go; empty means
    # a folder named after the study beside an SQLite file, else ./artifacts/<name>.
    artifacts: str = ""
    # A race's fresh verdict seeds (two runs each, the kept λ and λ = 0); 0 means a quarter of
    # n_trials, at least 3. `lambda-search plan` says how many give 80% power for an effect.
    verdict_seeds: int = 0
    # The FID the sampler, pruner, race and verdict judge, fixed before the study starts: "fid" (the live
    # generator) or "fid_ema" (its moving average, needs [train] ema > 0). Both are stored on every trial.
    objective: str = FID

    def __post_init__(self) -> None:
        # fullmatch: `$` would let a trailing newline through.
        if not _STUDY_NAME.fullmatch(self.name):
            raise ConfigError(
                f"[study] name = {self.name!r}: use letters, digits, '.', '_' or '-' "
                "(at most 128, starting with a letter or digit)"
            )
        if self.name.endswith(COMPANION_SUFFIXES):
            raise ConfigError(f"[study] name = {self.name!r}: a name ending in {', '.join(COMPANION_SUFFIXES)} "
                              "is a study's companion (its λ = 0 control, confirmation or lock); choose another")
        if (problem := storage_url_problem(self.resolved_storage)) is not None:
            raise ConfigError(f"[study] storage: {problem}")
        _positive("study", "n_trials", self.n_trials)
        if not 0 <= self.seed <= SEED_MAX:
            raise ConfigError(f"[study] seed must be in 0 … {SEED_MAX} (2**32 - 1), got {self.seed}")
        _one_of("study", "sampler", self.sampler, SAMPLERS)
        _one_of("study", "strategy", self.strategy, STRATEGIES)
        _one_of("study", "pruner", self.pruner, PRUNERS)
        if not 0 < self.heartbeat_seconds <= HEARTBEAT_MAX_SECONDS:
            raise ConfigError(f"[study] heartbeat_seconds must be in 1 … {HEARTBEAT_MAX_SECONDS} (a day), "
                              f"got {self.heartbeat_seconds}")
        if self.max_retries < 0:
            raise ConfigError(f"[study] max_retries must be >= 0, got {self.max_retries}")
        if self.verdict_seeds and self.strategy != "race":
            raise ConfigError(f"[study] verdict_seeds = {self.verdict_seeds} sizes a race's verdict: set "
                              f"strategy = 'race', or leave verdict_seeds out")
        _one_of("study", "objective", self.objective, OBJECTIVES)

    @property
    def resolved_storage(self) -> str:
        return self.storage or f"sqlite:///studies/{self.name}.db"


@dataclass(frozen=True)
class SearchSection:
    lambda_low: float = 1e-4
    lambda_high: float = 1e-2
    # Also train λ = 0 once, same seed and protocol, in the companion study <name>.control:
    # without it nobody knows whether the best λ helps at all. It never reaches the sampler.
    control: bool = True

    def __post_init__(self) -> None:
        low, high = self.lambda_low, self.lambda_high
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise ConfigError(
                f"[search] needs 0 < lambda_low < lambda_high (log-uniform), got {low!r} and {high!r}"
            )


@dataclass(frozen=True)
class DataSection:
    dataset: str = "mnist-5k"
    # Where torchvision datasets live (and are downloaded to when online), or the ImageFolder.
    root: str = ""
    # 0 keeps the dataset's own resolution; `folder` images are resized to 32 then.
    image_size: int = 0

    def __post_init__(self) -> None:
        _one_of("data", "dataset", self.dataset, DATASETS)
        if self.dataset == "folder" and not self.root:
            raise ConfigError("[data] dataset = 'folder' needs root = the ImageFolder directory")
        if self.image_size < 0 or self.image_size % 4:
            raise ConfigError(
                f"[data] image_size must be 0 or a multiple of 4, got {self.image_size}"
            )


@dataclass(frozen=True)
class TrainSection:
    steps: int = 300
    batch_size: int = 64
    lr: float = 2e-4
    apply_to: str = "generator"
    # "weights": tensors with >= 2 dimensions (conv and linear kernels); biases and
    # normalization scales are left alone, as in nanoGPT's configure_optimizers.
    penalize: str = "weights"
    # "l2": λ·Σ‖w‖² summed into the loss (the question the sweep was built for);
    # "decoupled": AdamW's w ← w − lr·λ·w beside the Adam step. See `penalty`.
    decay_mode: str = "l2"
    device: str = "auto"
    latent_dim: int = 100
    # Channels of the widest DCGAN layer / 2; 64 is the DCGAN paper's ngf/ndf.
    width: int = 64
    # Steps between checkpoints of a trial; 0 turns checkpoints off.
    checkpoint_every: int = 100
    # λ-trials trained side by side in one fused job (grouped layers); pays off on a GPU.
    fuse: int = 1
    # On a CUDA device, replay each training step from a CUDA graph (no effect on the CPU).
    cuda_graph: bool = True
    # "bf16": the forward passes under bfloat16 autocast (for GPUs); weights and λ·Σ‖w‖² stay fp32.
    precision: str = "fp32"
    # torch's CPU threads, whatever OMP_NUM_THREADS says: results change with the thread count
    # (LeNet features by ~1e-7), so a fixed count makes a rerun on the same kind of machine repeat bit for bit.
    threads: int = 1
    # On CUDA: deterministic algorithms (cuDNN included): a trial run twice repeats bit for bit. No effect on the CPU.
    deterministic: bool = False
    # How a fused job computes its K members' convolutions: "grouped" (cuDNN, groups = K) or
    # "batched" (im2col + one bmm over the members, `gan.batched_conv`); the same arithmetic.
    fused_conv: str = "grouped"
    # Decay of an exponential moving average of the generator's weights, scored beside it at every
    # evaluation (`fid_ema`); 0 turns it off. 0.95 halved the paired-difference sd on the quickstart (issue 19).
    ema: float = 0.0

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "lr", "latent_dim", "width", "fuse", "threads"):
            _positive("train", key, getattr(self, key))
        _one_of("train", "apply_to", self.apply_to, APPLY_TO)
        _one_of("train", "penalize", self.penalize, PENALIZE)
        _one_of("train", "decay_mode", self.decay_mode, DECAY_MODES)
        _one_of("train", "precision", self.precision, PRECISIONS)
        _one_of("train", "fused_conv", self.fused_conv, FUSED_CONVS)
        if self.decay_mode == "decoupled" and self.fuse > 1:
            raise ConfigError(
                f"[train] decay_mode = 'decoupled' trains one trial at a time: set fuse = 1 "
                f"(got fuse = {self.fuse}), or use decay_mode = 'l2' to fuse trials"
            )
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(
                f"[train] device = {self.device!r} is not one of: auto, cpu, cuda, cuda:N"
            )
        if self.checkpoint_every < 0:
            raise ConfigError(f"[train] checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if not (math.isfinite(self.ema) and 0 <= self.ema < 1):
            raise ConfigError(f"[train] ema must be 0 (off) or a decay in (0, 1), got {self.ema!r}")


_FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ModelSection:
    # "package.module:build" builds the user's own networks (see `gan.factory`); "" is the
    # built-in DCGAN (`gan.models`), sized by [train] width.
    factory: str = ""
    # Names the factory's version in the study's identity; "" takes the sha256 of its module's source,
    # so any edit of that file makes a new model (and an existing study refuses it).
    factory_version: str = ""

    def __post_init__(self) -> None:
        if self.factory and not _FACTORY.match(self.factory):
            raise ConfigError(f"[model] factory = {self.factory!r} is not 'package.module:function' "
                              "(e.g. 'examples.my_gan:build')")
        if self.factory_version and not self.factory:
            raise ConfigError("[model] factory_version names a factory's version: set [model] factory too")


@dataclass(frozen=True)
class FidSection:
    features: str = "lenet"
    n_samples: int = 5000
    # Intermediate FID every this many steps (reported to the trial, for pruning).
    eval_every: int = 100
    inception_weights: str = ""
    # Real images whose statistics the FID compares against; 0 means the whole dataset.
    n_real: int = 0

    def __post_init__(self) -> None:
        _one_of("fid", "features", self.features, FEATURES)
        if self.n_samples < 2:
            raise ConfigError(f"[fid] n_samples must be >= 2, got {self.n_samples}")
        _positive("fid", "eval_every", self.eval_every)
        if self.n_real < 0 or self.n_real == 1:
            raise ConfigError(f"[fid] n_real must be 0 (all) or >= 2, got {self.n_real}")
