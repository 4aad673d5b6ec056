"""Whether two stored runs of one study file trained and scored the same: every trial, bit for bit.

A refactor that claims "no behaviour change" runs the same study file before and after, each
into its own storage, and compares them here: every trial of the study and of its `.control`
(number, state, λ, seed, role, value, FID, EMA FID, both KIDs, steps) and the race's verdict line.
Timings, hosts and process ids are left out: they differ on every run.

    python bench/same_runs.py sqlite:///before.db sqlite:///after.db --study quickstart

Exits 0 when they match, 1 (listing the differences) when they do not.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import optuna

from lambda_search.names import FID, FID_EMA, PARAM, control_name
from lambda_search.records import keys
from lambda_search.sweep.race.runs import is_race, race_verdict_line

COMPARED_ATTRS = (keys.SEED, keys.ROLE, FID, FID_EMA, keys.KID, keys.KID_EMA, keys.STEPS)


def stored_runs(storage_url: str, study_name: str) -> dict[str, Any]:
    """What a study and its control trained and scored, keyed by study and trial number."""
    rows: dict[str, Any] = {}
    for name in (study_name, control_name(study_name)):
        try:
            study = optuna.load_study(study_name=name, storage=storage_url)
        except KeyError:
            continue
        for trial in study.get_trials(deepcopy=False):
            attrs = {key: trial.user_attrs.get(key) for key in COMPARED_ATTRS}
            rows[f"{name} trial {trial.number}"] = (trial.state.name, trial.params.get(PARAM), trial.value, attrs)
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    if is_race(study):
        rows["verdict"] = race_verdict_line(study)
    return rows


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    keys_ = sorted({*before, *after})
    return [f"{key}:\n  before {before.get(key)!r}\n  after  {after.get(key)!r}"
            for key in keys_ if before.get(key) != after.get(key)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="storage URL of the first run")
    parser.add_argument("after", help="storage URL of the second run")
    parser.add_argument("--study", required=True)
    args = parser.parse_args()
    before, after = stored_runs(args.before, args.study), stored_runs(args.after, args.study)
    found = differences(before, after)
    for line in found:
        print(line)
    print(f"{len(before)} entries before, {len(after)} after, {len(found)} differ"
          + (f"; verdict: {before.get('verdict')}" if not found and "verdict" in before else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
