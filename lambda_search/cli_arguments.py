"""The command line's shared arguments and their checks: bad input is refused while parsing, exit 2."""

from __future__ import annotations

import argparse
import os

from lambda_search.names import COMPANION_SUFFIXES

STORAGE_VARIABLE = "LAMBDA_SEARCH_STORAGE"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def seed_count(text: str) -> int:
    from lambda_search.metrics.stats import SEED_LIMIT

    value = positive_int(text)
    if value > SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"at most {SEED_LIMIT:,} seeds, got {value:,}")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def storage_url(text: str) -> str:
    from lambda_search.storage_url import storage_url_problem  # sqlalchemy: not for `--help`

    if (problem := storage_url_problem(text)) is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def own_study(name: str) -> str:
    """A study name that is not a companion's (`names.COMPANION_SUFFIXES`)."""
    if name.endswith(COMPANION_SUFFIXES):
        own = name.rsplit(".", 1)[0]
        raise argparse.ArgumentTypeError(f"{name!r} is a companion of study {own!r} (its λ = 0 control, confirmation "
                                         f"runs or lock), not a study of its own: give --study {own}")
    return name


def override_arguments(parser: argparse.ArgumentParser) -> None:
    """The study file's overrides, the same for `run` and `check`: --storage, --study, --n-trials, --device."""
    parser.add_argument("--storage", default=os.environ.get(STORAGE_VARIABLE),
                        help=f"override [study] storage (default: ${STORAGE_VARIABLE} when set)")
    parser.add_argument("--study", help="override [study] name")
    parser.add_argument("--n-trials", type=int, help="override [study] n_trials")
    parser.add_argument("--device", help="override [train] device: auto, cpu, cuda, cuda:N")


def storage_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """--storage, defaulting to $LAMBDA_SEARCH_STORAGE: a password there stays out of `ps` and shell history."""
    from_environment = os.environ.get(STORAGE_VARIABLE)
    parser.add_argument("--storage", type=storage_url, default=from_environment, required=from_environment is None,
                        help=f"{help} (default: ${STORAGE_VARIABLE})")


def study_arguments(parser: argparse.ArgumentParser, companions: bool = True) -> None:
    """--storage and --study; with `companions` False, --study refuses a companion study's name (`own_study`)."""
    storage_argument(parser, "storage URL, e.g. sqlite:///studies/quickstart.db")
    parser.add_argument("--study", required=True, type=str if companions else own_study, help="study name")
