"""The `lambda-search` command: a thin shell over the Python API.

The only module that prints and exits. Every LambdaSearchError becomes one line
on stderr and exit code 2 (bad input) or 1 (run time); any other exception (a full
disk, a bug) one line with its type and exit code 1. Tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from lambda_search import __version__
from lambda_search.cli_arguments import (
    STORAGE_VARIABLE,
    override_arguments,
    port,
    positive_int,
    seed_count,
    storage_argument,
    study_arguments,
)
from lambda_search.errors import Interrupted, LambdaSearchError, Preempted
from lambda_search.names import DASHBOARD_HOST, DASHBOARD_PORT
from lambda_search.progress import terminal_progress

if TYPE_CHECKING:
    from lambda_search.config import StudyConfig
    from lambda_search.sweep.study import RunSummary

log = logging.getLogger("lambda_search")


def _study_file_config(args: argparse.Namespace) -> StudyConfig:
    """The study file with the command line's overrides (`cli_arguments.override_arguments`), checked."""
    from lambda_search.config import load_config

    overrides = {
        "study": {k: v for k, v in {"storage": args.storage, "name": args.study,
                                    "n_trials": args.n_trials}.items() if v is not None},
        "train": {"device": args.device} if args.device else {},
    }
    return load_config(args.study_file).with_overrides(**overrides)


def _cmd_run(args: argparse.Namespace) -> int:
    from lambda_search.sweep.study import run

    config = _study_file_config(args)
    summary = run(config, progress=terminal_progress)
    if summary.verdict is not None:
        print(f"trained {summary.trained} run(s) of the race; it holds {summary.finished}/{summary.n_trials} "
              f"finished runs (λ = 0's included)")
        print(summary.verdict)
    else:
        _print_sweep(config, summary)
    _print_next_steps(config)
    return 0


def _print_sweep(config: StudyConfig, summary: RunSummary) -> None:
    from lambda_search.names import control_name
    from lambda_search.records.trials import comparison

    if summary.trained == 0 and summary.control_trained == 0:
        print(f"study {config.study.name!r} already holds {summary.finished} finished trials "
              f"(n_trials = {summary.n_trials}); nothing to train")
    else:
        print(f"trained {summary.trained} trial(s); the study holds {summary.finished}/{summary.n_trials}")
    if summary.control_trained:
        print(f"trained the λ = 0 control (study {control_name(config.study.name)!r})")
    if summary.best_lambda is not None:
        print(f"best λ = {summary.best_lambda:.6g} with FID {summary.best_value:.4f}")
    if config.search.control:
        print(comparison(summary.best_value, summary.control))


def _print_next_steps(config: StudyConfig) -> None:
    from lambda_search.next_steps import run_ending
    from lambda_search.storage_url import artifact_dir

    study = config.study
    for line in run_ending(study.resolved_storage, study.name,
                           artifact_dir(study.resolved_storage, study.name, study.artifacts), STORAGE_VARIABLE):
        print(line)


