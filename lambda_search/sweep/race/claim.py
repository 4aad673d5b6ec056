"""The race's claim: its next run decided and started in one transaction under the study's lock. No torch.

`claim.claim_one` runs the claim: stale runs of the race study and its ``.control`` are failed
and their retries queued, a WAITING copy (a retry or a hand-back) is started first, else the
run `rule.next_run` decides, written whole (λ when the rule fixes it, seed and role) before the
commit. A worker whose session is lost mid-claim loses the run with it; none is ever started
from a stale count. A proposed λ is sampled after the commit (`claim.start_trials`), as a
sweep's is. Through a gRPC proxy the same claim runs inside the proxy (`proxy_server`).
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from lambda_search.names import CONTROL, PARAM
from lambda_search.records import keys
from lambda_search.sweep.objective import distribution_with_zero, search_distribution
from lambda_search.sweep.race.rule import SEARCH, Done, Propose, Repeat, next_run
from lambda_search.sweep.race.runs import race_runs
from lambda_search.sweep.storage import claim


@dataclass(frozen=True)
class RaceRules:
    """What the race's rule and its λ distributions need of the study file."""

    n_trials: int
    seed: int
    verdict_seeds: int
    lambda_low: float
    lambda_high: float


@dataclass(frozen=True)
class ClaimedRun:
    """What one race claim started: trial `trial_id` of the race study or of its control (`control`).

    `trial_id` is None when it started nothing: every run of the budget is finished
    (`finished`), or the runs in progress elsewhere decide what comes next.
    """

    trial_id: int | None
    control: bool = False
    finished: bool = False


def claim_run(database: RDBStorage, study: optuna.Study, control: optuna.Study, rules: RaceRules,
              grace_seconds: float, retry: RetryHeartbeatStaleTrialCallback) -> ClaimedRun:
    """Start the race's next run (`claim.claim_one` over the study and its control)."""
    finished = False

    def decide() -> tuple[int, claim.NewTrial] | None:
        nonlocal finished
        runs = race_runs(study, control)
        action = next_run(runs, rules.n_trials, rules.seed, rules.verdict_seeds)
        if isinstance(action, Propose):
            return 0, claim.NewTrial({}, {keys.SEED: action.seed, keys.ROLE: SEARCH})
        if isinstance(action, Repeat):
            in_control = action.lam == CONTROL
            distribution = (distribution_with_zero(rules.lambda_high) if in_control
                            else search_distribution(rules.lambda_low, rules.lambda_high))
            fixed = (action.lam, distribution)
            return int(in_control), claim.NewTrial({PARAM: fixed}, {keys.SEED: action.seed, keys.ROLE: action.role})
        finished = isinstance(action, Done) and all(run.finished for run in runs)
        return None

    started = claim.claim_one(database, [study, control], decide, grace_seconds, retry)
    if started is None:
        return ClaimedRun(None, finished=finished)
    index, trial_id = started
    return ClaimedRun(trial_id, control=index == 1)
