"""deploy/k8s agrees with the CLI: the commands parse with the real parser, the storage comes from
LAMBDA_SEARCH_STORAGE in a Secret, the dashboard listens where the CLI's default says."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lambda_search.cli import STORAGE_VARIABLE, build_parser

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"


def _documents(name: str) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((K8S / name).read_text())}


def _container(workload: dict) -> dict:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container


def _parse(command: list[str], monkeypatch) -> object:
    assert command[0] == "lambda-search"
    monkeypatch.setenv(STORAGE_VARIABLE, "postgresql+psycopg://from-the-secret/db")
    return build_parser().parse_args(command[1:])  # a bad flag exits 2 here


def _storage_from_secret(container: dict) -> None:
    env = {entry["name"]: entry for entry in container["env"]}
    assert "secretKeyRef" in env[STORAGE_VARIABLE]["valueFrom"]


def test_the_workers_are_an_indexed_job_of_gpu_pods_running_a_real_study_file(monkeypatch):
    job = _documents("workers.yaml")["Job"]
    assert job["spec"]["completionMode"] == "Indexed"
    container = _container(job)
    args = _parse(container["command"], monkeypatch)
    assert args.command == "run" and (ROOT / args.study_file).exists()
    assert args.storage.startswith("postgresql")  # from the environment, never in argv
    _storage_from_secret(container)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    # The shared volume holds what the study file names as its artifact folder (checkpoints).
    from lambda_search.config import load_config

    artifacts = load_config(ROOT / args.study_file).study.artifacts
    [mount] = container["volumeMounts"]
    assert artifacts.startswith(mount["mountPath"])
    claim = job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert _documents("workers.yaml")["PersistentVolumeClaim"]["metadata"]["name"] == claim
    # The grace period covers the checkpoint on SIGTERM, as SLURM's --signal=TERM@120 does.
    assert job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60


def test_the_dashboard_serves_on_the_cli_default_port_behind_its_service(monkeypatch):
    documents = _documents("dashboard.yaml")
    container = _container(documents["Deployment"])
    args = _parse(container["command"], monkeypatch)
    default_port = build_parser().parse_args(["dashboard", "--storage", "sqlite://"]).port
    assert args.command == "dashboard" and args.port == default_port
    assert container["ports"][0]["containerPort"] == default_port
    assert documents["Service"]["spec"]["ports"][0]["targetPort"] == default_port
    _storage_from_secret(container)


def test_a_flag_the_cli_does_not_know_would_be_caught(monkeypatch):
    with pytest.raises(SystemExit):
        _parse(["lambda-search", "run", "studies/mnist-postgres.toml", "--gpus", "1"], monkeypatch)


def _image_uid() -> int:
    """The uid the Dockerfile's user runs as (`useradd … --uid N`)."""
    import re

    match = re.search(r"useradd\b[^\n]*--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert match, "the Dockerfile creates no user with --uid"
    return int(match.group(1))


@pytest.mark.parametrize(("name", "kind"), [("workers.yaml", "Job"), ("dashboard.yaml", "Deployment")])
def test_pods_pull_a_released_image_from_a_registry_and_own_the_volume_as_the_image_user(name, kind):
    from lambda_search import __version__

    pod = _documents(name)[kind]["spec"]["template"]["spec"]
    container = _container(_documents(name)[kind])
    registry, _, tagged = container["image"].partition("/")
    assert "." in registry, f"{container['image']}: no registry host; a cluster cannot pull a local build"
    assert tagged == f"lambda-search:{__version__}"  # a release tag, never :latest
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["securityContext"]["fsGroup"] == _image_uid()
    readme = (K8S / "README.md").read_text()
    assert f"docker build -t {container['image']} ." in readme and f"docker push {container['image']}" in readme
