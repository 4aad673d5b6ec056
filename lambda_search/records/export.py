"""The export file as one typed record: the λ to train with and what it was found with.

`Export` is the file's one model: `results.export` builds it from a study and writes
`Export.to_dict()`; `train` (`gan.production`) and the public API
(`lambda_search.load_export`) read the file back through `Export.from_dict`. No other
module reads an export by key. No torch, no Optuna: reading an export is instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lambda_search.config import StudyConfig, config_from_dict
from lambda_search.errors import ConfigError
from lambda_search.names import MODEL, builtin_model
from lambda_search.records.export_sections import (
    ConfirmationSection,
    ControlRun,
    Fid,
    Kid,
    RaceSection,
    StudyReference,
    dict_or_none,
    read_or_none,
)


@dataclass(frozen=True)
class Export:
    """A lambda-search export (the YAML or JSON file `lambda-search export` writes), section by section.

    Attributes:
        lam: the exported weight-decay coefficient λ (`lambda`).
        verdict: the export's one-line judgement: what the FIDs say about λ against λ = 0.
        fresh_seeds: whether `verdict` was made on seeds that did not select λ (a race's verdict or a
            confirmation); False for one sweep's best run, which is unconfirmed.
        study: the study λ was found in, its storage and the sweep trial exported.
        fid: the exported FID and its protocol: one run's for a sweep, the mean over the fresh seeds
            for a race or a confirmation.
        kid: the sweep trial's KID, of the generator ``[study] objective`` judges where the trial stored
            it (`Kid.generator` says which); None without one, and for a race or a confirmation (the
            trial's KID is one run, maybe of another λ).
        seed: the seed of the run `train` repeats: the sweep trial's, or the first fresh seed of a
            race's verdict or a confirmation.
        model: the networks' identity: ``{"factory": "package.module:build" or "", "version": ...}``.
        versions: torch, optuna, torchmetrics and lambda-search as installed where it was exported.
        config: the whole resolved study config the λ was found with.
        control: the sweep's λ = 0 run; None without one, and for a race (its λ = 0 runs are its verdict's).
        race: a race's verdict; None for a sweep.
        confirmation: `confirm`'s runs on fresh seeds, the last word on λ; None before `confirm` ran.
    """

    lam: float
    verdict: str
    fresh_seeds: bool
    study: StudyReference
    fid: Fid
    kid: Kid | None
    seed: int
    model: dict[str, str]
    versions: dict[str, str]
    config: StudyConfig
    control: ControlRun | None
    race: RaceSection | None = None
    confirmation: ConfirmationSection | None = None

    @property
    def protocol(self) -> dict[str, Any]:
        """How the exported FID was measured (feature network, dataset fingerprint, sample counts)."""
        return self.fid.protocol

    @property
    def apply_to(self) -> str:
        """Which network(s) λ decays: "generator", "discriminator" or "both" (``[train] apply_to``)."""
        return self.config.train.apply_to

    @property
    def decay_mode(self) -> str:
        """"l2" (λ·Σ‖w‖² in the loss) or "decoupled" (AdamW-style shrinking) (``[train] decay_mode``)."""
        return self.config.train.decay_mode

    @property
    def penalize(self) -> str:
        """"weights" (tensors with ≥ 2 dimensions) or "all" (``[train] penalize``)."""
        return self.config.train.penalize

    @property
    def seed_fid(self) -> float | None:
        """The FID the export's run on `seed` scored (None if it diverged or the export holds none).

        What `train` gets back with the same config on the same kind of machine: the
        confirmation's run of λ on that seed, or the race's, else the sweep trial's FID.
        """
        if self.confirmation is not None:
            fid = self.confirmation.fid_of(self.lam, self.seed)
        elif self.race is not None:
            fid = self.race.fid_by_seed.get(self.seed)
        else:
            fid = self.fid.value
        return fid if fid is not None and math.isfinite(fid) else None

    @property
    def seed_note(self) -> str:
        """Which seed `train` repeats, and why that one."""
        if self.confirmation is not None:  # a race's confirmation is exported over the race's verdict
            return (f"seed {self.seed}: the first of the confirmation's seeds "
                    f"{_listed(self.confirmation.seeds)}, whose mean FID was exported")
        if self.race is not None:
            return (f"seed {self.seed}: the first of the race verdict's fresh seeds "
                    f"{_listed(self.race.seeds)}, whose mean FID was exported")
        return f"seed {self.seed}: the seed of the sweep trial whose FID was exported"

    def to_dict(self) -> dict[str, Any]:
        """The export file's contents, key for key and in order; `race` and `confirmation` only when held."""
        data = {
            "lambda": self.lam,
            "verdict": self.verdict,
            "fresh_seeds": self.fresh_seeds,
            "study": self.study.to_dict(),
            "fid": self.fid.to_dict(self.config),
            "kid": None if self.kid is None else self.kid.to_dict(self.config),
            "seed": self.seed,
            # The protocol's, repeated at the top of the file: the record holds it once, in `fid.protocol`.
            "dataset_fingerprint": self.fid.protocol.get("dataset_fingerprint"),
            MODEL: self.model,
            "versions": self.versions,
            "config": self.config.to_dict(),
            "control": dict_or_none(self.control),
        }
        if self.race is not None:
            data["race"] = self.race.to_dict()
        if self.confirmation is not None:
            data["confirmation"] = self.confirmation.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Export:
        """The record of an export's parsed contents (`read_export`), older exports' names included.

        Raises:
            ConfigError: `config` does not validate.
            AttributeError, KeyError, TypeError, ValueError, OverflowError: a section lacks a key of
                today's layout, or a value is not of its kind (`load_export` says so in one line).
        """
        config = config_from_dict(data["config"])
        return cls(
            lam=float(data["lambda"]),
            # `note` and `confirmed`: their names in exports before 0.1.0's first release.
            verdict=str(data.get("verdict", data.get("note", ""))),
            fresh_seeds=bool(data.get("fresh_seeds", data.get("confirmed", False))),
            study=StudyReference.from_dict(data.get("study") or {}),
            fid=Fid.from_dict(data.get("fid") or {}),
            kid=read_or_none(Kid.from_dict, data.get("kid")),
            seed=int(data.get("seed", config.study.seed)),
            # Exports made before `[model]` existed trained the built-in DCGAN.
            model=dict(data.get(MODEL) or builtin_model()),
            versions=dict(data.get("versions") or {}),
            config=config,
            control=read_or_none(ControlRun.from_dict, data.get("control")),
            race=read_or_none(RaceSection.from_dict, data.get("race")),
            confirmation=read_or_none(ConfirmationSection.from_dict, data.get("confirmation")),
        )


