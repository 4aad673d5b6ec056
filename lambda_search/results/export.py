"""The best λ of a study, with everything needed to reproduce it, as YAML or JSON.

`best_config` is pure (study in, `records.export.Export` out); `write_export` is the one
writer, of `Export.to_dict()`. `records.export.load_export` reads it back (`train`,
`lambda_search.load_export`).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial

from lambda_search import __version__
from lambda_search._files import write_atomically
from lambda_search.errors import ConfigError, NoResultError
from lambda_search.metrics.stats import ALPHA, CONFIDENCE, POWER, RULE
from lambda_search.names import MODEL, PARAM, builtin_model, confirm_name, control_name
from lambda_search.records import keys
from lambda_search.records.confirmation import Confirmation, LambdaResult, verdict
from lambda_search.records.export import Export
from lambda_search.records.export_sections import (
    ConfirmationSection,
    ConfirmedLambda,
    ControlRun,
    Fid,
    Kid,
    LambdaDifference,
    RaceDifference,
    RaceSection,
    StudyReference,
)
from lambda_search.records.trials import best_trial, comparison, control_fid, judged_kid, stored_config
from lambda_search.results.confirmation import load_confirmation
from lambda_search.storage_url import mask_password
from lambda_search.sweep.companions import load_control
from lambda_search.sweep.race.rule import Verdict, verdict_line
from lambda_search.sweep.race.runs import is_race, race_verdict
from lambda_search.sweep.storage import load_study

FORMATS = ("yaml", "json")
PACKAGES = ("torch", "optuna", "torchmetrics")
# Until a later step re-trains the best λ with other seeds, it is one sweep's winner.
UNCONFIRMED_NOTE = ("unconfirmed: the best FID of one sweep, from one training run per λ; "
                    "FID differences between close λ may be noise")


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on, as installed here."""
    versions = {name: metadata.version(name) for name in PACKAGES}
    versions["lambda-search"] = __version__
    return versions


def export_study(storage_url: str, study_name: str) -> Export:
    """The export of a stored study (`best_config`), with its race's verdict or its λ = 0 run, and its confirmation.

    Raises:
        NoResultError: no trial of the study completed.
    """
    study = load_study(storage_url, study_name)
    confirmation = load_confirmation(storage_url, study_name)  # `confirm` of a sweep or of a race
    if is_race(study):  # its λ = 0 runs are the race's, in its verdict: no single control run to show
        return best_config(study, storage_url, confirmation, race=race_verdict(study))
    return best_config(study, storage_url, confirmation, load_control(study))


def best_config(study: optuna.Study, storage_url: str, confirmation: Confirmation | None = None,
                control: FrozenTrial | None = None, race: Verdict | None = None) -> Export:
    """The export of a study's best trial: λ, its FID and protocol, and the whole config.

    `control` (`sweep.companions.load_control`) is the study's λ = 0 run; its FID and how the
    sweep's best compares with it go under `control` (None without one).

    `verdict` is the one-line judgement of λ against λ = 0 and `fresh_seeds` whether it was
    made on runs whose seeds did not select the λ (a race's verdict or a confirmation): a
    sweep's best is one run per λ, "unconfirmed".

    With a race's `race` verdict (`race.runs.race_verdict`), the λ exported is the race's
    incumbent, `fid.value` its mean FID on the fresh verdict seeds, and `race` holds the
    verdict's figures.

    With a `confirmation` (`confirmation.load_confirmation`), of a sweep or a race, the λ
    exported is its winner (λ = 0 when no decayed λ has a lower mean FID), `fid.value` that
    λ's mean FID, and `confirmation` holds every λ's interval and its tests against λ = 0
    (`confirmation.beyond_noise`: whether any λ beats λ = 0 beyond noise). It is the last
    word: `confirm` ran after the sweep or race, on more runs; a race's own verdict stays
    under `race`.

    Raises:
        NoResultError: no trial of the study completed.
    """
    best = best_trial(study)
    if best is None:
        raise NoResultError(f"study {study.study_name!r} has no complete trial to export; "
                            "run `lambda-search run` until one completes")
    config = stored_config(best.user_attrs, f"trial {best.number} of study {study.study_name!r}")
    protocol = dict(best.user_attrs.get(keys.FID_PROTOCOL, {}))
    export = Export(
        lam=best.params[PARAM],
        verdict=UNCONFIRMED_NOTE,
        fresh_seeds=False,
        study=StudyReference(study.study_name, mask_password(storage_url), best.number),
        fid=Fid(best.value, protocol),
        kid=_kid(best, config.study.objective),
        seed=best.user_attrs.get(keys.SEED, config.study.seed),
        # The networks: a trial made before `[model]` existed trained the built-in DCGAN.
        model=best.user_attrs.get(MODEL, builtin_model()),
        versions=package_versions(),
        config=config,
        control=None if control is None else ControlRun(
            control_fid(control), control.state.name, control_name(study.study_name), control.number,
            comparison(best.value, control)),
    )
    if race is not None:
        export = replace(export, lam=race.lam, verdict=verdict_line(race), fresh_seeds=True,
                         fid=Fid(race.mean_fid, protocol), kid=None, seed=race.verdict_seeds[0],
                         race=_race_section(race))
    if confirmation is not None:
        winner = confirmation.best
        # The sweep trial's KID is one run, maybe of another λ: it does not describe this winner.
        export = replace(export, lam=winner.lam, verdict=verdict(confirmation), fresh_seeds=True,
                         fid=Fid(winner.interval.mean, protocol), kid=None, seed=confirmation.seeds[0],
                         confirmation=_confirmation_section(confirmation))
    return export


