"""Confirm a sweep: re-train its top λ values and λ = 0 on fresh seeds, paired, and test each against λ = 0.

The best trial of a sweep is one seed at one λ, and GAN training is noisy: it is
often luck. `confirm` takes the top-k distinct λ of the study's COMPLETE trials
plus the λ = 0 control, trains each with the seeds ``study.seed + 1 … study.seed + n``
(the same seeds for every λ: paired; never the study seed, which selected the λ —
see `results.confirmation`), and stores every run as a trial of the companion study
``<name>.confirm`` in the same storage. Runs already stored are skipped: re-running
`confirm` resumes where an interrupted one stopped. The sweep's own λ = 0 control
ran with the study seed, so it is not a confirmation run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from lambda_search.config import StudyConfig
from lambda_search.data import load_images
from lambda_search.errors import ConfigError, NoResultError
from lambda_search.gan.ema import generator_scores
from lambda_search.gan.factory import load_model
from lambda_search.gan.train import Diverged, configure_torch, fixed_noise, new_state, train
from lambda_search.metrics.fid import FidScorer
from lambda_search.metrics.stats import DIVERGED, min_seeds
from lambda_search.names import CONTROL, FID, MODEL, PARAM, builtin_model, confirm_name
from lambda_search.records import keys
from lambda_search.records.confirmation import Confirmation, confirmation_seeds, stored_fids, summarize
from lambda_search.records.trials import protocol_differences, protocol_fields, stored_config
from lambda_search.sweep.objective import create_study, distribution_with_zero
from lambda_search.sweep.storage import load_study, open_storage
from lambda_search.sweep.trial import kid_attrs

# Told for each run as it is trained or found stored: (λ, seed, FID or +inf if it diverged, was it stored already).
RunCallback = Callable[[float, int, float, bool], None]


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


def confirm(storage_url: str, study_name: str, top: int = 3, seeds: int | None = None,
            on_run: RunCallback | None = None) -> Confirmation:
    """Train what is missing of the paired runs on seeds study.seed + 1 … + `seeds`, store each, summarize them all.

    `seeds` defaults to the fewest with which the exact Wilcoxon shown beside the rule can
    reach p < α after Holm's correction over `top` λ (`min_seeds`); the verdict line says
    what effect that many seeds could detect.

    Raises:
        StudyNotFoundError: no study `study_name` in the storage.
        NoResultError: the study has no COMPLETE trial, or every confirmation run diverged.
        ConfigError: `top` or `seeds` is not positive.
        NoResultError: the study has no stored config (it was not made by `lambda-search run`).
    """
    if seeds is None:
        seeds = min_seeds(top)
    if top < 1 or seeds < 1:
        raise ConfigError(f"confirm needs --top >= 1 and --seeds >= 1, got {top} and {seeds}")
    study = load_study(storage_url, study_name)
    config = stored_config(study.user_attrs, f"study {study_name!r}")
    lams = [CONTROL, *top_lambdas(study, top)]
    seed_list = confirmation_seeds(config.study.seed, seeds)
    companion = create_study(confirm_name(study_name), open_storage(storage_url), config.study.objective)
    companion.set_user_attr(keys.CONFIRMS, study_name)
    _check_objective(companion, config)
    fids = stored_fids(companion.get_trials(deepcopy=False))
    runs = [(lam, seed) for lam in lams for seed in seed_list]
    if any(run not in fids for run in runs):
        # Data, device and feature network only when something is left to train.
        attrs = study.user_attrs
        trainer = _Trainer(config, attrs.get(keys.FID_PROTOCOL), attrs.get(MODEL, builtin_model()))
    for lam, seed in runs:
        stored = (lam, seed) in fids
        if not stored:
            fids[lam, seed] = trainer.train_and_store(companion, lam, seed)
        if on_run is not None:
            on_run(lam, seed, fids[lam, seed], stored)
    return summarize(study_name, lams, seed_list, fids, config.study.seed)


def _check_objective(companion: optuna.Study, config: StudyConfig) -> None:
    """The confirmation judges the study's objective; runs stored for another (or no EMA) are not mixed in.

    Raises:
        ConfigError: the companion study's runs were scored for another objective or EMA decay.
    """
    measurement = {"objective": config.study.objective, "ema": config.train.ema}
    # A confirmation stored before the EMA existed judged the live FID without an average.
    stored = companion.user_attrs.get(keys.MEASUREMENT, {"objective": FID, "ema": 0.0})
    if companion.get_trials(deepcopy=False) and stored != measurement:
        differing = [key for key in measurement if stored.get(key) != measurement[key]]
        raise ConfigError(f"study {companion.study_name!r} holds runs scored with {differing[0]} = "
                          f"{stored.get(differing[0])!r}; this study judges {measurement[differing[0]]!r}: "
                          "delete that confirmation study to confirm again")
    companion.set_user_attr(keys.MEASUREMENT, measurement)


class _Trainer:
    """What every run of a confirmation shares: the study's config, data and FID scorer on the device."""

    def __init__(self, config: StudyConfig, study_protocol: dict[str, Any] | None, study_model: object) -> None:
        self.config = config
        self.model = load_model(config.model)
        if study_model != self.model.identity:
            raise ConfigError(f"the study trained the model {study_model}; here [model] factory gives "
                              f"{self.model.identity}: FIDs of different networks do not compare")
        # Device, and the study's thread count: a run repeats its FID only at the same count (`train` repeats it).
        self.device = configure_torch(config.train)
        self.data = load_images(config.data).to(self.device)
        self.scorer = FidScorer(config.fid, self.data, self.device)
        self.protocol = self.scorer.protocol.to_dict()
        if study_protocol is not None and (differing := protocol_differences(study_protocol, self.protocol)):
            raise ConfigError(f"the study scored FID with {protocol_fields(study_protocol, differing)}; here it "
                              f"would be {protocol_fields(self.protocol, differing)}: FIDs of different protocols "
                              "do not compare")

    def train_and_store(self, companion: optuna.Study, lam: float, seed: int) -> float:
        """Train one run as the sweep trains a trial (same loop, config and steps), score it, store it."""
        config, device = self.config, self.device
        state = new_state(config.train, self.data.shape, seed, device, self.model)
        user_attrs = {keys.SEED: seed, keys.FID_PROTOCOL: self.protocol, keys.CONFIG: config.to_dict(),
                      keys.DEVICE: str(device), MODEL: self.model.identity}
        distribution = distribution_with_zero(max(config.search.lambda_high, lam))
        try:
            train(state, self.data, config.train, lam, config.train.steps)
        except Diverged as diverged:
            return self._store_diverged(companion, lam, distribution, user_attrs, str(diverged))
        noise = fixed_noise(config.fid.n_samples, config.train.latent_dim, seed, device)
        scores = generator_scores(self.scorer, state, config, seed, noise, kid=True)
        fids = scores.fids
        user_attrs.update({**fids, **kid_attrs(scores), keys.KID_PROTOCOL: self.scorer.kid.protocol.to_dict()})
        value = fids[config.study.objective]  # what the study judges (`[study] objective`)
        if not math.isfinite(value):
            return self._store_diverged(companion, lam, distribution, user_attrs, f"{config.study.objective} = {value}")
        companion.add_trial(create_trial(value=value, params={PARAM: lam}, distributions={PARAM: distribution},
                                         user_attrs=user_attrs))
        return value

    @staticmethod
    def _store_diverged(companion: optuna.Study, lam: float, distribution: FloatDistribution,
                        user_attrs: dict[str, Any], reason: str) -> float:
        companion.add_trial(create_trial(state=TrialState.FAIL, params={PARAM: lam},
                                         distributions={PARAM: distribution},
                                         user_attrs={**user_attrs, keys.DIVERGED: reason}))
        return DIVERGED
