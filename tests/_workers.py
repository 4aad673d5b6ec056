"""Worker and proxy processes for the multi-process tests: `python -m lambda_search run FILE` and
`storage-proxy` for real.

Every wait is bounded, and `workers()` and `storage_proxy()` stop whatever is still running when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import optuna

T = TypeVar("T")


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_command(directory: Path, argv: list[str], name: str, env: dict[str, str] | None = None) -> Worker:
    """`lambda-search ARGV` in `directory`, its output in a log file (a pipe nobody reads would fill up)."""
    log = directory / f"{name}-{time.monotonic_ns()}.log"
    # One thread each: several workers on few cores slow to a crawl when each spins up to all of them.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    with open(log, "wb") as stream:
        process = subprocess.Popen([sys.executable, "-m", "lambda_search", *argv],
                                   stdout=stream, stderr=subprocess.STDOUT, cwd=directory, env=env)
    return Worker(process, log)


def start_worker(directory: Path, study_file: Path, *args: str, index: int = 0,
                 env: dict[str, str] | None = None) -> Worker:
    """One `run` process (`start_command`); `env` adds variables."""
    return start_command(directory, ["run", str(study_file), *args], f"worker-{index}", env)


@contextlib.contextmanager
def workers(directory: Path, study_file: Path, count: int, *args: str) -> Iterator[list[Worker]]:
    started = [start_worker(directory, study_file, *args, index=index) for index in range(count)]
    try:
        yield started
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait(timeout=10)


def free_port() -> int:
    """A port nobody listens on now (the OS's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Proxy:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        """The storage URL its workers use."""
        return f"grpc://127.0.0.1:{self.port}"


def proxy_command(database_url: str, port: int) -> list[str]:
    return [sys.executable, "-m", "lambda_search", "storage-proxy", "--storage", database_url, "--port", str(port)]


@contextlib.contextmanager
def storage_proxy(database_url: str) -> Iterator[Proxy]:
    """`lambda-search storage-proxy` on a free port, serving once this yields; stopped (if still up) at the end."""
    port = free_port()
    process = subprocess.Popen(proxy_command(database_url, port), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port).wait_server_ready(timeout=60)
        yield Proxy(process, port)
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)


def wait_all(started: list[Worker], timeout: float) -> list[int]:
    """Exit codes of all workers; fails the test (showing their logs) past `timeout` seconds."""
    deadline = time.monotonic() + timeout
    codes = []
    for worker in started:
        try:
            codes.append(worker.process.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            logs = "\n".join(w.output[-3000:] for w in started)
            raise AssertionError(f"workers still running after {timeout} s:\n{logs}") from None
    return codes


def poll(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """The first truthy value of `condition()`, polled until `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


OBSERVER = "lambda-search-test-observer"


def observer(url: str) -> optuna.storages.RDBStorage:
    """The test's own view of a storage, with a PostgreSQL application_name so tests can spare it.

    Open it once per test: an engine per poll would exhaust the server's connections.
    """
    if url.startswith("postgresql"):
        return optuna.storages.RDBStorage(url, engine_kwargs={
            "pool_pre_ping": True, "connect_args": {"application_name": OBSERVER}})
    return optuna.storages.RDBStorage(url)


def running_with_checkpoint(storage: optuna.storages.BaseStorage, name: str,
                            checkpoints: Path) -> optuna.trial.FrozenTrial | None:
    """A RUNNING trial whose first checkpoint is on disk (so it is well inside its training)."""
    study = optuna.load_study(study_name=name, storage=storage)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if "worker" in trial.user_attrs and (checkpoints / f"trial-{trial.number}.pt").exists():
            return trial
    return None


def pid_of(trial: optuna.trial.FrozenTrial) -> int:
    return int(str(trial.user_attrs["worker"]).rsplit(":", 1)[1])


def signal_worker(started: list[Worker], pid: int, signum: signal.Signals) -> Worker:
    worker = next(w for w in started if w.process.pid == pid)
    os.kill(pid, signum)
    return worker


def states(storage: optuna.storages.BaseStorage, name: str) -> dict[str, int]:
    """How many trials of the study are in each state, e.g. {"COMPLETE": 6, "FAIL": 1}."""
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    result: dict[str, int] = {}
    for trial in trials:
        result[trial.state.name] = result.get(trial.state.name, 0) + 1
    return result


def end_stored_study_at(url: str, name: str, steps: int, eval_every: int) -> None:
    """Rewrite a stopped study's stored config to end its trials at `steps`, scored every `eval_every`.

    A test's shortcut, to resume a 50,000-step trial a few steps after its checkpoint: a worker
    whose file differs from the stored config is refused (`sweep.compatibility`), so the test
    changes both, as no user can.
    """
    study = optuna.load_study(study_name=name, storage=url)
    config = study.user_attrs["config"]
    config["train"]["steps"], config["fid"]["eval_every"] = steps, eval_every
    study.set_user_attr("config", config)
