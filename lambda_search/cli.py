"""The `lambda-search` command: a thin shell over the Python API.

The only module that prints and exits. Every LambdaSearchError becomes one line
on stderr and exit code 2 (bad input) or 1 (run time); tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType

from lambda_search import __version__
from lambda_search.errors import Interrupted, LambdaSearchError

log = logging.getLogger("lambda_search")


class _TqdmProgress:
    def __init__(self, bar: object) -> None:
        self._bar = bar

    def update(self, step: int, losses: dict[str, float]) -> None:
        bar = self._bar
        bar.n = step  # type: ignore[attr-defined]
        bar.set_postfix(G=f"{losses['generator_loss']:.3f}", D=f"{losses['discriminator_loss']:.3f}")  # type: ignore[attr-defined]


class _LogProgress:
    """Five log lines per trial where there is no terminal to draw a bar on."""

    def __init__(self, number: int, total: int) -> None:
        self._number = number
        self._every = max(1, total // 5)
        self._next = self._every

    def update(self, step: int, losses: dict[str, float]) -> None:
        if step >= self._next:
            self._next += self._every
            log.info("trial %d step %d: G %.3f D %.3f", self._number, step,
                     losses["generator_loss"], losses["discriminator_loss"])


@contextlib.contextmanager
def _progress(number: int, lam: float, total: int) -> Iterator[_TqdmProgress | _LogProgress]:
    if not sys.stderr.isatty():
        yield _LogProgress(number, total)
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=f"trial {number} λ={lam:.2e}", unit="step", leave=False) as bar:
        yield _TqdmProgress(bar)


def _cmd_run(args: argparse.Namespace) -> int:
    from lambda_search.config import load_config
    from lambda_search.study import run

    config = load_config(args.study_file)
    overrides = {
        "study": {k: v for k, v in {"storage": args.storage, "name": args.study,
                                    "n_trials": args.n_trials}.items() if v is not None},
        "train": {"device": args.device} if args.device else {},
    }
    config = config.with_overrides(**overrides)
    summary = run(config, progress=_progress)
    if summary.trained == 0:
        print(f"study {config.study.name!r} already holds {summary.finished} finished trials "
              f"(n_trials = {summary.n_trials}); nothing to train")
    else:
        print(f"trained {summary.trained} trial(s); the study holds {summary.finished}/{summary.n_trials}")
    if summary.best_lambda is not None:
        print(f"best λ = {summary.best_lambda:.6g} with FID {summary.best_value:.4f}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from lambda_search.report import trial_table
    from lambda_search.study import load_study

    rows = trial_table(load_study(args.storage, args.study))
    header = f"{'trial':>5}  {'state':<8}  {'lambda':>10}  {'FID':>10}  {'steps':>6}  {'seconds':>8}"
    print(header)
    for row in rows:
        fid = f"{row.fid:10.4f}" if row.fid is not None else f"{'-':>10}"
        lam = f"{row.lam:10.4g}" if row.lam is not None else f"{'-':>10}"
        steps = f"{row.steps:6d}" if row.steps is not None else f"{'-':>6}"
        seconds = f"{row.seconds:8.1f}" if row.seconds is not None else f"{'-':>8}"
        print(f"{row.number:>5}  {row.state:<8}  {lam}  {fid}  {steps}  {seconds}")
    return 0


def _study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", required=True, help="storage URL, e.g. sqlite:///studies/quickstart.db")
    parser.add_argument("--study", required=True, help="study name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambda-search", description="Find the weight decay λ of a GAN by FID.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="create or join a study and run trials until it holds n_trials")
    run.add_argument("study_file", help="study file (TOML), e.g. studies/quickstart.toml")
    run.add_argument("--storage", help="override [study] storage")
    run.add_argument("--study", help="override [study] name")
    run.add_argument("--n-trials", type=int, help="override [study] n_trials")
    run.add_argument("--device", help="override [train] device: auto, cpu, cuda, cuda:N")
    run.set_defaults(handler=_cmd_run)

    status = commands.add_parser("status", help="list a study's trials")
    _study_arguments(status)
    status.set_defaults(handler=_cmd_status)
    return parser


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        return int(args.handler(args))
    except LambdaSearchError as error:
        if args.debug:
            raise
        print(f"lambda-search: error: {error}", file=sys.stderr)
        return error.exit_code
    except Interrupted as interrupted:
        print("lambda-search: interrupted; the running trial was marked FAIL", file=sys.stderr)
        return 128 + interrupted.signum
    except KeyboardInterrupt:
        print("lambda-search: interrupted; the running trial was marked FAIL", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def entry_point() -> None:
    sys.exit(main())
