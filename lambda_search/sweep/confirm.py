"""Confirm a sweep: re-train its top λ values and λ = 0 with the same seeds, with error bars.

The best trial of a sweep is one seed at one λ, and GAN training is noisy: it is
often luck. `confirm` takes the top-k distinct λ of the study's COMPLETE trials
plus the λ = 0 control, trains each with the seeds ``study.seed + 0 … seeds − 1``
(the same seeds for every λ: paired), and stores every run as a trial of the
companion study ``<name>.confirm`` in the same storage. Seed s also fixes the FID
noise (`train.fixed_noise`), so the run with seed ``study.seed`` at a swept λ
repeats that λ's sweep trial. Runs already stored are skipped: re-running
`confirm` resumes where an interrupted one stopped. The sweep's own λ = 0 control
(`control`), when it is a clean run of the same thing, is copied in as the
control's run with the study seed instead of being trained again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import optuna
from optuna.distributions import FloatDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState, create_trial

from lambda_search.config import StudyConfig, config_from_dict
from lambda_search.data import load_images
from lambda_search.errors import ConfigError, NoResultError
from lambda_search.gan.train import Diverged, fixed_noise, new_state, train
from lambda_search.metrics.fid import FidScorer
from lambda_search.metrics.stats import Interval, excludes_zero, mean_interval, paired_difference
from lambda_search.sweep.control import control_fid, control_name, load_control
from lambda_search.sweep.storage import open_storage
from lambda_search.sweep.study import PARAM, load_study, resolve_device

CONTROL = 0.0
# Told for each run as it is trained or found stored: (λ, seed, FID or NaN if it diverged, was it stored already).
RunCallback = Callable[[float, int, float, bool], None]


class LambdaResult(NamedTuple):
    """One λ of a confirmation: its FID per seed, their mean and interval, and the paired difference to λ = 0."""

    lam: float
    fids: dict[int, float]
    interval: Interval
    # None for the control itself, or when no seed finished both at this λ and at λ = 0.
    difference: Interval | None


class Confirmation(NamedTuple):
    study: str
    seeds: list[int]
    control: LambdaResult
    # The swept λ values, best mean FID first.
    candidates: list[LambdaResult]

    @property
    def best(self) -> LambdaResult:
        """The λ with the lowest mean FID, the control included."""
        return min([self.control, *self.candidates], key=lambda result: result.interval.mean)


def confirm_name(study_name: str) -> str:
    return f"{study_name}.confirm"


def top_lambdas(study: optuna.Study, top: int) -> list[float]:
    """The `top` distinct λ of the COMPLETE trials, ordered by their best FID.

    Raises:
        NoResultError: the study holds no COMPLETE trial.
    """
    best: dict[float, float] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        lam, value = float(trial.params[PARAM]), trial.value
        if value is not None and math.isfinite(value) and value < best.get(lam, math.inf):
            best[lam] = value
    if not best:
        raise NoResultError(f"study {study.study_name!r} holds no COMPLETE trial to confirm")
    return sorted(best, key=best.__getitem__)[:top]


def confirm(storage_url: str, study_name: str, top: int = 3, seeds: int = 3,
            on_run: RunCallback | None = None) -> Confirmation:
    """Train what is missing of the paired runs, store each run, and summarize them all.

    Raises:
        StudyNotFoundError: no study `study_name` in the storage.
        NoResultError: the study has no COMPLETE trial.
        ConfigError: `top` or `seeds` is not positive, or the study has no stored config.
    """
    if top < 1 or seeds < 1:
        raise ConfigError(f"confirm needs --top >= 1 and --seeds >= 1, got {top} and {seeds}")
    study = load_study(storage_url, study_name)
    if "config" not in study.user_attrs:
        raise ConfigError(f"study {study_name!r} has no stored config (user attr 'config'); was it made by `run`?")
    config = config_from_dict(study.user_attrs["config"])
    lams = [CONTROL, *top_lambdas(study, top)]
    seed_list = [config.study.seed + offset for offset in range(seeds)]
    companion = optuna.create_study(study_name=confirm_name(study_name), storage=open_storage(storage_url),
                                    direction="minimize", load_if_exists=True)
    companion.set_user_attr("confirms", study_name)
    fids = _stored_fids(companion.get_trials(deepcopy=False))
    if (CONTROL, config.study.seed) not in fids and (copied := _reusable_control(study, config)) is not None:
        companion.add_trial(copied)
        fids.update(_stored_fids([copied]))
    runs = [(lam, seed) for lam in lams for seed in seed_list]
    if any(run not in fids for run in runs):
        # Data, device and feature network only when something is left to train.
        trainer = _Trainer(config, study.user_attrs.get("fid_protocol"))
    for lam, seed in runs:
        stored = (lam, seed) in fids
        if not stored:
            fids[lam, seed] = trainer.train_and_store(companion, lam, seed)
        if on_run is not None:
            on_run(lam, seed, fids[lam, seed], stored)
    return summarize(study_name, lams, seed_list, fids)


def load_confirmation(storage: str | BaseStorage, study_name: str) -> Confirmation | None:
    """The confirmation of `study_name` from the runs stored in ``<name>.confirm``, training nothing.

    Args:
        storage: a storage URL, or the storage of an open study.

    Returns:
        None when there is no companion study, or it holds no finished run of λ = 0.
    """
    if isinstance(storage, str):
        storage = open_storage(storage)
    if confirm_name(study_name) not in optuna.get_all_study_names(storage):
        return None
    companion = optuna.load_study(study_name=confirm_name(study_name), storage=storage)
    fids = _stored_fids(companion.get_trials(deepcopy=False))
    if not any(lam == CONTROL and math.isfinite(fid) for (lam, _), fid in fids.items()):
        return None
    lams = sorted({lam for lam, _ in fids})
    seeds = sorted({seed for _, seed in fids})
    return summarize(study_name, lams, seeds, fids)


def summarize(study_name: str, lams: list[float], seeds: list[int],
              fids: dict[tuple[float, int], float]) -> Confirmation:
    """Intervals from the runs' FIDs (NaN for a diverged run, which is left out of the statistics)."""
    finished = {lam: {seed: fids[lam, seed] for seed in seeds
                      if (lam, seed) in fids and math.isfinite(fids[lam, seed])} for lam in lams}
    for lam, by_seed in finished.items():
        if not by_seed:
            raise NoResultError(f"λ = {lam:.6g}: every confirmation run diverged; no FID to compare")
    control = finished[CONTROL]

    def result(lam: float) -> LambdaResult:
        by_seed = finished[lam]
        paired = [seed for seed in seeds if seed in by_seed and seed in control]
        difference = (paired_difference([by_seed[s] for s in paired], [control[s] for s in paired])
                      if lam != CONTROL and paired else None)
        return LambdaResult(lam, by_seed, mean_interval(list(by_seed.values())), difference)

    candidates = sorted((result(lam) for lam in lams if lam != CONTROL), key=lambda r: r.interval.mean)
    return Confirmation(study_name, seeds, result(CONTROL), candidates)


