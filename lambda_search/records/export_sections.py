"""The sections of an export file (`records.export.Export`), one frozen record each.

Each `to_dict` writes its section as the export file holds it, key for key and in order;
each `from_dict` reads it back from YAML (seeds as int keys) or JSON (seeds as string
keys). `study` and `fid` read leniently (an export written by hand may lack them); the
race's and the confirmation's figures need every key of today's layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from lambda_search.config import StudyConfig
from lambda_search.metrics.stats import Interval
from lambda_search.names import CONTROL, LIVE_GENERATOR


class _Section(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


Section = TypeVar("Section")


def dict_or_none(section: _Section | None) -> dict[str, Any] | None:
    """A section as the file holds it; None (null) for one the export does not have."""
    return None if section is None else section.to_dict()


def read_or_none(read: Callable[[dict[str, Any]], Section], table: dict[str, Any] | None) -> Section | None:
    """A section read back with `read`; None where the file holds null or lacks it."""
    return None if table is None else read(table)


@dataclass(frozen=True)
class StudyReference:
    """Where the exported λ was found (`study`): the study, its storage and the trial exported.

    Attributes:
        name: the study's name ("" in an export that does not name it).
        storage: its storage URL, any password as ``***``.
        trial: the number of the sweep trial exported (None in an export that does not name it).
    """

    name: str
    storage: str
    trial: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "storage": self.storage, "trial": self.trial}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> StudyReference:
        return cls(str(table.get("name", "")), str(table.get("storage", "")), table.get("trial"))


@dataclass(frozen=True)
class Fid:
    """The exported FID (`fid`): one run's for a sweep, the mean over the fresh seeds for a race or a confirmation.

    The file's `fid.objective` and `fid.ema` are the config's ``[study] objective`` and
    ``[train] ema``: `to_dict` writes them from the config, so they are not held twice.

    Attributes:
        value: the FID (None if the export holds none).
        protocol: how it was measured (feature network, dataset fingerprint, sample counts).
    """

    value: float | None
    protocol: dict[str, Any]

    def to_dict(self, config: StudyConfig) -> dict[str, Any]:
        return {"value": self.value, "objective": config.study.objective, "ema": config.train.ema,
                "protocol": self.protocol}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> Fid:
        return cls(table.get("value"), dict(table.get("protocol") or {}))


@dataclass(frozen=True)
class Kid:
    """The sweep trial's KID at its final evaluation (`kid`), its spread over subsets and its protocol.

    Attributes:
        generator: the generator it is of: the one ``[study] objective`` judges
            (`names.JUDGED_GENERATOR`), or the live one for a trial stored before the EMA
            generator's KID was measured. The file names it only where the study has two
            generators (``[train] ema`` > 0); an export without it is of the live generator.
    """

    value: float
    std: float | None
    protocol: dict[str, Any]
    generator: str = LIVE_GENERATOR

    def to_dict(self, config: StudyConfig) -> dict[str, Any]:
        named = {"generator": self.generator} if config.train.ema else {}
        return {"value": self.value, "std": self.std, **named, "protocol": self.protocol}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> Kid:
        return cls(table["value"], table["std"], table["protocol"], table.get("generator", LIVE_GENERATOR))


@dataclass(frozen=True)
class ControlRun:
    """A sweep's λ = 0 run (`control`): its FID (None unless it completed), how it ended, where it is stored.

    Attributes:
        note: one sentence comparing the sweep's best with it (never a win: one seed each).
    """

    fid: float | None
    state: str
    study: str
    trial: int
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {"lambda": CONTROL, "fid": self.fid, "state": self.state, "study": self.study, "trial": self.trial,
                "note": self.note}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> ControlRun:
        return cls(table["fid"], table["state"], table["study"], table["trial"], table["note"])


def _interval_dict(interval: Interval) -> dict[str, Any]:
    return {"mean": interval.mean, "ci": [interval.low, interval.high], "n": interval.n}


def _interval(table: dict[str, Any]) -> Interval:
    low, high = table["ci"]
    return Interval(table["mean"], low, high, table["n"])


def _by_seed(table: dict[Any, Any]) -> dict[int, Any]:
    # YAML keeps the seeds as ints, JSON as strings.
    return {int(seed): value for seed, value in table.items()}


@dataclass(frozen=True)
class RaceDifference:
    """The race's incumbent − λ = 0, seed by seed on the fresh seeds (`race.difference_to_control`).

    Attributes:
        interval: the mean difference and its interval over n seeds (negative: the incumbent scores lower).
        detectable: the smallest |difference| the rule detects at `power`; None with fewer than 2 seeds.
        rule: the rule `beyond_noise` was decided by, in words.
    """

    interval: Interval
    wilcoxon_p: float
    beyond_noise: bool
    detectable: float | None
    power: float
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {**_interval_dict(self.interval), "wilcoxon_p": self.wilcoxon_p, "beyond_noise": self.beyond_noise,
                "detectable": self.detectable, "power": self.power, "rule": self.rule}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> RaceDifference:
        return cls(_interval(table), table["wilcoxon_p"], table["beyond_noise"], table["detectable"], table["power"],
                   table["rule"])


@dataclass(frozen=True)
class RaceSection:
    """A race's pre-registered verdict (`race`): the incumbent against λ = 0 on the fresh verdict seeds.

    Attributes:
        fid_by_seed: the incumbent's FID per verdict seed (a diverged run as the study's worst FID).
        control_fid_by_seed: λ = 0's, likewise.
        control_fid: λ = 0's mean FID over the verdict seeds.
    """

    seeds: list[int]
    fid_by_seed: dict[int, float]
    control_fid_by_seed: dict[int, float]
    control_fid: float
    confidence: float
    difference_to_control: RaceDifference

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": self.seeds, "fid_by_seed": self.fid_by_seed, "control_fid_by_seed": self.control_fid_by_seed,
                "control_fid": self.control_fid, "confidence": self.confidence,
                "difference_to_control": self.difference_to_control.to_dict()}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> RaceSection:
        return cls(list(table["seeds"]), _by_seed(table["fid_by_seed"]), _by_seed(table["control_fid_by_seed"]),
                   table["control_fid"], table["confidence"], RaceDifference.from_dict(table["difference_to_control"]))


@dataclass(frozen=True)
class LambdaDifference:
    """One λ of a confirmation against λ = 0 on the same seeds, as one of `m` comparisons.

    Attributes:
        interval: the mean of λ's FID − λ = 0's per seed with its simultaneous interval at `confidence`.
        detectable: the smallest |difference| the rule detects with 80% power; None with fewer than 2 seeds.
    """

    interval: Interval
    confidence: float
    t_p: float
    t_p_holm: float
    wilcoxon_p: float
    wilcoxon_p_holm: float
    m: int
    beyond_noise: bool
    detectable: float | None

    def to_dict(self) -> dict[str, Any]:
        return {**_interval_dict(self.interval), "confidence": self.confidence, "t_p": self.t_p,
                "t_p_holm": self.t_p_holm, "wilcoxon_p": self.wilcoxon_p, "wilcoxon_p_holm": self.wilcoxon_p_holm,
                "m": self.m, "beyond_noise": self.beyond_noise, "detectable": self.detectable}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> LambdaDifference:
        return cls(_interval(table), table["confidence"], table["t_p"], table["t_p_holm"], table["wilcoxon_p"],
                   table["wilcoxon_p_holm"], table["m"], table["beyond_noise"], table["detectable"])


@dataclass(frozen=True)
class ConfirmedLambda:
    """One λ of a confirmation: its FID per seed (None for a run that diverged), their mean and its test.

    Attributes:
        fid: the mean FID and its interval, a diverged run counted as the confirmation's stand-in FID.
        diverged: how many of its runs diverged.
        difference_to_control: None for λ = 0 itself, or when no seed holds a run of both.
    """

    lam: float
    fid_by_seed: dict[int, float | None]
    fid: Interval
    diverged: int
    difference_to_control: LambdaDifference | None

    def to_dict(self) -> dict[str, Any]:
        return {"lambda": self.lam, "fid_by_seed": self.fid_by_seed, "fid": _interval_dict(self.fid),
                "diverged": self.diverged, "difference_to_control": dict_or_none(self.difference_to_control)}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> ConfirmedLambda:
        return cls(table["lambda"], _by_seed(table["fid_by_seed"]), _interval(table["fid"]), table["diverged"],
                   read_or_none(LambdaDifference.from_dict, table["difference_to_control"]))


@dataclass(frozen=True)
class ConfirmationSection:
    """`confirm`'s runs (`confirmation`): the top λ and λ = 0 re-trained on fresh seeds, tested against λ = 0.

    Attributes:
        study: the confirmation's study (``<name>.confirm``).
        selection_seed: the study seed, with which the λ were chosen: never one of `seeds`.
        ignored_selection_seed_runs: stored runs with the selection seed, left out.
        m: the number of λ tested against λ = 0.
        beyond_noise: whether any λ beats λ = 0 beyond noise (by `rule`).
        diverged_stand_in_fid: the FID a diverged run counts as in means and t statistics.
        lambdas: λ = 0 first, then the swept λ, best mean FID first.
    """

    study: str
    seeds: list[int]
    selection_seed: int
    ignored_selection_seed_runs: int
    confidence: float
    alpha: float
    m: int
    beyond_noise: bool
    rule: str
    diverged_stand_in_fid: float
    lambdas: list[ConfirmedLambda]

    def fid_of(self, lam: float, seed: int) -> float | None:
        """λ's FID on `seed`; None if that run diverged or the confirmation holds none."""
        runs = next((entry.fid_by_seed for entry in self.lambdas if entry.lam == lam), {})
        return runs.get(seed)

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "seeds": self.seeds, "selection_seed": self.selection_seed,
                "ignored_selection_seed_runs": self.ignored_selection_seed_runs, "confidence": self.confidence,
                "alpha": self.alpha, "m": self.m, "beyond_noise": self.beyond_noise, "rule": self.rule,
                "diverged_stand_in_fid": self.diverged_stand_in_fid,
                "lambdas": [entry.to_dict() for entry in self.lambdas]}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> ConfirmationSection:
        return cls(table["study"], list(table["seeds"]), table["selection_seed"], table["ignored_selection_seed_runs"],
                   table["confidence"], table["alpha"], table["m"], table["beyond_noise"], table["rule"],
                   table["diverged_stand_in_fid"], [ConfirmedLambda.from_dict(entry) for entry in table["lambdas"]])
