"""Hostile input through the CLI, in-process: one line on stderr, the right exit code, nothing written."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from _workers import poll, proxy_command, storage_proxy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_search.cli import main
from lambda_search.config import StudyConfig
from lambda_search.names import PARAM
from lambda_search.storage_url import sqlite_path

# Valid and tiny: a clean `run` of it trains one step.
BASE = {
    "study": {"name": "fuzz", "storage": "sqlite:///fuzz.db", "n_trials": 1},
    "search": {"control": False},
    "train": {"steps": 1, "batch_size": 16, "width": 8, "latent_dim": 16, "device": "cpu", "checkpoint_every": 0},
    "fid": {"n_samples": 32, "n_real": 100, "eval_every": 1},
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    return "".join(f"[{json.dumps(name)}]\n" + "".join(f"{json.dumps(key)} = {_toml_value(value)}\n"
                                                       for key, value in keys.items())
                   for name, keys in sections.items())


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("lambda-search: error: ")
    return lines[0]


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _inside(directory: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


def _written(tmp_path: Path) -> list[str]:
    return sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.name != "study.toml")


def _study_file(tmp_path: Path, section: str, key: str, value: Any, **more: dict[str, Any]) -> Path:
    sections = json.loads(json.dumps(BASE))
    sections.setdefault(section, {})[key] = value
    for name, values in more.items():
        sections.setdefault(name, {}).update(values)
    path = tmp_path / "study.toml"
    path.write_text(_toml(sections))
    return path


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("train", "batch_size", 100_000_000, "exceeds the 5,000 images"),
    ("fid", "n_samples", 2_000_000_000, "[fid] n_samples = 2000000000 needs"),
    ("data", "image_size", 4096, "[data] image_size = 4096: 5,000 images of mnist-5k would need"),
    ("study", "artifacts", "/proc/forbidden", "artifacts folder /proc/forbidden is not writable"),
])
def test_limits_are_one_line_before_anything_is_written(tmp_path, section, key, value, message):
    # Scored by Inception: the LeNet shipped for mnist-5k refuses any other image size before its memory is counted.
    more = {"fid": {"features": "inception"}} if key == "image_size" else {}
    path = _study_file(tmp_path, section, key, value, **more)
    with _inside(tmp_path):
        code, _, stderr = _cli("run", str(path))
    assert message in _one_line(stderr)
    assert code == (1 if key == "artifacts" else 2)
    assert _written(tmp_path) == []  # no storage, no artifacts


def test_check_validates_without_writing(tmp_path):
    with _inside(tmp_path):
        code, stdout, stderr = _cli("check", str(_study_file(tmp_path, "train", "steps", 1)))
        refused, _, refusal = _cli("check", str(_study_file(tmp_path, "fid", "n_samples", 2_000_000_000)))
    assert (code, stderr) == (0, "")
    assert "valid; 5,000 images of mnist-5k on cpu" in stdout
    assert refused == 2 and "n_samples" in _one_line(refusal)
    assert _written(tmp_path) == []


def test_a_busy_dashboard_port_is_one_line_exit_1(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shown.db'}"
    optuna.create_study(study_name="shown", storage=storage)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, _, stderr = _cli("dashboard", "--storage", storage, "--port", str(port))
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in _one_line(stderr)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs, filled to the last byte (needs the right to mount)."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with contextlib.suppress(OSError), open(mount_point / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_under_the_artifacts_is_one_line_exit_1_and_no_study(tmp_path, full_disk):
    storage = tmp_path / "fuzz.db"
    path = _study_file(tmp_path, "study", "artifacts", str(full_disk / "artifacts"))
    text = path.read_text().replace('"sqlite:///fuzz.db"', json.dumps(f"sqlite:///{storage}"))
    path.write_text(text)
    code, _, stderr = _cli("run", str(path))
    assert code == 1
    assert "No space left on device" in _one_line(stderr)
    assert not storage.exists()


def _scored_study(tmp_path: Path) -> str:
    """A study as `run` leaves it (its config, one finished trial), enough for a report; its storage URL."""
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    study = optuna.create_study(study_name="tiny", storage=storage)
    study.set_user_attr("config", StudyConfig().to_dict())
    study.add_trial(optuna.trial.create_trial(
        params={PARAM: 1e-3}, distributions={PARAM: optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
        value=30.0))
    return storage


def test_the_boundary_turns_an_unexpected_exception_into_one_line(tmp_path):
    """A real OSError no LambdaSearchError wraps: a report written under a file, not a folder."""
    storage = _scored_study(tmp_path)
    (tmp_path / "file").write_text("")
    output = str(tmp_path / "file" / "report.html")
    code, _, stderr = _cli("report", "--storage", storage, "--study", "tiny", "-o", output)
    line = _one_line(stderr)
    assert code == 1
    assert line.endswith("(run with --debug for the traceback)")
    assert "Error: " in line
    with pytest.raises(OSError):
        main(["--debug", "report", "--storage", storage, "--study", "tiny", "-o", output])


def test_a_report_onto_a_full_disk_is_one_line_exit_1(tmp_path, full_disk):
    code, _, stderr = _cli("report", "--storage", _scored_study(tmp_path), "--study", "tiny",
                           "-o", str(full_disk / "report.html"))
    assert code == 1
    assert "OSError: [Errno 28] No space left on device" in _one_line(stderr)
    assert [path.name for path in full_disk.iterdir()] == ["filler"]  # no half-written report


def _fields() -> list[tuple[str, str, type]]:
    return [(section.name, key.name, type(getattr(getattr(StudyConfig(), section.name), key.name)))
            for section in dataclasses.fields(StudyConfig)
            for key in dataclasses.fields(getattr(StudyConfig(), section.name))]


ODD_STRINGS = st.text(max_size=40) | st.sampled_from(["", " ", "..", "-x", "\x00", "a\nb", "é" * 200, "0" * 600])
INTEGERS = (st.integers(min_value=-(2**63), max_value=2**63 - 1)
            | st.sampled_from([0, -1, 1, 2, 3, 4, 16, 64, 4096, 65_536, 2**31, 2**40, 2**62]))
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -1e-3, 1e-300, 1e300, 5e-324])
SCALARS = ODD_STRINGS | INTEGERS | FLOATS | st.booleans()
VALUES = SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(st.text(max_size=5), SCALARS, max_size=2)
# Half the values have the key's own type (out of range, odd), half any type.
SAME_TYPE = {str: ODD_STRINGS, int: INTEGERS, float: FLOATS, bool: st.booleans()}


def _mutations(section: str) -> st.SearchStrategy[tuple[str, str, Any]]:
    """One key of `section` set to an odd value of its type or any other; or an unknown key or section."""
    keys = [(key, kind) for name, key, kind in _fields() if name == section]
    known = st.sampled_from(keys).flatmap(
        lambda pair: st.tuples(st.just(section), st.just(pair[0]), SAME_TYPE[pair[1]] | VALUES))
    unknown = st.tuples(st.sampled_from([section, "stduy", "extra"]), st.text(min_size=1, max_size=12), SCALARS)
    return st.one_of(known, known, known, unknown)


SECTIONS = [section.name for section in dataclasses.fields(StudyConfig)]


@pytest.mark.parametrize("section", SECTIONS)
def test_fuzzed_study_files_are_refused_in_one_line_or_accepted(section):
    """50 derandomized examples per section (250 in all): exit 2 and one line, or accepted by `check`."""

    @settings(max_examples=50, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(_mutations(section))
    def refused_in_one_line_or_accepted(mutation: tuple[str, str, Any]) -> None:
        _check_one(mutation)

    refused_in_one_line_or_accepted()


def _check_one(mutation: tuple[str, str, Any]) -> None:
    section, key, value = mutation
    with tempfile.TemporaryDirectory() as directory:
        here = Path(directory)
        path = _study_file(here, section, key, value)
        with _inside(here):
            code, stdout, stderr = _cli("check", str(path))
            assert code in (0, 2), stderr
            if code == 0:
                assert stderr == "" and "valid" in stdout
            else:
                refusal = _one_line(stderr)
                # `run` refuses it the same way, before the storage or the artifacts are touched.
                assert _cli("run", str(path))[::2] == (2, refusal + "\n")
        assert _written(here) == []


_SQLITE_URLS = st.sampled_from(["sqlite:///{db}", "sqlite:///{db}?mode=ro", "sqlite+pysqlite:///{db}", "sqlite://",
                                 "sqlite:///", "sqlite:///missing/{name}.db", "sqlite:///" + "a" * 300 + ".db",
                                 "sqlite:///{db}\x00", "SQLITE:///{db}", "sqlite:////{name}"])
_STUDY_NAMES = st.one_of(st.sampled_from(["tiny", "tiny.control", "tiny.confirm", "tiny.lock", "", "../tiny"]),
                         st.text(max_size=40))
_READ_ARGV = st.sampled_from([["status"], ["status", "--workers"], ["report", "-o", "out.html"],
                              ["export", "-o", "out.yaml"], ["export", "--format", "json", "-o", "out.json"]])


def test_fuzzed_read_commands_answer_or_refuse_in_one_line(finished_study):
    """Odd storage URLs and study names for status/report/export: an answer, or exit 2 in one line, writing nothing."""
    source = sqlite_path(finished_study)
    assert source is not None

    @settings(max_examples=60, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(_SQLITE_URLS, _STUDY_NAMES, _READ_ARGV)
    def answered_or_refused(url: str, study: str, command: list[str]) -> None:
        with tempfile.TemporaryDirectory() as directory:
            here = Path(directory)
            shutil.copy(source, here / "study.db")
            before = (here / "study.db").read_bytes()
            with _inside(here):
                code, _, stderr = _cli(command[0], "--storage", url.format(db="study.db", name=study), "--study",
                                       study, *command[1:])
            assert code in (0, 2) and "Traceback" not in stderr, stderr
            if code == 2:
                assert stderr.splitlines()[-1].startswith(("lambda-search: error: ", f"lambda-search {command[0]}: "))
            written = sorted(path.name for path in here.iterdir())
            assert written == sorted(["study.db", *([command[-1]] if code == 0 and "-o" in command else [])])
            assert (here / "study.db").read_bytes() == before

    answered_or_refused()


def test_the_readme_table_lists_every_key_of_the_study_file():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    rows = {line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| `[")}
    assert rows == {f"`[{section}] {key}`" for section, key, _ in _fields()}


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("study", "seed", -1, "[study] seed must be in 0 … 4294967295"),
    ("study", "seed", 2**32, "[study] seed must be in 0 … 4294967295"),
    ("study", "name", "fuzz.control", "is a study's companion"),
    ("study", "name", "fuzz.confirm", "is a study's companion"),
    ("study", "name", "fuzz.lock", "is a study's companion"),
    ("study", "name", "fuzz\n", "[study] name = 'fuzz\\n'"),
    ("study", "storage", "mysql://user@127.0.0.1/db", "'mysql' is not one of: sqlite, postgresql, grpc"),
    ("study", "storage", "::not a url", "[study] storage: it is not a URL"),
    ("study", "storage", "postgresql+nodriver://user@127.0.0.1/db", "no such SQLAlchemy driver"),
    ("study", "storage", "grpc://127.0.0.1", "a storage proxy URL is grpc://HOST:PORT"),
    ("study", "heartbeat_seconds", 9_200_000_000, "[study] heartbeat_seconds must be in 1 … 86400"),
    ("train", "lr", math.inf, "[train] lr must be > 0 and finite, got inf"),
    ("train", "lr", math.nan, "[train] lr must be > 0 and finite, got nan"),
    ("train", "device", "cuda:99999999999999999999", "device 'cuda:99999999999999999999'"),
    ("data", "image_size", 32, "the LeNet shipped for mnist-5k scores its own 28×28 images"),
])
def test_check_and_run_refuse_alike_in_one_line_before_writing(tmp_path, section, key, value, message):
    path = _study_file(tmp_path, section, key, value)
    with _inside(tmp_path):
        checked, _, refusal = _cli("check", str(path))
        ran, _, run_refusal = _cli("run", str(path))
    assert message in _one_line(refusal)
    assert (checked, ran, run_refusal) == (2, 2, refusal)
    assert _written(tmp_path) == []  # no storage, no artifacts


@pytest.mark.parametrize(("flags", "message"), [
    (["--storage", "mysql://user@127.0.0.1/db"], "'mysql' is not one of: sqlite, postgresql, grpc"),
    (["--n-trials", "0"], "[study] n_trials must be"),
    (["--study", "fuzz.control"], "is a study's companion"),
    (["--device", "tpu"], "[train] device = 'tpu'"),
])
def test_check_takes_runs_overrides_and_refuses_alike(tmp_path, flags, message):
    """`check FILE FLAGS` validates what `run FILE FLAGS` would run."""
    path = _study_file(tmp_path, "study", "seed", 0)
    with _inside(tmp_path):
        checked, _, refusal = _cli("check", str(path), *flags)
        ran, _, run_refusal = _cli("run", str(path), *flags)
    assert message in _one_line(refusal)
    assert (checked, ran, run_refusal) == (2, 2, refusal)
    assert _written(tmp_path) == []


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_storage_file_that_is_a_folder_is_refused_before_anything_is_written(tmp_path, command):
    (tmp_path / "studies.db").mkdir()
    path = _study_file(tmp_path, "study", "storage", "sqlite:///studies.db")
    with _inside(tmp_path):
        code, _, stderr = _cli(command, str(path))
    assert code == 2 and "the SQLite file studies.db is a folder, not a database file" in _one_line(stderr)
    assert _written(tmp_path) == ["studies.db"]  # the folder it was given, nothing beside it


def test_a_companion_name_given_on_the_command_line_is_refused(tmp_path):
    with _inside(tmp_path):
        code, _, stderr = _cli("run", str(_study_file(tmp_path, "study", "seed", 0)), "--study", "fuzz.control")
    assert code == 2 and "is a study's companion" in _one_line(stderr)
    assert _written(tmp_path) == []


@pytest.mark.parametrize("command", [["export", "-o", "best.yaml"], ["confirm"]], ids=lambda command: command[0])
def test_export_and_confirm_refuse_a_companion_study(finished_study, tmp_path, command):
    with _inside(tmp_path):
        code, _, stderr = _cli(command[0], "--storage", finished_study, "--study", "tiny.control", *command[1:])
    assert code == 2 and "'tiny.control' is a companion of study 'tiny'" in stderr.splitlines()[-1]
    assert "give --study tiny" in stderr and list(tmp_path.iterdir()) == []


def test_confirm_refuses_more_seeds_than_any_budget_trains(finished_study, tmp_path):
    # It used to start: a list of 10^11 seeds, then training until killed.
    with _inside(tmp_path):
        code, _, stderr = _cli("confirm", "--storage", finished_study, "--study", "tiny", "--seeds", str(10**11))
    assert code == 2 and "argument --seeds: at most 1,000,000 seeds, got 100,000,000,000" in stderr
    assert list(tmp_path.iterdir()) == []


def test_the_largest_seed_serves_a_second_worker(tmp_path):
    """Seed 2**32 - 1: the second worker's sampler seed (seed + 1) wraps instead of overflowing numpy's."""
    path = _study_file(tmp_path, "study", "seed", 2**32 - 1)
    with _inside(tmp_path):
        first, _, _ = _cli("run", str(path))
        second, stdout, stderr = _cli("run", str(path))
    assert (first, second) == (0, 0), stderr
    assert "already holds 1 finished trials" in stdout


def _export(tmp_path: Path, lam: Any, config: dict[str, Any]) -> Path:
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"lambda": lam, "config": config}))
    return path


@pytest.mark.parametrize("lam", [math.inf, math.nan, -1.0])
def test_train_refuses_a_lambda_that_is_not_finite(tmp_path, lam):
    code, _, stderr = _cli("train", str(_export(tmp_path, lam, StudyConfig().to_dict())), "-o", str(tmp_path / "out"))
    assert code == 2 and "`lambda` must be a finite number >= 0" in _one_line(stderr)
    assert not (tmp_path / "out").exists()


def test_train_refuses_an_export_without_its_train_section(tmp_path):
    """Defaults would stand in for it: other networks than the exported run's, silently."""
    config = StudyConfig().to_dict()
    del config["train"]
    code, _, stderr = _cli("train", str(_export(tmp_path, 1e-3, config)), "-o", str(tmp_path / "out"))
    assert code == 2 and "its config lacks [train]:" in _one_line(stderr)
    assert not (tmp_path / "out").exists()


