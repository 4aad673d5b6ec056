"""Facts the write side (sweep, gan) and the read side (results, cli) share: one place each.

Imports nothing: the CLI reads its defaults from here before it knows the command.
"""

from __future__ import annotations

# The Optuna parameter every trial of a study, its control and its confirmation runs carry: λ.
PARAM = "lambda"
# λ of the control run, the baseline every λ is compared with.
CONTROL = 0.0

# The two FIDs of a trial (user attrs, curve columns and `[study] objective` values): the live
# generator's, and its exponential moving average's (`[train] ema`). The objective's is the trial's value.
FID = "fid"
FID_EMA = "fid_ema"
# Each `[study] objective` as the dashboard labels a study's objective.
OBJECTIVE_NAMES = {FID: "FID", FID_EMA: "FID (EMA generator)"}
# The two generators a FID or KID is of, as the export's `kid.generator` names them; the one each
# `[study] objective` judges; and how pages name them.
LIVE_GENERATOR = "live"
EMA_GENERATOR = "ema"
JUDGED_GENERATOR = {FID: LIVE_GENERATOR, FID_EMA: EMA_GENERATOR}
GENERATOR_NAMES = {LIVE_GENERATOR: "live generator", EMA_GENERATOR: "EMA generator"}
# User attr: every evaluation of a trial, [{"step": s, "fid": …, "fid_ema": …}] (fid_ema when ema is on).
EVALUATIONS = "fid_evaluations"

# A trial's files, uploaded as Optuna artifacts: its sample grid and its curves.
SAMPLES_FILE = "samples.png"
CURVES_FILE = "curves.csv"
CURVE_COLUMNS = ("step", "generator_loss", "discriminator_loss", "generator_penalty", FID, FID_EMA)

DASHBOARD_HOST = "127.0.0.1"  # the dashboard shows every study of the storage: never expose it unless asked
DASHBOARD_PORT = 8080


# Suffixes of a study's companion studies in the same storage: its λ = 0 control, its
# confirmation runs, and (in storages written before the claim moved into the proxy) the worker
# lock's token study. A study name never ends in one (`config` refuses it), so a user's study
# can never be taken for another's companion.
CONTROL_SUFFIX = ".control"
CONFIRM_SUFFIX = ".confirm"
LOCK_SUFFIX = ".lock"
COMPANION_SUFFIXES = (CONTROL_SUFFIX, CONFIRM_SUFFIX, LOCK_SUFFIX)


def control_name(study_name: str) -> str:
    """The companion study that holds a sweep's λ = 0 control run."""
    return study_name + CONTROL_SUFFIX


def confirm_name(study_name: str) -> str:
    """The companion study that holds a sweep's confirmation runs."""
    return study_name + CONFIRM_SUFFIX


# The user attr (of a study, its trials and its export) naming the networks trained: `[model] factory`
# and its version (see `gan.factory`); a study refuses a worker whose model differs.
MODEL = "model"
# The version the built-in DCGAN (`[model] factory = ""`) is stored under.
BUILTIN_MODEL = "built-in DCGAN"


def builtin_model() -> dict[str, str]:
    """The stored identity of the built-in DCGAN; studies and exports made before `[model]` existed trained it."""
    return {"factory": "", "version": BUILTIN_MODEL}


# The race's budget floors (`sweep.race.rule`), here because `config` refuses a study file below them.
# The fewest fresh seeds its verdict takes.
MIN_VERDICT_SEEDS = 3
# The smallest budget: the verdict's runs plus λ = 0 and one λ in the search.
MIN_RUNS = 2 * MIN_VERDICT_SEEDS + 2
# The fewest search runs a study file's own `verdict_seeds` may leave: λ = 0 and three λ, the
# fewest the curve is fitted through (`metrics.curve.MIN_RUNS_TO_FIT`).
MIN_SEARCH_RUNS = 4


# `fail_reason` of a trial handed back for retry (SIGTERM/SIGINT): not a failure of its λ.
PREEMPTED = "preempted"
# System attribute of a preempted trial's copy (`storage.hand_back`): the number of the trial it
# replaces. A RUNNING trial that has such a copy was handed back, whatever state it was left in.
PREEMPTED_TRIAL = "preempted_trial"
