"""optuna-dashboard through `lambda-search dashboard`: the study, its trials and their artifacts, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from _workers import free_port

from lambda_search.cli import main
from lambda_search.config import StudyConfig
from lambda_search.names import SAMPLES_FILE
from lambda_search.results.dashboard import UnionArtifactStore, artifact_dirs
from lambda_search.storage_url import sqlite_path
from lambda_search.sweep.storage import open_storage

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def storage(finished_study: str) -> str:
    return finished_study


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


@pytest.fixture(scope="module")
def dashboard(storage: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`lambda-search dashboard` in a subprocess on a free port; yields its base URL."""
    with _serving(storage, tmp_path_factory.mktemp("dashboard-log") / "dashboard.log") as base:
        yield base


@contextlib.contextmanager
def _serving(storage: str, log: Path, *options: str, as_nobody: bool = False) -> Iterator[str]:
    """`as_nobody`: run it as the user `nobody` (root, which runs the tests, ignores file modes)."""
    port = free_port()
    user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if as_nobody else []
    with open(log, "wb") as output:
        process = subprocess.Popen([*user, sys.executable, "-m", "lambda_search", "dashboard", "--storage", storage,
                                    "--port", str(port), *options], cwd=REPOSITORY, stdout=output, stderr=output,
                                   env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/api/studies")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the dashboard did not start:\n{log.read_text()}")
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        # SIGTERM stops it between requests, as a pod's stop would: the way a server is meant to end (exit 0).
        assert process.wait(timeout=30) == 0, log.read_text()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp{,6} (Linux)."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                addresses.add(address)
    return addresses


def test_the_dashboard_serves_the_study_its_trials_and_their_images(dashboard):
    status, _, body = _get(f"{dashboard}/api/studies")
    assert status == 200
    studies = {study["study_name"]: study for study in json.loads(body)["study_summaries"]}
    assert "tiny" in studies
    study_id = studies["tiny"]["study_id"]
    detail = json.loads(_get(f"{dashboard}/api/studies/{study_id}")[2])
    assert detail["objective_names"] == ["FID"]  # not "Objective 0"
    trials = detail["trials"]
    assert len(trials) == 3 and all(trial["state"] == "Complete" for trial in trials)
    for trial in trials:
        artifacts = {artifact["filename"]: artifact for artifact in trial["artifacts"]}
        assert set(artifacts) == {"samples.png", "curves.csv"}
        image = artifacts["samples.png"]
        status, content_type, data = _get(
            f"{dashboard}/artifacts/{study_id}/{trial['trial_id']}/{image['artifact_id']}")
        assert status == 200 and content_type == "image/png" and data.startswith(b"\x89PNG")
        curves = artifacts["curves.csv"]
        data = _get(f"{dashboard}/artifacts/{study_id}/{trial['trial_id']}/{curves['artifact_id']}")[2]
        assert data.decode().startswith("step,generator_loss,discriminator_loss")


def test_the_dashboard_serves_a_read_only_file_in_a_read_only_folder_and_refuses_writes(storage, tmp_path):
    """0444 file in a 0555 folder, served as `nobody`: the study is shown; no table, lock file or note is written."""
    source = sqlite_path(storage)
    assert source is not None
    folder = Path(tempfile.mkdtemp(prefix="read-only-"))
    try:
        copy = folder / source.name
        copy.write_bytes(source.read_bytes())
        copy.chmod(0o444)
        folder.chmod(0o555)
        with _serving(f"sqlite:///{copy}", tmp_path / "dashboard.log", as_nobody=True) as base:
            studies = json.loads(_get(f"{base}/api/studies")[2])["study_summaries"]
            study_id = next(study["study_id"] for study in studies if study["study_name"] == "tiny")
            status, _, body = _get(f"{base}/api/studies/{study_id}")
            assert status == 200 and len(json.loads(body)["trials"]) == 3
            note = urllib.request.Request(f"{base}/api/studies/{study_id}/note", method="PUT",
                                          data=json.dumps({"version": 0, "body": "a note"}).encode(),
                                          headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(note, timeout=10)
            assert refused.value.code == 403
            assert "read-only" in json.loads(refused.value.read())["reason"]
        assert sorted(path.name for path in folder.iterdir()) == [source.name]
        assert copy.read_bytes() == source.read_bytes()
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_the_dashboard_listens_on_loopback_only(dashboard):
    port = int(dashboard.rsplit(":", 1)[1])
    # 127.0.0.1 in /proc/net/tcp's little-endian hex; an any-address bind would read 00000000.
    assert _listening_addresses(port) == {"0100007F"}


def test_studies_with_different_artifact_directories_are_all_served(tmp_path):
    url = f"sqlite:///{tmp_path / 'many.db'}"
    storage = open_storage(url)
    for name, directory in (("a", ""), ("b", str(tmp_path / "elsewhere"))):
        study = optuna.create_study(study_name=name, storage=storage)
        study.set_user_attr("config", StudyConfig().with_overrides(
            study={"name": name, "storage": url, "artifacts": directory}).to_dict())
    directories = artifact_dirs(storage, url)
    assert directories == [tmp_path / "many.artifacts", tmp_path / "elsewhere"]
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "0f0f").write_bytes(b"image")
    with UnionArtifactStore(directories).open_reader("0f0f") as reader:
        assert reader.read() == b"image"
    with pytest.raises(optuna.artifacts.exceptions.ArtifactNotFound):
        UnionArtifactStore(directories).open_reader("0a0a")


def test_a_missing_sqlite_storage_is_exit_2_and_not_created(tmp_path, capsys):
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'absent.db'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()


def test_artifacts_mounted_as_compose_and_k8s_mount_them_are_served(tmp_path):
    """`--artifacts /artifacts` while the study writes under /artifacts/<name> (studies/mnist-postgres.toml)."""
    import yaml
    from PIL import Image

    compose = yaml.safe_load((REPOSITORY / "docker-compose.yml").read_text())["services"]["dashboard"]
    flag = compose["command"].index("--artifacts")
    assert compose["command"][flag + 1] == "/artifacts"  # the folder the workers' volume is mounted at
    mount = tmp_path / "artifacts"
    url = f"sqlite:///{tmp_path / 'mounted.db'}"
    storage = open_storage(url)
    study = optuna.create_study(study_name="mounted", storage=storage)
    study.set_user_attr("config", StudyConfig().with_overrides(
        study={"name": "mounted", "storage": url, "artifacts": str(mount / "mounted")}).to_dict())
    trial = study.ask()
    image = tmp_path / SAMPLES_FILE
    Image.new("L", (8, 8)).save(image)
    (mount / "mounted").mkdir(parents=True)
    artifact_id = optuna.artifacts.upload_artifact(
        artifact_store=optuna.artifacts.FileSystemArtifactStore(str(mount / "mounted")), file_path=str(image),
        study_or_trial=trial)
    study.tell(trial, 1.0)
    with _serving(url, tmp_path / "dashboard.log", "--artifacts", str(mount)) as base:
        [summary] = json.loads(_get(f"{base}/api/studies")[2])["study_summaries"]
        [served] = json.loads(_get(f"{base}/api/studies/{summary['study_id']}")[2])["trials"]
        status, content_type, data = _get(f"{base}/artifacts/{summary['study_id']}/{served['trial_id']}/{artifact_id}")
    assert status == 200 and content_type == "image/png" and data == image.read_bytes()