def _cmd_check(args: argparse.Namespace) -> int:
    from lambda_search.sweep.study import check_input

    device, data, model = check_input(_study_file_config(args))
    networks = model.identity["factory"] or "the built-in DCGAN"
    print(f"{args.study_file}: valid; {len(data.images):,} images of {data.name} on {device}, networks of {networks}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from lambda_search.results.plan import plan

    print("\n".join(plan(args.study_file, args.effect, args.pilot).lines()))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from lambda_search.results.status import status_lines
    from lambda_search.sweep.storage import load_study

    for line in status_lines(load_study(args.storage, args.study), args.workers):
        print(line)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from lambda_search.results.report import write_report
    from lambda_search.sweep.storage import load_study

    if args.compare is not None:
        from lambda_search.results.compare import write_comparison

        compared = write_comparison(args.storage, args.compare, Path(args.output))
        print(f"wrote {args.output}: {len(compared.studies)} studies compared ("
              + ", ".join(f"{study.name}: {len(study.points)} finished" for study in compared.studies) + ")")
        return 0
    data = write_report(load_study(args.storage, args.study), Path(args.output),
                        Path(args.artifacts) if args.artifacts else None)
    best = "the race kept trial" if data.race is not None else "best trial"
    print(f"wrote {args.output}: {len(data.points)} finished trial(s)"
          + (f", {best} {data.best_number} (FID {data.best_fid:.4f})" if data.best_number is not None else ""))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lambda_search.results.export import export_lines, export_study, write_export

    export = export_study(args.storage, args.study)
    write_export(export, Path(args.output), args.format)
    for line in export_lines(export, args.output):
        print(line)
    return 0


def _cmd_confirm(args: argparse.Namespace) -> int:
    from lambda_search.records.confirmation import verdict
    from lambda_search.results.confirmation import confirmation_table
    from lambda_search.sweep.confirm import confirm

    def told(lam: float, seed: int, fid: float, stored: bool) -> None:
        log.info("λ = %.6g seed %d: FID %.4f%s", lam, seed, fid, " (stored before)" if stored else "")

    result = confirm(args.storage, args.study, args.top, args.seeds, told)
    for line in confirmation_table(result):
        print(line)
    print(verdict(result))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from lambda_search.gan.production import CHECKPOINT_FILE, reproduction_line, train_from_export
    from lambda_search.records.export import load_export

    export = load_export(args.export)
    result = train_from_export(export, Path(args.output), args.steps, args.device, progress=terminal_progress)
    print(f"trained λ = {result.lam:.6g} for {result.steps} steps on {result.device}, {export.seed_note}: "
          f"FID {result.fid:.4f}" + ("" if result.same_protocol else " (FID protocol differs from the export's)"))
    print(reproduction_line(result))
    print(f"wrote {result.directory / CHECKPOINT_FILE} and its samples and result beside it")
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from lambda_search.results.dashboard import serve

    with contextlib.suppress(Interrupted):  # SIGTERM is how a server is meant to be stopped
        serve(args.storage, args.host, args.port, Path(args.artifacts) if args.artifacts else None)
    return 0


def _cmd_storage_proxy(args: argparse.Namespace) -> int:
    from lambda_search.storage_url import mask_password
    from lambda_search.sweep.storage.proxy_server import bind, serve

    server = bind(args.storage, args.host, args.port)
    print(f"serving {mask_password(args.storage)} on grpc://{args.host}:{args.port} "
          f"(workers: --storage grpc://{args.host}:{args.port})", flush=True)
    with contextlib.suppress(Interrupted):  # SIGTERM is how a server stops
        serve(server)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambda-search", description="Find the weight decay λ of a GAN by FID.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_file_commands(commands)
    _add_study_commands(commands)
    return parser


Commands = argparse._SubParsersAction  # what `add_subparsers` returns; argparse names no public type for it


def _add_file_commands(commands: Commands[argparse.ArgumentParser]) -> None:
    """The commands that take a study file: run, check, plan."""
    run = commands.add_parser("run", help="create or join a study and run trials until it holds n_trials")
    run.add_argument("study_file", help="study file (TOML), e.g. studies/quickstart.toml")
    override_arguments(run)
    run.set_defaults(handler=_cmd_run)

    check = commands.add_parser("check", help="validate a study file (with run's overrides) against its data and "
                                "this machine; writes nothing")
    check.add_argument("study_file", help="study file (TOML)")
    override_arguments(check)
    check.set_defaults(handler=_cmd_check)

    plan = commands.add_parser("plan", help="the verdict seeds a race needs for 80%% power against --effect; "
                               "trains nothing")
    plan.add_argument("study_file", help="study file (TOML) of a race")
    plan.add_argument("--effect", type=float, required=True, help="the FID difference to detect, e.g. 5")
    plan.add_argument("--pilot", help="STORAGE/STUDY whose paired runs give the sd (default: the file's own SQLite "
                      "study when it has a finished verdict, else 11.0 FID, measured on the quickstart)")
    plan.set_defaults(handler=_cmd_plan)


def _add_study_commands(commands: Commands[argparse.ArgumentParser]) -> None:
    """The commands that take a stored study (or a storage, or an export)."""
    status = commands.add_parser("status", help="list a study's trials")
    study_arguments(status)
    status.add_argument("--workers", action="store_true",
                        help="add a column naming the worker that ran each trial (host:pid, SLURM task or pod)")
    status.set_defaults(handler=_cmd_status)

    report = commands.add_parser("report", help="write a study's results, or several studies compared, "
                                 "as one self-contained HTML page")
    storage_argument(report, "storage URL, e.g. sqlite:///studies/quickstart.db")
    which = report.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", help="study name")
    which.add_argument("--compare", nargs="+", metavar="STUDY",
                       help="two or more studies of the storage: their FID against λ overlaid, with their controls")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default: report.html)")
    report.add_argument("--artifacts", help="the study's artifact directory (default: what its config implies; "
                        "not used by --compare)")
    report.set_defaults(handler=_cmd_report)

    dashboard = commands.add_parser("dashboard", help="start optuna-dashboard on a storage, with trial artifacts")
    storage_argument(dashboard, "storage URL, e.g. sqlite:///studies/quickstart.db")
    dashboard.add_argument("--host", default=DASHBOARD_HOST,
                           help=f"address to bind (default: {DASHBOARD_HOST}, this machine only)")
    dashboard.add_argument("--port", type=port, default=DASHBOARD_PORT,
                           help=f"port to listen on (default: {DASHBOARD_PORT})")
    dashboard.add_argument("--artifacts", help="the folder the studies' artifact directories are mounted in, as "
                           "docker compose and k8s mount /artifacts (default: what the studies' configs imply)")
    dashboard.set_defaults(handler=_cmd_dashboard)

    proxy = commands.add_parser("storage-proxy", help="serve a study database to many workers through one "
                                "gRPC proxy (Optuna's); workers use --storage grpc://HOST:PORT")
    storage_argument(proxy, "database URL, e.g. postgresql+psycopg://user@db:5432/lambda_search")
    proxy.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    proxy.add_argument("--port", type=port, default=13000, help="port to listen on (default: 13000)")
    proxy.set_defaults(handler=_cmd_storage_proxy)

    export = commands.add_parser("export", help="write the best λ and everything needed to reproduce it")
    study_arguments(export, companions=False)
    export.add_argument("-o", "--output", default="best.yaml", help="the file to write (default: best.yaml)")
    export.add_argument("--format", choices=("yaml", "json"), default="yaml", help="file format (default: yaml)")
    export.set_defaults(handler=_cmd_export)

    confirm = commands.add_parser("confirm", help="re-train the top λ and λ = 0 on fresh paired seeds; "
                                  "mean FID, Holm-adjusted tests against λ = 0 and a verdict "
                                  "(runs stored in <study>.confirm)")
    study_arguments(confirm, companions=False)
    confirm.add_argument("--top", type=positive_int, default=3, help="distinct best λ values to confirm (default: 3)")
    confirm.add_argument("--seeds", type=seed_count, default=None,
                         help="seeds per λ, study seed + 1 … + seeds (never the seed that selected the λ), the same "
                              "for every λ (default: the fewest with which the Wilcoxon shown can reach p < 0.05 "
                              "after Holm's correction over --top: 7 for 3)")
    confirm.set_defaults(handler=_cmd_confirm)

    train = commands.add_parser("train", help="train the GAN with an exported λ and config; checkpoint and FID")
    train.add_argument("export", help="export file from `lambda-search export` (YAML or JSON)")
    train.add_argument("-o", "--output", required=True, help="output directory (nothing is written outside it)")
    train.add_argument("--steps", type=positive_int, help="train this many steps instead of the exported ones")
    train.add_argument("--device", help="override the exported device: auto, cpu, cuda, cuda:N")
    train.set_defaults(handler=_cmd_train)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or "(no message)"


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
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return int(args.handler(args))
    except LambdaSearchError as error:
        if args.debug:
            raise
        print(f"lambda-search: error: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        # `status | head` closed the pipe: the reader has what it wanted. Python's own recipe, so
        # that the flush at exit does not fail again on the closed stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # the boundary: a full disk or a bug still ends in one line
        if args.debug:
            raise
        print(f"lambda-search: error: {_lost_proxy(error) or _unexpected(error)}", file=sys.stderr)
        return 1
    except Interrupted as interrupted:
        print(f"lambda-search: {_interrupted_message(interrupted, args.command)}", file=sys.stderr)
        return 128 + interrupted.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _unexpected(error: Exception) -> str:
    return f"{type(error).__name__}: {_one_line(error)} (run with --debug for the traceback)"


def _lost_proxy(error: Exception) -> str | None:
    """A gRPC error (the storage proxy stopped answering) in one sentence; None for any other error."""
    grpc = sys.modules.get("grpc")  # loaded only where a proxy was used: no import here for the others
    if grpc is None or not isinstance(error, grpc.RpcError):
        return None
    status = f"{error.code().name}: {_one_line(Exception(error.details()))}" if isinstance(error, grpc.Call) else \
        _one_line(error)
    return (f"lost the storage proxy ({status}); a trial this worker was running stays RUNNING and is "
            "retried by the next worker once its heartbeat is stale")


def _interrupted_message(interrupted: Interrupted, command: str) -> str:
    """What a signal left behind, for the command it stopped: only `run` has trials to hand back."""
    name = signal.Signals(interrupted.signum).name
    if command == "confirm":
        return (f"{name}: the run in training was not stored (it trains from the start next time); every run "
                "finished before it is, and `confirm` again trains only the rest")
    if command == "train":
        return (f"{name}: stopped before `train` finished: no result.json of this run was written (it is "
                "written last); train again")
    if command != "run":
        return f"{name}: stopped; nothing was written"
    if isinstance(interrupted, Preempted) and interrupted.steps:
        trials = ", ".join(f"trial {number} at step {step}" for number, step in sorted(interrupted.steps.items()))
        return f"{name}: checkpointed {trials}; handed back, it resumes there with the same λ on the next run"
    return (f"{name}: a trial this worker was training was handed back and resumes from its last checkpoint on the "
            "next run; one it had only claimed is retried once its heartbeat is stale")


def entry_point() -> None:
    sys.exit(main())