def verdict(confirmation: Confirmation) -> str:
    """One line: which λ is best, by how much, and whether it beats λ = 0 beyond noise."""
    best = confirmation.best
    n = len(confirmation.seeds)
    if best.lam == CONTROL:
        return (f"no λ beats λ = 0 on average over {n} seed(s): the control has the lowest mean FID "
                f"({best.interval.mean:.4f}); weight decay does not help here")
    difference = best.difference
    if difference is None:
        return f"λ = {best.lam:.6g} has the lowest mean FID, but no seed finished both it and λ = 0: no comparison"
    gain = -difference.mean
    if excludes_zero(difference):
        return (f"λ = {best.lam:.6g} is best: FID {gain:.4f} lower than λ = 0 (95% CI of the difference "
                f"[{difference.low:.4f}, {difference.high:.4f}], {difference.n} paired seeds), beyond noise")
    return (f"λ = {best.lam:.6g} is best: FID {gain:.4f} lower than λ = 0 on average, but the 95% CI of the "
            f"difference [{difference.low:.4f}, {difference.high:.4f}] holds 0 ({difference.n} paired seeds): "
            f"within noise")


def _reusable_control(study: optuna.Study, config: StudyConfig) -> FrozenTrial | None:
    """The sweep's λ = 0 control as a confirmation run with the study seed, if it is a clean one.

    Clean: COMPLETE with a finite FID, trained with the study seed, exactly the study's
    stored config and FID protocol, on the device this confirmation trains on, and in
    one piece (not resumed from a checkpoint). Otherwise λ = 0 is trained here as usual.
    """
    control = load_control(study)
    fid = control_fid(control)
    if control is None or fid is None:
        return None
    attrs = control.user_attrs
    if (attrs.get("seed") != config.study.seed or attrs.get("config") != study.user_attrs.get("config")
            or attrs.get("fid_protocol") != study.user_attrs.get("fid_protocol")
            or attrs.get("device") != str(resolve_device(config.train.device)) or "resumed_from_step" in attrs):
        return None
    # What a run trained here stores (`_Trainer.train_and_store`), KID included when the control has one.
    kept = ("seed", "fid_protocol", "config", "device", "kid", "kid_std", "kid_protocol")
    user_attrs: dict[str, Any] = {key: attrs[key] for key in kept if key in attrs}
    user_attrs["copied_from"] = f"{control_name(study.study_name)} trial {control.number}"
    return create_trial(value=fid, params={PARAM: CONTROL},
                        distributions={PARAM: FloatDistribution(0.0, config.search.lambda_high)}, user_attrs=user_attrs)


