"""bench/same_runs.py, the before/after check of a refactor: a copy matches, one changed FID is named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import sqlalchemy

from lambda_search.storage_url import sqlite_path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "same_runs.py"


def _compare(before: str, after: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), before, after, "--study", "tiny"],
                          capture_output=True, text=True, check=False)


def test_a_copy_matches_and_a_changed_fid_is_named(finished_study, tmp_path):
    copy = tmp_path / "after.db"
    shutil.copy(sqlite_path(finished_study), copy)
    after = f"sqlite:///{copy}"
    same = _compare(finished_study, after)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.strip().endswith("0 differ")

    # The control's stored FID moved in its last bits, as a rerun that is not the same computation would move it.
    with sqlalchemy.create_engine(after).begin() as connection:
        connection.execute(sqlalchemy.text(
            "UPDATE trial_values SET value = value + 1e-9 WHERE trial_id IN (SELECT trial_id FROM trials "
            "JOIN studies ON trials.study_id = studies.study_id WHERE study_name = 'tiny.control')"))
    changed = _compare(finished_study, after)
    assert changed.returncode == 1
    assert "tiny.control trial 0:" in changed.stdout and changed.stdout.strip().endswith("1 differ")
