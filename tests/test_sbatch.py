"""deploy/slurm/sweep.sbatch without a cluster: what it asks SLURM for, and which CLI it runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "slurm" / "sweep.sbatch"


def _directives() -> list[str]:
    return [line.split(None, 1)[1] for line in SCRIPT.read_text().splitlines() if line.startswith("#SBATCH ")]


def test_each_task_asks_for_a_gpu_and_says_how_to_drop_it():
    assert "--gres=gpu:1" in _directives()
    assert "sbatch --gres=none" in SCRIPT.read_text()  # the CPU clusters' override, tested in test_slurm.py


def test_a_cli_that_is_not_there_is_one_line_naming_the_variable_and_exit_2(tmp_path):
    environment = {**os.environ, "LAMBDA_SEARCH_STORAGE": "sqlite://", "LAMBDA_SEARCH": str(tmp_path / "absent")}
    result = subprocess.run(["bash", str(SCRIPT), "study.toml"], env=environment, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"sweep.sbatch: {tmp_path / 'absent'} not found: export LAMBDA_SEARCH=/path/to/.venv/bin/lambda-search"]