def _listed(seeds: list[int]) -> str:
    return ", ".join(str(seed) for seed in seeds)


# The config sections that decide what `train` trains and how it is scored ([model] may be absent:
# exports made before it existed trained the built-in DCGAN).
TRAINED_SECTIONS = ("study", "data", "train", "fid")


def read_export(path: Path) -> dict[str, Any]:
    """An export file (YAML or JSON: YAML reads both), checked for what training needs.

    Raises:
        ConfigError: the file is missing, unparsable, lacks `lambda` or a section of `config`
            (`TRAINED_SECTIONS`), or its `lambda` is not finite.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"export file not found: {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(f"cannot read export file {path}: {reason}") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ConfigError(f"{path} is not a lambda-search export: it has no `config` table")
    lam = data.get("lambda")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not (math.isfinite(lam) and lam >= 0):
        raise ConfigError(f"{path}: `lambda` must be a finite number >= 0, got {lam!r}")
    # A missing section would be filled with defaults: other networks, data or seed than the ones scored.
    missing = [name for name in TRAINED_SECTIONS if not isinstance(data["config"].get(name), dict)]
    if missing:
        raise ConfigError(f"{path}: its config lacks {', '.join(f'[{name}]' for name in missing)}: "
                          "training would not reproduce the exported run; export it again")
    return data


def load_export(path: str | Path) -> Export:
    """Read an export file written by ``lambda-search export`` (YAML or JSON).

    Args:
        path: the export file.

    Returns:
        The typed, frozen `Export`: λ, apply_to, decay_mode, penalize, the FID protocol, the
        verdict, the seed, the model and the whole config.

    Raises:
        ConfigError: the file is missing, unparsable, or not an export this version reads.
    """
    data = read_export(Path(path))
    try:
        return Export.from_dict(data)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as error:
        raise ConfigError(f"{path} is not an export this version reads ({type(error).__name__}: {error}); "
                          "export it again") from None
