"""The architecture holds: the read side imports no torch, and Optuna is the version the adapter was written for."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from lambda_search.sweep.storage import SUPPORTED_OPTUNA

READ_SIDE = "lambda_search.results.report, lambda_search.results.export, lambda_search.results.compare"


def test_the_read_side_imports_no_torch():
    # A fresh interpreter: this test process has long imported torch.
    code = f"import sys, {READ_SIDE}; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_status_report_and_export_run_without_torch(finished_study, tmp_path):
    commands = [["status", "--storage", finished_study, "--study", "tiny"],
                ["report", "--storage", finished_study, "--study", "tiny", "-o", str(tmp_path / "report.html")],
                ["export", "--storage", finished_study, "--study", "tiny", "-o", str(tmp_path / "best.yaml")]]
    code = ("import sys; from lambda_search.cli import main; "
            f"codes = [main(command) for command in {commands!r}]; "
            "assert codes == [0, 0, 0], codes; assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report.html").stat().st_size > 0 and (tmp_path / "best.yaml").stat().st_size > 0


def test_the_installed_optuna_is_one_the_storage_adapter_was_written_for():
    version = tuple(int(part) for part in metadata.version("optuna").split(".")[:2])
    low, high = SUPPORTED_OPTUNA
    assert low <= version < high, f"optuna {version} is outside {low} … {high}: check sweep/storage.py"