def _stored_fids(trials: list[FrozenTrial]) -> dict[tuple[float, int], float]:
    """(λ, seed) → FID of the runs already stored; NaN for one that diverged (FAIL with a seed)."""
    stored: dict[tuple[float, int], float] = {}
    for trial in trials:
        if PARAM not in trial.params or "seed" not in trial.user_attrs:
            continue
        key = (float(trial.params[PARAM]), int(trial.user_attrs["seed"]))
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            stored[key] = trial.value
        elif trial.state == TrialState.FAIL and "diverged" in trial.user_attrs:
            stored[key] = math.nan
    return stored


class _Trainer:
    """What every run of a confirmation shares: the study's config, data and FID scorer on the device."""

    def __init__(self, config: StudyConfig, study_protocol: object) -> None:
        self.config = config
        self.device = resolve_device(config.train.device)
        self.data = load_images(config.data).to(self.device)
        self.scorer = FidScorer(config.fid, self.data, self.device)
        self.protocol = self.scorer.protocol.to_dict()
        if study_protocol is not None and study_protocol != self.protocol:
            raise ConfigError(f"the study scored FID with {study_protocol}; here it would be {self.protocol}: "
                              "FIDs of different protocols do not compare")

    def train_and_store(self, companion: optuna.Study, lam: float, seed: int) -> float:
        """Train one run as the sweep trains a trial (same loop, config and steps), score it, store it."""
        config, device = self.config, self.device
        state = new_state(config.train, self.data.shape, seed, device)
        user_attrs = {"seed": seed, "fid_protocol": self.protocol, "config": config.to_dict(),
                      "device": str(device)}
        # λ = 0 must be representable, so in this study the range starts at 0 and is not log-scaled.
        distribution = FloatDistribution(0.0, max(config.search.lambda_high, lam))
        try:
            train(state, self.data, config.train, lam, config.train.steps)
        except Diverged as diverged:
            companion.add_trial(create_trial(state=TrialState.FAIL, params={PARAM: lam},
                                             distributions={PARAM: distribution},
                                             user_attrs={**user_attrs, "diverged": str(diverged)}))
            return math.nan
        noise = fixed_noise(config.fid.n_samples, config.train.latent_dim, seed, device)
        scores = self.scorer.scores(state.generator, noise, kid=True)
        user_attrs.update(kid=scores.kid, kid_std=scores.kid_std, kid_protocol=self.scorer.kid.protocol.to_dict())
        companion.add_trial(create_trial(value=scores.fid, params={PARAM: lam}, distributions={PARAM: distribution},
                                         user_attrs=user_attrs))
        return scores.fid
