"""The README's quickstart, run as written: every command of its block, in order, on a tiny study file.

The block runs in a fresh folder holding `.venv` (this interpreter's) and a tiny
`studies/quickstart.toml` of the same name and storage, so the commands are the README's own
text; `make run` is replaced by the recipe `make -n` prints for it (nothing is installed).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lambda_search.config import StudyConfig

REPOSITORY = Path(__file__).resolve().parents[1]
README = (REPOSITORY / "README.md").read_text()

TINY_QUICKSTART = """
[study]
name = "quickstart"
storage = "sqlite:///studies/quickstart.db"
n_trials = 1
strategy = "sweep"

[search]
control = false

[data]
dataset = "mnist-5k"

[train]
steps = 20
batch_size = 16
width = 8
latent_dim = 16
device = "cpu"
checkpoint_every = 0
threads = 1

[fid]
n_samples = 128
n_real = 500
eval_every = 10
"""


def _section(heading: str) -> str:
    start = README.index(f"\n## {heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def _code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks of `text`, in order."""
    return [block.split("\n", 1)[1] for block in text.split("```")[1::2] if block.startswith(f"{language}\n")]


def quickstart_commands() -> list[list[str]]:
    """Every command of the quickstart section's shell blocks, as argv, comments dropped."""
    commands = [shlex.split(line, comments=True) for block in _code_blocks(_section("Quickstart"), "sh")
                for line in block.splitlines()]
    return [command for command in commands if command]


def _make_run_recipe() -> list[list[str]]:
    """What `make run` runs once installed: its recipe, printed by `make -n` (the install stamp taken as done)."""
    printed = subprocess.run(["make", "-s", "-n", "--no-print-directory", "-C", str(REPOSITORY),
                              "-o", ".venv/.installed", "run"], capture_output=True, text=True, check=True)
    recipe = [shlex.split(line) for line in printed.stdout.splitlines() if line.strip()]
    assert len(recipe) == 1 and recipe[0][0] == ".venv/bin/lambda-search", printed.stdout  # never an install step
    return recipe


def test_the_quickstart_block_is_make_run_then_the_cli_from_the_venv():
    commands = quickstart_commands()
    assert commands[0] == ["make", "run"]
    assert {command[1] for command in commands[1:]} >= {"status", "report", "export", "train"}
    assert all(command[0] == ".venv/bin/lambda-search" for command in commands[1:])  # no activate assumed


def test_the_study_file_section_lists_every_key_with_its_default():
    [block] = _code_blocks(_section("The study file"), "toml")
    assert tomllib.loads(block) == StudyConfig().to_dict()


@pytest.mark.slow
def test_every_quickstart_command_exits_0_in_order_as_written(tmp_path, warm_cache):
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "quickstart.toml").write_text(TINY_QUICKSTART)
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}  # this checkout's package, as an editable install
    environment.pop("LAMBDA_SEARCH_STORAGE", None)
    printed: list[str] = []
    for command in quickstart_commands():
        for argv in _make_run_recipe() if command == ["make", "run"] else [command]:
            result = subprocess.run(argv, cwd=tmp_path, env=environment, capture_output=True, text=True)
            assert result.returncode == 0, f"{shlex.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}"
            printed += result.stdout.splitlines()
    assert (tmp_path / "report.html").stat().st_size > 0 and (tmp_path / "runs" / "best" / "checkpoint.pt").exists()
    # `run` ends with the next commands, exactly as the README writes them.
    suggested = [shlex.split(line) for line in printed if line.startswith("  .venv/bin/lambda-search ")]
    assert [command[1] for command in suggested] == ["status", "report", "export"]
    assert all(command in quickstart_commands() for command in suggested)