def test_train_checks_its_output_folder_before_it_loads_data_or_trains(tmp_path):
    """The dataset named here does not exist: a refusal naming the output folder proves it was checked first."""
    config = StudyConfig().with_overrides(data={"dataset": "folder", "root": str(tmp_path / "absent")},
                                          train={"device": "cpu"}).to_dict()
    code, _, stderr = _cli("train", str(_export(tmp_path, 1e-3, config)), "-o", "/proc/forbidden/out")
    assert code == 1 and "output folder /proc/forbidden/out is not writable" in _one_line(stderr)


READ_COMMANDS = [["status"], ["report", "-o", "report.html"], ["export", "-o", "best.yaml"]]


def _tables(url: str) -> list[str]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        return sorted(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda command: command[0])
def test_a_read_command_on_a_foreign_sqlite_database_refuses_and_writes_nothing(tmp_path, command):
    """Optuna creates its tables on open: a read command must not do that to someone else's database."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(tmp_path / "theirs.db")) as connection, connection:
        connection.execute("CREATE TABLE invoices (id INTEGER)")
    url = f"sqlite:///{tmp_path / 'theirs.db'}"
    before = (tmp_path / "theirs.db").read_bytes()
    with _inside(tmp_path):
        code, _, stderr = _cli(command[0], "--storage", url, "--study", "any", *command[1:])
    assert code == 2
    assert "is not a lambda-search/Optuna storage: it has none of Optuna's tables" in _one_line(stderr)
    assert _tables(url) == ["invoices"] and (tmp_path / "theirs.db").read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["theirs.db"]  # no lock file, no output


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://someone@db/theirs", "mysql://someone@db/theirs: 'mysql' is not one of: sqlite, postgresql, grpc"),
    ("", "it is not a URL"),
    ("grpc://proxy-host", "a storage proxy URL is grpc://HOST:PORT"),
])
@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda command: command[0])
def test_a_read_command_refuses_a_storage_url_it_cannot_use_before_opening_anything(tmp_path, command, url, message):
    with _inside(tmp_path):
        code, _, stderr = _cli(command[0], "--storage", url, "--study", "any", *command[1:])
    assert code == 2 and "Traceback" not in stderr
    refusal = stderr.splitlines()[-1]  # after argparse's usage line
    assert refusal.startswith(f"lambda-search {command[0]}: error: argument --storage: ") and message in refusal
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", READ_COMMANDS[1:], ids=lambda command: command[0])
def test_an_output_that_is_a_folder_is_one_line_exit_2(finished_study, tmp_path, command):
    code, _, stderr = _cli(command[0], "--storage", finished_study, "--study", "tiny", "-o", str(tmp_path))
    assert code == 2 and f"{tmp_path} is a folder: give a file name to write" in _one_line(stderr)
    assert list(tmp_path.iterdir()) == []


def test_a_read_command_on_a_foreign_postgresql_database_refuses_and_writes_nothing(pg_url):
    import sqlalchemy

    engine = sqlalchemy.create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE invoices (id INTEGER)"))
    engine.dispose()
    for command in READ_COMMANDS:
        code, _, stderr = _cli(command[0], "--storage", pg_url, "--study", "any", *command[1:])
        assert code == 2 and "is not a lambda-search/Optuna storage" in _one_line(stderr)
    assert _tables(pg_url) == ["invoices"]


def test_read_commands_read_a_read_only_sqlite_file_in_a_read_only_folder_as_another_user(tmp_path):
    """0444 file, 0555 folder, run as `nobody` (root ignores file modes): no lock file, no write needed."""
    storage_url = _scored_study(tmp_path)
    folder = Path(tempfile.mkdtemp(prefix="read-only-"))
    try:
        (folder / "tiny.db").write_bytes((tmp_path / "tiny.db").read_bytes())
        (folder / "tiny.db").chmod(0o444)
        folder.chmod(0o555)
        url = storage_url.replace(str(tmp_path), str(folder))
        code = (f"import sys; from lambda_search.cli import main; "
                f"sys.exit(main(['status', '--storage', {url!r}, '--study', 'tiny']))")
        result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                 sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
        assert result.returncode == 0, result.stderr
        assert "best: trial 0, λ = 0.001, FID 30.0000" in result.stdout
        assert sorted(path.name for path in folder.iterdir()) == ["tiny.db"]
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_a_worker_with_a_changed_study_file_is_refused_naming_the_fields(tmp_path):
    with _inside(tmp_path):
        assert _cli("run", str(_study_file(tmp_path, "study", "n_trials", 1)))[0] == 0
        url = f"sqlite:///{tmp_path / 'fuzz.db'}"
        before = [(t.number, t.state) for t in optuna.load_study(study_name="fuzz", storage=url).trials]
        attrs = optuna.load_study(study_name="fuzz", storage=url).user_attrs
        changed = _study_file(tmp_path, "train", "lr", 1e-3, study={"n_trials": 2, "seed": 7},
                              train={"apply_to": "both", "steps": 2})
        code, _, stderr = _cli("run", str(changed))
        # Run-time settings only (n_trials, heartbeat, device): the worker joins.
        joined = _study_file(tmp_path, "study", "heartbeat_seconds", 5, study={"n_trials": 1})
        code_joined, _, joined_err = _cli("run", str(joined), "--device", "cpu")
    line = _one_line(stderr)
    assert code == 2
    for field in ("[study] seed = 0", "[train] steps = 1", "[train] lr = 0.0002", "[train] apply_to = 'generator'",
                  "[study] seed = 7", "[train] steps = 2", "[train] lr = 0.001", "[train] apply_to = 'both'"):
        assert field in line
    assert "n_trials" not in line
    study = optuna.load_study(study_name="fuzz", storage=url)
    assert [(t.number, t.state) for t in study.trials] == before
    assert {k: v for k, v in study.user_attrs.items() if k != "workers_started"} == \
        {k: v for k, v in attrs.items() if k != "workers_started"}
    assert code_joined == 0, joined_err


def test_every_stored_field_but_the_run_time_ones_is_compared():
    """A field added to the config later is compared without a change to the check."""
    from lambda_search.sweep.compatibility import RUN_TIME, differing_fields

    config = StudyConfig()
    for section, key, _ in _fields():
        stored = config.to_dict()
        stored[section][key] = "another value"
        assert [(s, k) for s, k, _, _ in differing_fields(stored, config)] == \
            ([] if (section, key) in RUN_TIME else [(section, key)])
    # A study stored before a field existed is read with the field's default.
    older = config.to_dict()
    del older["train"]["lr"], older["study"]
    assert differing_fields(older, config) == []
    assert differing_fields(older, config.with_overrides(train={"lr": 1e-3})) == [("train", "lr", 2e-4, 1e-3)]


def test_a_second_storage_proxy_on_a_busy_port_refuses_before_it_touches_its_database(tmp_path):
    """SO_REUSEPORT would let it start and split the workers between two databases; it creates nothing first."""
    with storage_proxy(f"sqlite:///{tmp_path / 'first.db'}") as first:
        second = subprocess.run(proxy_command(f"sqlite:///{tmp_path / 'second.db'}", first.port), capture_output=True,
                                text=True, timeout=60)  # a second proxy that starts serves until killed
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{first.port}: Address already in use" in _one_line(second.stderr)
    assert second.stdout == ""
    assert not (tmp_path / "second.db").exists()  # no file, so no tables


@pytest.mark.slow
def test_a_proxy_that_dies_mid_trial_is_one_line_exit_1_and_the_trial_stays_for_retry(tmp_path):
    import sqlite3

    database = tmp_path / "proxied.db"

    def states() -> list[str]:
        with contextlib.closing(sqlite3.connect(database)) as connection:
            return [state for (state,) in connection.execute("SELECT state FROM trials ORDER BY number")]

    with storage_proxy(f"sqlite:///{database}") as proxy:
        path = _study_file(tmp_path, "study", "storage", proxy.url, study={"heartbeat_seconds": 1},
                           train={"steps": 50_000}, fid={"eval_every": 20})
        worker = subprocess.Popen([sys.executable, "-m", "lambda_search", "run", str(path)], cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            poll(lambda: states() == ["RUNNING"] or None, 120, "the running trial")
            proxy.process.kill()
            _, stderr = worker.communicate(timeout=120)
        finally:
            if worker.poll() is None:
                worker.kill()
    errors = [line for line in stderr.splitlines() if line.startswith("lambda-search:")]
    assert worker.returncode == 1, stderr
    assert len(errors) == 1, stderr
    assert errors[0].startswith("lambda-search: error: lost the storage proxy (UNAVAILABLE"), stderr
    assert "Traceback" not in stderr
    assert states() == ["RUNNING"]  # left for the next worker to find stale and retry
