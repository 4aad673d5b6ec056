"""What `run` tells the user last: where the results are, and the commands to read them, pasteable as printed.

The commands start with the CLI as it was invoked: `.venv/bin/lambda-search` after `make run`
(the venv is not activated), `lambda-search` where that is what the shell finds on PATH.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

PROGRAM = "lambda-search"


def invoked_as(argv0: str | None = None) -> str:
    """The CLI as the user can type it again from here: `lambda-search` if PATH finds this one, else its path."""
    script = Path(sys.argv[0] if argv0 is None else argv0)
    found = shutil.which(PROGRAM)
    if script.name != PROGRAM or (found is not None and Path(found).resolve() == script.resolve()):
        return PROGRAM  # on PATH, or called in-process (python -m, tests): the plain name
    if not script.is_absolute():
        return shlex.quote(str(script))
    try:
        return shlex.quote(str(script.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(script))


def run_ending(storage: str, study: str, artifacts: Path, storage_variable: str) -> list[str]:
    """The last lines of `run`: where the study and its files are, then the commands to read it.

    A URL `storage_variable` holds stays there (the commands read it); a password is never shown.
    """
    from lambda_search.storage_url import mask_password

    shown = None if os.environ.get(storage_variable) == storage else mask_password(storage)
    return [f"results: study {study!r} in {mask_password(storage)}, sample grids and curves in {artifacts}/; next:",
            *(f"  {command}" for command in next_commands(invoked_as(), shown, study))]


def next_commands(program: str, storage: str | None, study: str) -> list[str]:
    """status, report and export of `study`; without `--storage` when `storage` is None (the environment has it)."""
    where = "" if storage is None else f" --storage {shlex.quote(storage)}"
    target = f"{where} --study {shlex.quote(study)}"
    return [f"{program} status{target}",
            f"{program} report{target} -o report.html",
            f"{program} export{target} -o best.yaml"]
