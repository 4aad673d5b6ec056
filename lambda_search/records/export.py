"""An export file read back as a typed record: the λ to train with and what it was found with.

`results.export` writes the file; `train` (`gan.production`) and the public API
(`lambda_search.load_export`) read it through here. No torch, no Optuna: reading an
export is instant.
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


@dataclass(frozen=True)
class Export:
    """A lambda-search export (the YAML or JSON file `lambda-search export` writes).

    Attributes:
        lam: the exported weight-decay coefficient λ.
        fresh_seeds: whether `verdict` was made on seeds that did not select λ (a race's verdict or a
            confirmation); False for one sweep's best run, which is unconfirmed.
        verdict: the export's one-line judgement: what the FIDs say about λ against λ = 0.
        fid: the exported FID: one run's for a sweep, the mean over the fresh seeds for a race or
            a confirmation.
        seed: the seed of the run `train` repeats: the sweep trial's, or the first fresh seed of a
            race's verdict or a confirmation.
        seed_fid: the FID the export's run on `seed` scored (None if it diverged): what `train`
            gets back with the same config on the same kind of machine.
        protocol: how the FID was measured (feature network, dataset fingerprint, sample counts).
        model: the networks' identity: ``{"factory": "package.module:build" or "", "version": ...}``.
        study: the study's name.
        trial: the number of the sweep trial exported (None in an export that does not name it).
        control_note: how the sweep's best compares with its λ = 0 run; None without one.
        config: the whole resolved study config the λ was found with.
        raw: the file as read, for fields not named here (control, race, confirmation, versions).
    """

    lam: float
    fresh_seeds: bool
    verdict: str
    fid: float | None
    seed: int
    seed_fid: float | None
    protocol: dict[str, Any]
    model: dict[str, str]
    study: str
    trial: int | None
    control_note: str | None
    config: StudyConfig
    raw: dict[str, Any]

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
    def seed_note(self) -> str:
        """Which seed `train` repeats, and why that one."""
        if "confirmation" in self.raw:  # a race's confirmation is exported over the race's verdict
            return (f"seed {self.seed}: the first of the confirmation's seeds "
                    f"{_seeds(self.raw['confirmation'].get('seeds'))}, whose mean FID was exported")
        if "race" in self.raw:
            return (f"seed {self.seed}: the first of the race verdict's fresh seeds "
                    f"{_seeds(self.raw['race'].get('seeds'))}, whose mean FID was exported")
        return f"seed {self.seed}: the seed of the sweep trial whose FID was exported"


def _seeds(seeds: object) -> str:
    return ", ".join(str(seed) for seed in seeds) if isinstance(seeds, list) else "?"


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


def export_record(data: dict[str, Any]) -> Export:
    """The typed record of an export's parsed contents (`read_export`)."""
    config = config_from_dict(data["config"])
    fid = data.get("fid") or {}
    seed = int(data.get("seed", config.study.seed))
    study = data.get("study") or {}
    return Export(
        lam=float(data["lambda"]),
        # `confirmed` and `note`: their names in exports before 0.1.0's first release.
        fresh_seeds=bool(data.get("fresh_seeds", data.get("confirmed", False))),
        verdict=str(data.get("verdict", data.get("note", ""))),
        fid=fid.get("value"),
        seed=seed,
        seed_fid=seed_fid(data, seed),
        protocol=dict(fid.get("protocol") or {}),
        # Exports made before `[model]` existed trained the built-in DCGAN.
        model=dict(data.get(MODEL) or builtin_model()),
        study=str(study.get("name", "")),
        trial=study.get("trial"),
        control_note=(data.get("control") or {}).get("note"),
        config=config,
        raw=data,
    )


def seed_fid(data: dict[str, Any], seed: int) -> float | None:
    """The FID of the export's run on `seed`: the confirmation's or the race's by seed, else the sweep trial's."""
    if "confirmation" in data:
        for entry in data["confirmation"].get("lambdas", []):
            if entry.get("lambda") == data["lambda"]:
                return _by_seed(entry.get("fid_by_seed"), seed)
        return None
    if "race" in data:
        return _by_seed(data["race"].get("fid_by_seed"), seed)
    value = (data.get("fid") or {}).get("value")
    return float(value) if isinstance(value, (int, float)) else None


def _by_seed(fids: object, seed: int) -> float | None:
    # YAML keeps the seeds as ints, JSON as strings.
    if not isinstance(fids, dict):
        return None
    value = fids.get(seed, fids.get(str(seed)))
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def load_export(path: str | Path) -> Export:
    """Read an export file written by ``lambda-search export`` (YAML or JSON).

    Args:
        path: the export file.

    Returns:
        The typed, frozen `Export`: λ, apply_to, decay_mode, penalize, the FID protocol, the
        verdict, the seed, the model and the whole config.

    Raises:
        ConfigError: the file is missing, unparsable, or not an export.
    """
    return export_record(read_export(Path(path)))
