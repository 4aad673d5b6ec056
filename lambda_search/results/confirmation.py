"""A confirmation read back from ``<name>.confirm`` in the storage, training nothing, and shown as a table. No torch.

What the runs mean (means, tests against λ = 0, the verdict) is `records.confirmation`.
"""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage

from lambda_search.names import CONTROL, confirm_name
from lambda_search.records.confirmation import Confirmation, stored_fids, summarize
from lambda_search.records.trials import study_config
from lambda_search.sweep.storage.read_only import open_read_only


def load_confirmation(storage: str | BaseStorage, study_name: str) -> Confirmation | None:
    """The confirmation of `study_name` from the runs stored in ``<name>.confirm``, training nothing.

    Runs with the study seed (stored by a `confirm` from before seeds excluded it) are
    left out and counted in `Confirmation.ignored`.

    Args:
        storage: a storage URL, or the storage of an open study.

    Returns:
        None when there is no companion study, or it holds no λ = 0 run on a seed other than the study's.

    Raises:
        NoResultError: the sweep has no stored config, or every run of the confirmation diverged.
    """
    if isinstance(storage, str):
        storage = open_read_only(storage)
    if confirm_name(study_name) not in optuna.get_all_study_names(storage):
        return None
    selection_seed = study_config(optuna.load_study(study_name=study_name, storage=storage)).study.seed
    companion = optuna.load_study(study_name=confirm_name(study_name), storage=storage)
    fids = stored_fids(companion.get_trials(deepcopy=False))
    seeds = sorted({seed for _, seed in fids} - {selection_seed})
    if not any((CONTROL, seed) in fids for seed in seeds):
        return None
    return summarize(study_name, sorted({lam for lam, _ in fids}), seeds, fids, selection_seed)


def confirmation_table(result: Confirmation) -> list[str]:
    """The confirmation as a table, one row per λ (the control first), and what its figures mean."""
    lines = [f"{'lambda':>10}  {'mean FID':>10}  {'95% CI':>21}  {'n':>3}  {'div':>3}  {'minus λ=0':>10}  "
             f"{'simultaneous CI':>21}  {'Wilcoxon p':>10}  {'Holm':>6}  {'t p':>8}  {'Holm':>6}"]
    for row in [result.control, *result.candidates]:
        interval, test = row.interval, row.test
        line = (f"{row.lam:10.4g}  {interval.mean:10.4f}  [{interval.low:9.4f}, {interval.high:9.4f}]  "
                f"{interval.n:3d}  {row.diverged:3d}")
        if test is not None:
            difference = test.difference
            line += (f"  {difference.mean:10.4f}  [{difference.low:9.4f}, {difference.high:9.4f}]  "
                     f"{test.wilcoxon_p:10.4f}  {test.wilcoxon_p_holm:6.4f}  {test.t_p:8.4f}  {test.t_p_holm:6.4f}")
        lines.append(line)
    level = next((f"{row.test.confidence:.1%}" for row in result.candidates if row.test is not None), "-")
    lines.append(f"seeds {', '.join(map(str, result.seeds))} (not the selection seed {result.selection_seed}); "
                 f"m = {result.m} λ tested against λ = 0: p two-sided, Holm over m, difference CI at {level} "
                 f"(Bonferroni); a diverged run scores +inf in the Wilcoxon, {result.worst:.4f} (the worst finished) "
                 "in means and t")
    if result.ignored:
        lines.append(f"left out: {result.ignored} stored run(s) with the selection seed {result.selection_seed}, "
                     "from a confirmation made before its seeds excluded it")
    return lines
