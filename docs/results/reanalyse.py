"""The finding's stored confirmations re-read with today's statistics, training nothing.

    python docs/results/reanalyse.py [--storage sqlite:///docs/results/finding.db]

For each study it prints two analyses of the same stored runs:
  as stored: every seed, the selection seed 0 included, as the README's table once did;
  honest:    what `confirm`, `report` and `export` now read (`load_confirmation`): the
             selection seed left out.
Both with the exact Wilcoxon and paired t, Holm-adjusted over the λ tested against λ = 0.
The storage is copied to a temporary file first, so it is only ever read.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import optuna

from lambda_search.metrics.stats import PairedTest, paired_tests
from lambda_search.names import CONTROL, confirm_name
from lambda_search.records.confirmation import Confirmation, verdict
from lambda_search.results.confirmation import load_confirmation

HERE = Path(__file__).parent
STUDIES = ("finding-generator", "finding-discriminator")


def row(lam: float, test: PairedTest) -> str:
    difference = test.difference
    return (f"  λ = {lam:.3g}: difference {difference.mean:+.2f}, {test.confidence:.1%} CI "
            f"[{difference.low:+.2f}, {difference.high:+.2f}], n = {difference.n}; "
            f"Wilcoxon p {test.wilcoxon_p:.4f} (Holm {test.wilcoxon_p_holm:.4f}); "
            f"t p {test.t_p:.4f} (Holm {test.t_p_holm:.4f}); m = {test.m}")


def as_stored(storage: str, study: str) -> list[str]:
    """Every stored seed, the selection seed included: the README's table before the seeds excluded it."""
    trials = optuna.load_study(study_name=confirm_name(study), storage=storage).get_trials(deepcopy=False)
    fids = {(float(trial.params["lambda"]), int(trial.user_attrs["seed"])): float(trial.value)
            for trial in trials if trial.value is not None}
    seeds = sorted({seed for _, seed in fids})
    lams = sorted({lam for lam, _ in fids} - {CONTROL})
    tests = paired_tests([([fids[lam, s] for s in seeds], [fids[CONTROL, s] for s in seeds]) for lam in lams])
    return [row(lam, test) for lam, test in zip(lams, tests, strict=True)]


def honest(confirmation: Confirmation) -> list[str]:
    lines = [row(result.lam, result.test) for result in sorted(confirmation.candidates, key=lambda r: r.lam)
             if result.test is not None]
    return [*lines, f"  ({confirmation.ignored} runs with the selection seed left out) {verdict(confirmation)}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=f"sqlite:///{HERE / 'finding.db'}")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as directory:
        storage = args.storage
        if storage.startswith("sqlite:///"):
            copy = Path(directory) / "finding.db"
            shutil.copyfile(storage.removeprefix("sqlite:///"), copy)
            storage = f"sqlite:///{copy}"
        for study in STUDIES:
            confirmation = load_confirmation(storage, study)
            if confirmation is None:
                print(f"{study}: no confirmation stored")
                continue
            print(f"{study}, as stored (seeds with the selection seed):", *as_stored(storage, study), sep="\n")
            print(f"{study}, honest (seeds {confirmation.seeds}):", *honest(confirmation), sep="\n")


if __name__ == "__main__":
    main()