def _kid(trial: FrozenTrial, objective: str) -> Kid | None:
    """The trial's KID of the generator `objective` judges (`records.trials.judged_kid`); None if it has none."""
    kid = judged_kid(trial.user_attrs, objective)
    if kid is None:
        return None
    return Kid(kid.value, kid.std, trial.user_attrs.get(keys.KID_PROTOCOL, {}), kid.generator)


def _race_section(race: Verdict) -> RaceSection:
    """The race's pre-registered comparison: incumbent − λ = 0 on the fresh verdict seeds."""
    return RaceSection(
        seeds=race.verdict_seeds,
        fid_by_seed={int(seed): fid for seed, fid in zip(race.verdict_seeds, race.fids, strict=True)},
        control_fid_by_seed={int(seed): fid for seed, fid in zip(race.verdict_seeds, race.control_fids,
                                                                 strict=True)},
        control_fid=race.control_mean_fid,
        confidence=CONFIDENCE,
        difference_to_control=RaceDifference(race.interval, race.wilcoxon_p, race.beyond_noise,
                                             _finite(race.detectable), POWER, RULE),
    )


def _finite(value: float) -> float | None:
    """`value`, or None where it is infinite (YAML and JSON have no infinity): a detectable effect with 1 seed."""
    return value if math.isfinite(value) else None


def _confirmed_lambda(result: LambdaResult) -> ConfirmedLambda:
    test = result.test
    return ConfirmedLambda(
        lam=result.lam,
        # None for a run that diverged
        fid_by_seed={int(seed): fid if math.isfinite(fid) else None for seed, fid in result.fids.items()},
        fid=result.interval,
        diverged=result.diverged,
        difference_to_control=None if test is None else LambdaDifference(
            test.difference, test.confidence, test.t_p, test.t_p_holm, test.wilcoxon_p, test.wilcoxon_p_holm,
            test.m, test.beyond_noise, _finite(test.detectable)),
    )


def _confirmation_section(confirmation: Confirmation) -> ConfirmationSection:
    """Every λ of a confirmation with its intervals and tests against λ = 0, the control first."""
    return ConfirmationSection(
        study=confirm_name(confirmation.study),
        seeds=confirmation.seeds,
        selection_seed=confirmation.selection_seed,
        ignored_selection_seed_runs=confirmation.ignored,
        confidence=CONFIDENCE,
        alpha=ALPHA,
        m=confirmation.m,
        beyond_noise=confirmation.winner is not None,
        rule=RULE,
        diverged_stand_in_fid=confirmation.worst,
        lambdas=[_confirmed_lambda(result) for result in [confirmation.control, *confirmation.candidates]],
    )


def export_lines(export: Export, path: str) -> list[str]:
    """What an export written to `path` holds, in a line or two: λ, its FID and the verdict, and λ = 0's run."""
    if export.fresh_seeds:
        lines = [f"wrote {path}: λ = {export.lam:.6g} (mean FID {export.fid.value:.4f} on fresh seeds); "
                 f"{export.verdict}"]
    else:
        lines = [f"wrote {path}: λ = {export.lam:.6g} (trial {export.study.trial}, FID {export.fid.value:.4f}); "
                 f"{export.verdict}"]
    if export.control is not None:
        lines.append(export.control.note)
    return lines


def dumps(export: Export, format: str) -> str:
    """The export as text in `format` (yaml or json).

    Raises:
        ConfigError: an unknown format.
    """
    data = export.to_dict()
    if format == "yaml":
        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    if format == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    raise ConfigError(f"export format {format!r} is not one of: {', '.join(FORMATS)}")


def write_export(export: Export, path: Path, format: str = "yaml") -> None:
    """Write an export to `path` atomically, as YAML (default) or JSON."""
    text = dumps(export, format)
    write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))
