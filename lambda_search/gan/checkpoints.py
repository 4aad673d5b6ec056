"""Files a trial leaves behind: checkpoints to resume from, sample grids and curves.

A checkpoint holds the trial's FID evaluations so far beside its training state, so a
trial stopped at its last step resumes into its final evaluation with its curve whole.
Checkpoints are written atomically (temp file, then rename) and read with
``weights_only=True``; a corrupted one, or one of another study, trial, λ or training
configuration, is reported and ignored, never trusted.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from lambda_search._files import write_atomically
from lambda_search.gan.train import GanState
from lambda_search.names import CURVE_COLUMNS, CURVES_FILE, SAMPLES_FILE

log = logging.getLogger(__name__)

GRID_SIZE = 64


@dataclass(frozen=True)
class CheckpointOwner:
    """Whose training a checkpoint is: it is restored only into the same study, trial, λ and training."""

    study: str
    trial: int  # the original trial: its retries resume from and overwrite its checkpoint
    lam: float
    # StudyConfig.training_identity(): what makes two runs the same training (not where they run).
    training: dict[str, Any]


def checkpoint_path(directory: Path, owner: CheckpointOwner) -> Path:
    """One file per study and original trial: studies sharing an SQLite file share `directory`."""
    return directory / "checkpoints" / owner.study / f"trial-{owner.trial}.pt"


def save_checkpoint(directory: Path, owner: CheckpointOwner, state: GanState,
                    evaluations: Sequence[dict[str, float]] = ()) -> Path:
    """Write the owner's checkpoint: `state` and the FID `evaluations` made up to its step."""
    path = checkpoint_path(directory, owner)
    payload = {**state.state_dict(), "study": owner.study, "trial": owner.trial, "lambda": owner.lam,
               "training": json.dumps(owner.training, sort_keys=True), "evaluations": list(evaluations)}
    write_atomically(path, lambda stream: torch.save(payload, stream))
    return path


def load_checkpoint(directory: Path, owner: CheckpointOwner, state: GanState) -> list[dict[str, float]] | None:
    """Restore `state` from the owner's checkpoint if it is usable and really the owner's.

    Returns:
        The FID evaluations made up to the restored step (empty for a checkpoint written
        without them); None (state untouched) when absent, corrupted, or of another
        study, trial, λ or training configuration.
    """
    path = checkpoint_path(directory, owner)
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if mismatch := _mismatch(saved, owner):
            log.warning("checkpoint %s is for %s; starting from step 0", path, mismatch)
            return None
        evaluations = [dict(entry) for entry in saved.get("evaluations", [])]
        state.load_state_dict(saved)
    except Exception as error:  # whatever is wrong with the file, it is not to be trusted
        log.warning("checkpoint %s is unreadable (%s); starting from step 0", path, type(error).__name__)
        return None
    return evaluations


def _mismatch(saved: dict[str, Any], owner: CheckpointOwner) -> str | None:
    if saved.get("study") != owner.study or saved.get("trial") != owner.trial:
        return f"study {saved.get('study')!r} trial {saved.get('trial')}, not {owner.study!r} trial {owner.trial}"
    if float(saved["lambda"]) != owner.lam:
        return f"λ={saved['lambda']}, not {owner.lam}"
    if saved.get("training") != json.dumps(owner.training, sort_keys=True):
        return "another training configuration"
    return None


def remove_checkpoint(directory: Path, owner: CheckpointOwner) -> None:
    checkpoint_path(directory, owner).unlink(missing_ok=True)


def curve_rows(history: list[dict[str, float]], fid_curve: list[dict[str, float]]) -> list[dict[str, float | str]]:
    """Loss history and FID evaluations merged into rows by step (blank where not measured)."""
    rows: dict[int, dict[str, float | str]] = {}
    for entry in [*history, *fid_curve]:
        row = rows.setdefault(int(entry["step"]), {column: "" for column in CURVE_COLUMNS})
        row.update(entry)
    return [rows[step] for step in sorted(rows)]


def write_trial_files(directory: Path, state: GanState, fid_curve: list[dict[str, float]],
                      noise: torch.Tensor) -> list[Path]:
    """Write a trial's sample grid and curves CSV into `directory`; returns their paths."""
    generator = state.generator
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        samples = generator(noise[:GRID_SIZE]).cpu()  # (64, C, H, W) in [-1, 1]
    generator.train(was_training)
    grid = io.BytesIO()
    save_image(samples, grid, format="png", nrow=8, normalize=True, value_range=(-1, 1))
    samples_path = directory / SAMPLES_FILE
    write_atomically(samples_path, lambda stream: stream.write(grid.getvalue()))

    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CURVE_COLUMNS)
    writer.writeheader()
    writer.writerows(curve_rows(state.history, fid_curve))
    curves_path = directory / CURVES_FILE
    write_atomically(curves_path, lambda stream: stream.write(table.getvalue().encode()))
    return [samples_path, curves_path]
