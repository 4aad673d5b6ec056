"""`lambda-search plan`: how many verdict seeds a race needs to detect an effect, before anything trains. No torch.

The race's verdict judges the paired differences FID(λ) − FID(0) on its fresh seeds by the
one rule (`metrics.stats.beyond_noise`, m = 1). How often it catches a true effect depends on
the sd of those differences, which the study file cannot know: it comes from a pilot, the
paired runs of a study already finished (a race's verdict, or a sweep's confirmation), or
else from the documented default for its device and objective (`DEFAULTS`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import optuna

from lambda_search.config import StudyConfig, load_config
from lambda_search.errors import ConfigError, StudyNotFoundError
from lambda_search.metrics.stats import (
    ALPHA,
    POWER,
    detectable_clause,
    detectable_effect,
    differences,
    power_at,
    seeds_for_effect,
    stand_in,
)
from lambda_search.names import MIN_SEARCH_RUNS, MIN_VERDICT_SEEDS
from lambda_search.results.confirmation import load_confirmation
from lambda_search.storage_url import mask_password, sqlite_path, storage_url_problem
from lambda_search.sweep.race.rule import search_budget, verdict_seed_count
from lambda_search.sweep.race.runs import is_race, race_verdict
from lambda_search.sweep.storage import load_study

# The sd of FID(λ) − FID(0) per seed on the quickstart's setting (400 steps, width 32, λ = 6.44e-3
# against 0): measured 2026-12 on 8 paired seeds, 2-core CPU (issue 19). A single FID's sd was 23.3.
DEFAULT_SD = 11.0
DEFAULT_SOURCE = "the documented default: the quickstart setting, measured 2026-12, 8 paired seeds, 2-core CPU"

# The settings the defaults were measured at: the sd holds for a file of the same size only.
QUICKSTART_SIZE = {"dataset": "mnist-5k", "steps": 400, "width": 32, "batch_size": 64, "n_samples": 1000, "ema": 0.0}
GPU_SIZE = {**QUICKSTART_SIZE, "steps": 2000, "width": 64, "n_samples": 5000}

# The documented defaults by where the file trains and which FID it judges (bench/RESULTS.md,
# docs/finding.md; each the larger sd where two were measured). A file on `auto` gets the CPU's,
# the larger: a GPU user who wants fewer seeds names the device or a pilot.
DEFAULTS = {
    ("cpu", "fid"): (DEFAULT_SD, 8, DEFAULT_SOURCE, QUICKSTART_SIZE),
    ("cpu", "fid_ema"): (6.11, 14, "the documented default: the EMA finding (quickstart size, ema 0.95), "
                                   "measured 2026-12-04, 14 paired seeds, CPU", {**QUICKSTART_SIZE, "ema": 0.95}),
    ("cuda", "fid"): (8.17, 12, "the documented default: studies/gpu.toml's size (2,000 steps, width 64), "
                                "measured 2026-12-04, 12 paired seeds, H200", GPU_SIZE),
    ("cuda", "fid_ema"): (7.48, 12, "the documented default: studies/gpu.toml's size with ema 0.95, "
                                    "measured 2026-12-04, 12 paired seeds, H200", {**GPU_SIZE, "ema": 0.95}),
}


def file_size(config: StudyConfig) -> dict[str, object]:
    """What sets a study's noise: its data, training length and width, batch, FID samples and EMA decay."""
    return {"dataset": config.data.dataset, "steps": config.train.steps, "width": config.train.width,
            "batch_size": config.train.batch_size, "n_samples": config.fid.n_samples, "ema": config.train.ema}


@dataclass(frozen=True)
class Pilot:
    """The paired differences' sd a plan assumes, how many differences it came from, and where from."""

    sd: float
    n: int
    source: str
    # The setting a documented default was measured at (`file_size`); None for a study read back.
    size: dict[str, object] | None = None


@dataclass(frozen=True)
class Plan:
    """The verdict seeds and runs that give `POWER` against `effect` FID, and what the file as it stands gives."""

    study_file: str
    effect: float
    pilot: Pilot
    verdict_seeds: int
    search_runs: int
    # The file as it stands: its verdict seeds, its n_trials, and their power against `effect`.
    current_seeds: int
    current_n_trials: int
    current_power: float
    current_detectable: float
    # Where the file's setting differs from the one its default sd was measured at: "steps 3000 here, 400 there".
    size_differences: tuple[str, ...] = ()

    @property
    def n_trials(self) -> int:
        return self.search_runs + 2 * self.verdict_seeds

    def lines(self) -> list[str]:
        """The plan as the CLI prints it."""
        return [
            f"{self.study_file}: to detect {self.effect:g} FID (λ − λ = 0, either sign) with {POWER:.0%} power, "
            f"paired t two-sided at α = {ALPHA:g} (the race's one rule, m = 1)",
            f"paired-difference sd: {self.pilot.sd:.2f} FID, from {self.pilot.source}",
            f"needs {self.verdict_seeds} verdict seeds: {self.n_trials} runs ({self.search_runs} search + "
            f"2 × {self.verdict_seeds}); in [study] put verdict_seeds = {self.verdict_seeds} and "
            f"n_trials = {self.n_trials}",
            f"as the file stands: {self.current_seeds} verdict seeds of {self.current_n_trials} runs, "
            f"{self.current_power:.0%} power for {self.effect:g} FID ({detectable_clause(self.current_detectable)})",
            *([f"caution: the default sd was measured at another size ({'; '.join(self.size_differences)}): "
               "a finished race of this file's size, given as --pilot STORAGE/STUDY, sizes it by its own noise"]
              if self.size_differences else []),
        ]


