"""docker-compose.yml and the Dockerfile: no Docker engine here, so check what a user relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lambda_search.config import load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_postgres_is_the_official_image_with_a_secret_password_a_volume_and_a_healthcheck(compose):
    postgres = compose["services"]["postgres"]
    assert postgres["image"].split(":")[0] == "postgres"
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not a host folder
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "ports" not in postgres


def test_workers_run_the_study_on_the_postgres_service_with_one_gpu_each_and_scale(compose):
    worker = compose["services"]["worker"]
    command = worker["command"]
    assert command[:3] == ["lambda-search", "run", "studies/mnist-postgres.toml"]
    assert "--storage" not in command  # a password in argv would show in `ps`
    storage = worker["environment"]["LAMBDA_SEARCH_STORAGE"]
    assert storage.startswith("postgresql+psycopg://") and "@postgres:5432/" in storage
    assert "${POSTGRES_PASSWORD:?" in storage  # from .env, never written in the file
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    # --scale worker=N needs neither a fixed name nor a fixed host port.
    assert "container_name" not in worker and "ports" not in worker
    assert (ROOT / worker["build"]).resolve() == ROOT


def test_the_study_file_the_workers_run_is_valid_and_shares_its_checkpoints(compose):
    config = load_config(ROOT / "studies" / "mnist-postgres.toml")
    assert config.study.storage == ""  # the URL (and its password) comes from the environment
    mounts = [volume.split(":") for volume in compose["services"]["worker"]["volumes"]]
    assert any(config.study.artifacts.startswith(target) and name in compose["volumes"]
               for name, target, *_ in mounts)


def test_the_dashboard_reads_the_same_storage_and_listens_on_localhost_only(compose):
    dashboard = compose["services"]["dashboard"]
    assert dashboard["command"][:2] == ["lambda-search", "dashboard"]
    assert dashboard["environment"]["LAMBDA_SEARCH_STORAGE"] == \
        compose["services"]["worker"]["environment"]["LAMBDA_SEARCH_STORAGE"]
    assert dashboard["ports"] == ["127.0.0.1:8080:8080"]


def test_the_dockerfile_installs_the_package_with_the_pinned_constraints():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "\nFROM python:3.11" in dockerfile
    # The pinned dependencies get their own layer, before the code: a code change does not reinstall torch.
    dependencies = dockerfile.index("pip install -c constraints.txt -r")
    code = dockerfile.index("COPY lambda_search")
    assert dockerfile.index("COPY pyproject.toml constraints.txt") < dependencies < code
    assert "pip install --no-deps ." in dockerfile
    assert "\nUSER " in dockerfile  # not root
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored
