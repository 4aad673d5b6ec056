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
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from lambda_search import __version__
from lambda_search.errors import Interrupted, LambdaSearchError, Preempted
from lambda_search.names import DASHBOARD_HOST, DASHBOARD_PORT

if TYPE_CHECKING:
    from lambda_search.config import StudyConfig
    from lambda_search.results.confirmation import Confirmation
    from lambda_search.sweep.study import RunSummary

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
    from lambda_search.sweep.study import run

    config = load_config(args.study_file)
    overrides = {
        "study": {k: v for k, v in {"storage": args.storage, "name": args.study,
                                    "n_trials": args.n_trials}.items() if v is not None},
        "train": {"device": args.device} if args.device else {},
    }
    config = config.with_overrides(**overrides)
    summary = run(config, progress=_progress)
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
    from lambda_search.results.read_model import comparison

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
    from lambda_search.sweep.storage import artifact_dir

    study = config.study
    for line in run_ending(study.resolved_storage, study.name,
                           artifact_dir(study.resolved_storage, study.name, study.artifacts), STORAGE_VARIABLE):
        print(line)


def _cmd_check(args: argparse.Namespace) -> int:
    from lambda_search.config import load_config
    from lambda_search.sweep.study import check_input

    config = load_config(args.study_file)
    if args.device:
        config = config.with_overrides(train={"device": args.device})
    device, data, model = check_input(config)
    networks = model.identity["factory"] or "the built-in DCGAN"
    print(f"{args.study_file}: valid; {len(data.images):,} images of {data.name} on {device}, networks of {networks}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from lambda_search.results.plan import plan

    print("\n".join(plan(args.study_file, args.effect, args.pilot).lines()))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from lambda_search.names import PARAM
    from lambda_search.results.race_runs import is_race, race_verdict_line
    from lambda_search.results.read_model import (
        best_trial,
        comparison,
        control_study,
        load_control,
        objective_note,
        study_config,
    )
    from lambda_search.results.report import trial_table
    from lambda_search.sweep.storage import load_study

    study = load_study(args.storage, args.study)
    race = is_race(study)
    rows = [(str(row.number), row) for row in trial_table(study)]
    if race and (control := control_study(study)) is not None:
        # λ = 0's runs, trials of NAME.control: the race pairs them with the search's and the verdict's.
        rows += [(f"c{row.number}", row) for row in trial_table(control)]
    header = f"{'trial':>5}  {'state':<8}  {'lambda':>10}  {'FID':>10}  {'steps':>6}  {'seconds':>8}"
    header += f"  {'seed':>6}  role" if race else ""
    header += "  worker" if args.workers else ""
    print(header)
    for number, row in rows:
        fid = f"{row.fid:10.4f}" if row.fid is not None else f"{'-':>10}"
        lam = f"{row.lam:10.4g}" if row.lam is not None else f"{'-':>10}"
        steps = f"{row.steps:6d}" if row.steps is not None else f"{'-':>6}"
        seconds = f"{row.seconds:8.1f}" if row.seconds is not None else f"{'-':>8}"
        line = f"{number:>5}  {row.state:<8}  {lam}  {fid}  {steps}  {seconds}"
        line += f"  {row.seed if row.seed is not None else '-':>6}  {row.role or '-'}" if race else ""
        line += f"  {row.worker}" if args.workers else ""
        print(line)
    if note := objective_note(study_config(study)):
        print(f"({note})")
    if race:
        print(race_verdict_line(study))
        return 0
    best = best_trial(study)
    if best is not None:
        print(f"best: trial {best.number}, λ = {best.params[PARAM]:.6g}, FID {best.value:.4f}")
    print(comparison(best.value if best else None, load_control(study)))
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
    from lambda_search.results.confirmation import load_confirmation
    from lambda_search.results.export import best_config, write_export
    from lambda_search.results.race_runs import is_race, race_verdict
    from lambda_search.results.read_model import load_control
    from lambda_search.sweep.storage import load_study

    study = load_study(args.storage, args.study)
    confirmation = load_confirmation(args.storage, args.study)  # `confirm` of a sweep or of a race
    if is_race(study):  # its λ = 0 runs are the race's, in its verdict: no single control run to show
        export = best_config(study, args.storage, confirmation, race=race_verdict(study))
    else:
        export = best_config(study, args.storage, confirmation, load_control(study))
    write_export(export, Path(args.output), args.format)
    if export["fresh_seeds"]:
        print(f"wrote {args.output}: λ = {export['lambda']:.6g} (mean FID {export['fid']['value']:.4f} on fresh "
              f"seeds); {export['verdict']}")
    else:
        print(f"wrote {args.output}: λ = {export['lambda']:.6g} (trial {export['study']['trial']}, "
              f"FID {export['fid']['value']:.4f}); {export['verdict']}")
    if export["control"] is not None:
        print(export["control"]["note"])
    return 0


def _cmd_confirm(args: argparse.Namespace) -> int:
    from lambda_search.results.confirmation import verdict
    from lambda_search.sweep.confirm import confirm

    def told(lam: float, seed: int, fid: float, stored: bool) -> None:
        log.info("λ = %.6g seed %d: FID %.4f%s", lam, seed, fid, " (stored before)" if stored else "")

    result = confirm(args.storage, args.study, args.top, args.seeds, told)
    for line in _confirmation_lines(result):
        print(line)
    print(verdict(result))
    return 0


def _confirmation_lines(result: Confirmation) -> list[str]:
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


def _cmd_train(args: argparse.Namespace) -> int:
    from lambda_search.export_file import load_export
    from lambda_search.gan.production import CHECKPOINT_FILE, reproduction_line, train_from_export

    export = load_export(args.export)
    result = train_from_export(export, Path(args.output), args.steps, args.device, progress=_progress)
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
    from lambda_search.sweep.proxy_server import bind, serve
    from lambda_search.sweep.storage import open_database

    server = bind(open_database(args.storage), args.host, args.port)
    print(f"serving {mask_password(args.storage)} on grpc://{args.host}:{args.port} "
          f"(workers: --storage grpc://{args.host}:{args.port})", flush=True)
    with contextlib.suppress(Interrupted):  # SIGTERM is how a server stops
        serve(server)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


STORAGE_VARIABLE = "LAMBDA_SEARCH_STORAGE"


def _storage_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """--storage, defaulting to $LAMBDA_SEARCH_STORAGE: a password there stays out of `ps` and shell history."""
    from_environment = os.environ.get(STORAGE_VARIABLE)
    parser.add_argument("--storage", default=from_environment, required=from_environment is None,
                        help=f"{help} (default: ${STORAGE_VARIABLE})")


def _study_arguments(parser: argparse.ArgumentParser) -> None:
    _storage_argument(parser, "storage URL, e.g. sqlite:///studies/quickstart.db")
    parser.add_argument("--study", required=True, help="study name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambda-search", description="Find the weight decay λ of a GAN by FID.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="create or join a study and run trials until it holds n_trials")
    run.add_argument("study_file", help="study file (TOML), e.g. studies/quickstart.toml")
    run.add_argument("--storage", default=os.environ.get(STORAGE_VARIABLE),
                     help=f"override [study] storage (default: ${STORAGE_VARIABLE} when set)")
    run.add_argument("--study", help="override [study] name")
    run.add_argument("--n-trials", type=int, help="override [study] n_trials")
    run.add_argument("--device", help="override [train] device: auto, cpu, cuda, cuda:N")
    run.set_defaults(handler=_cmd_run)

    check = commands.add_parser("check", help="validate a study file against its data and this machine; "
                                "writes nothing")
    check.add_argument("study_file", help="study file (TOML)")
    check.add_argument("--device", help="override [train] device: auto, cpu, cuda, cuda:N")
    check.set_defaults(handler=_cmd_check)

    plan = commands.add_parser("plan", help="the verdict seeds a race needs for 80%% power against --effect; "
                               "trains nothing")
    plan.add_argument("study_file", help="study file (TOML) of a race")
    plan.add_argument("--effect", type=float, required=True, help="the FID difference to detect, e.g. 5")
    plan.add_argument("--pilot", help="STORAGE/STUDY whose paired runs give the sd (default: the file's own SQLite "
                      "study when it has a finished verdict, else 11.0 FID, measured on the quickstart)")
    plan.set_defaults(handler=_cmd_plan)

    status = commands.add_parser("status", help="list a study's trials")
    _study_arguments(status)
    status.add_argument("--workers", action="store_true",
                        help="add a column naming the worker that ran each trial (host:pid, SLURM task or pod)")
    status.set_defaults(handler=_cmd_status)

    report = commands.add_parser("report", help="write a study's results, or several studies compared, "
                                 "as one self-contained HTML page")
    _storage_argument(report, "storage URL, e.g. sqlite:///studies/quickstart.db")
    which = report.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", help="study name")
    which.add_argument("--compare", nargs="+", metavar="STUDY",
                       help="two or more studies of the storage: their FID against λ overlaid, with their controls")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default: report.html)")
    report.add_argument("--artifacts", help="the study's artifact directory (default: what its config implies; "
                        "not used by --compare)")
    report.set_defaults(handler=_cmd_report)

    dashboard = commands.add_parser("dashboard", help="start optuna-dashboard on a storage, with trial artifacts")
    _storage_argument(dashboard, "storage URL, e.g. sqlite:///studies/quickstart.db")
    dashboard.add_argument("--host", default=DASHBOARD_HOST,
                           help=f"address to bind (default: {DASHBOARD_HOST}, this machine only)")
    dashboard.add_argument("--port", type=_port, default=DASHBOARD_PORT,
                           help=f"port to listen on (default: {DASHBOARD_PORT})")
    dashboard.add_argument("--artifacts", help="the folder the studies' artifact directories are mounted in, as "
                           "docker compose and k8s mount /artifacts (default: what the studies' configs imply)")
    dashboard.set_defaults(handler=_cmd_dashboard)

    proxy = commands.add_parser("storage-proxy", help="serve a study database to many workers through one "
                                "gRPC proxy (Optuna's); workers use --storage grpc://HOST:PORT")
    _storage_argument(proxy, "database URL, e.g. postgresql+psycopg://user@db:5432/lambda_search")
    proxy.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    proxy.add_argument("--port", type=_port, default=13000, help="port to listen on (default: 13000)")
    proxy.set_defaults(handler=_cmd_storage_proxy)

    export = commands.add_parser("export", help="write the best λ and everything needed to reproduce it")
    _study_arguments(export)
    export.add_argument("-o", "--output", default="best.yaml", help="the file to write (default: best.yaml)")
    export.add_argument("--format", choices=("yaml", "json"), default="yaml", help="file format (default: yaml)")
    export.set_defaults(handler=_cmd_export)

    confirm = commands.add_parser("confirm", help="re-train the top λ and λ = 0 on fresh paired seeds; "
                                  "mean FID, Holm-adjusted tests against λ = 0 and a verdict "
                                  "(runs stored in <study>.confirm)")
    _study_arguments(confirm)
    confirm.add_argument("--top", type=_positive_int, default=3, help="distinct best λ values to confirm (default: 3)")
    confirm.add_argument("--seeds", type=_positive_int, default=None,
                         help="seeds per λ, study seed + 1 … + seeds (never the seed that selected the λ), the same "
                              "for every λ (default: the fewest with which the Wilcoxon shown can reach p < 0.05 "
                              "after Holm's correction over --top: 7 for 3)")
    confirm.set_defaults(handler=_cmd_confirm)

    train = commands.add_parser("train", help="train the GAN with an exported λ and config; checkpoint and FID")
    train.add_argument("export", help="export file from `lambda-search export` (YAML or JSON)")
    train.add_argument("-o", "--output", required=True, help="output directory (nothing is written outside it)")
    train.add_argument("--steps", type=_positive_int, help="train this many steps instead of the exported ones")
    train.add_argument("--device", help="override the exported device: auto, cpu, cuda, cuda:N")
    train.set_defaults(handler=_cmd_train)
    return parser


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _failed_note(trials: tuple[int, ...]) -> str:
    if not trials:
        return ""
    if len(trials) == 1:
        return f"; the running trial ({trials[0]}) was marked FAIL"
    return f"; the running trials ({', '.join(str(number) for number in trials)}) were marked FAIL"


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
        print(f"lambda-search: {_interrupted_message(interrupted)}", file=sys.stderr)
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


def _interrupted_message(interrupted: Interrupted) -> str:
    name = signal.Signals(interrupted.signum).name
    if isinstance(interrupted, Preempted) and interrupted.steps:
        trials = ", ".join(f"trial {number} at step {step}" for number, step in sorted(interrupted.steps.items()))
        return f"{name}: checkpointed {trials}; handed back, it resumes there with the same λ on the next run"
    return f"{name}: any running trial was handed back; it resumes from its last checkpoint on the next run"


def entry_point() -> None:
    sys.exit(main())