def plan(study_file: str | Path, effect: float, pilot: str | None = None) -> Plan:
    """The plan for `study_file`'s race to detect `effect` FID, with the sd of `pilot` (``STORAGE/STUDY``).

    Without `pilot`, the study of the file's own storage when it is an SQLite file that holds
    it with paired runs; else the documented default (`default_pilot`). The search keeps the runs the file gives it (at
    least `MIN_SEARCH_RUNS`). Trains nothing, imports no torch.

    Raises:
        ConfigError: the file is invalid or not a race, `effect` is not > 0, or the pilot
            holds no paired runs.
        StudyNotFoundError: `pilot` names a study that does not exist.
    """
    config = load_config(study_file)
    if config.study.strategy != "race":
        raise ConfigError(f"{study_file}: plan sizes a race's verdict; this file has strategy = "
                          f"{config.study.strategy!r} (set strategy = 'race')")
    measured = read_pilot(pilot) if pilot is not None else own_pilot(config)
    seeds = seeds_for_effect(effect, measured.sd, least=MIN_VERDICT_SEEDS)
    n_trials, requested = config.study.n_trials, config.study.verdict_seeds
    current = verdict_seed_count(n_trials, requested)
    return Plan(str(study_file), effect, measured, seeds, max(MIN_SEARCH_RUNS, search_budget(n_trials, requested)),
                current, n_trials, power_at(effect, measured.sd, current), detectable_effect(measured.sd, current),
                _size_differences(measured, config))


def _size_differences(pilot: Pilot, config: StudyConfig) -> tuple[str, ...]:
    if pilot.size is None:
        return ()
    here = file_size(config)
    return tuple(f"{key} {here[key]} here, {pilot.size[key]} there" for key in pilot.size
                 if here[key] != pilot.size[key])


def own_pilot(config: StudyConfig) -> Pilot:
    """The pilot in the study file's own SQLite storage, when it is there and holds paired runs; else the default."""
    path = sqlite_path(config.study.resolved_storage)
    if path is None or not path.exists():  # another database is read only when named: `plan` must not hang on one
        return default_pilot(config)
    try:
        return read_pilot(f"{config.study.resolved_storage}/{config.study.name}")
    except (StudyNotFoundError, ConfigError):
        return default_pilot(config)


def default_pilot(config: StudyConfig) -> Pilot:
    """The documented default sd for where `config` trains (`cuda…` or else the CPU's) and the FID it judges."""
    device = "cuda" if config.train.device.startswith("cuda") else "cpu"
    return Pilot(*DEFAULTS[device, config.study.objective])


def read_pilot(pilot: str) -> Pilot:
    """The sd of the paired differences stored in ``STORAGE/STUDY``: a race's verdict, or a sweep's confirmation.

    A confirmation of several λ gives the pooled sd over them (each λ's differences about its own mean).

    Raises:
        ConfigError: `pilot` has no ``/STUDY``, its storage URL is not one lambda-search uses, or the study
            holds fewer than 2 paired differences.
        StudyNotFoundError: no such study.
    """
    storage, _, name = pilot.rpartition("/")
    if not storage or not name:
        raise ConfigError(f"--pilot {pilot!r}: give STORAGE/STUDY, e.g. sqlite:///studies/quickstart.db/quickstart")
    if (problem := storage_url_problem(storage)) is not None:
        raise ConfigError(f"--pilot: {problem}")
    study = load_study(storage, name)
    groups = _race_pairs(study) if is_race(study) else _confirmation_pairs(storage, name)
    where = f"study {name!r} in {mask_password(storage)}"
    kind = "race verdict" if is_race(study) else "confirmation"
    if sum(len(group) for group in groups) - len(groups) < 1:
        raise ConfigError(f"{where} holds no finished {kind} with 2 or more paired seeds: no sd to plan with")
    degrees = sum(len(group) - 1 for group in groups)
    pooled = math.sqrt(sum((len(group) - 1) * statistics.variance(group) for group in groups if len(group) > 1)
                       / degrees)
    pairs = sum(len(group) for group in groups)
    return Pilot(pooled, pairs, f"{pairs} paired seeds of the {kind} of {where}")


def _race_pairs(study: optuna.Study) -> list[list[float]]:
    """The race's verdict differences, one group; none until its verdict runs are all finished."""
    result = race_verdict(study)
    return [differences(result.fids, result.control_fids)] if result is not None else []


def _confirmation_pairs(storage: str, name: str) -> list[list[float]]:
    """One group of differences per λ tested against λ = 0, a diverged run at the confirmation's worst FID."""
    confirmation = load_confirmation(storage, name)
    if confirmation is None:
        return []
    control = confirmation.control.fids
    groups = []
    for result in confirmation.candidates:
        seeds = sorted(set(result.fids) & set(control))
        if len(seeds) > 1:
            groups.append(differences(stand_in([result.fids[seed] for seed in seeds], confirmation.worst),
                                      stand_in([control[seed] for seed in seeds], confirmation.worst)))
    return groups
