"""Files a trial leaves behind: checkpoints to resume from, sample grids and curves.

Checkpoints are written atomically (temp file, then rename) and read with
``weights_only=True``; a corrupted one is reported and ignored, never trusted.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import torch
from torchvision.utils import save_image

from lambda_search._files import write_atomically
from lambda_search.gan.train import GanState
from lambda_search.names import CURVE_COLUMNS, CURVES_FILE, SAMPLES_FILE

log = logging.getLogger(__name__)

GRID_SIZE = 64


def checkpoint_path(directory: Path, trial_number: int) -> Path:
    """One checkpoint file per original trial: its retries resume from and overwrite it."""
    return directory / "checkpoints" / f"trial-{trial_number}.pt"


def save_checkpoint(path: Path, state: GanState, lam: float) -> None:
    payload = {**state.state_dict(), "lambda": lam}
    write_atomically(path, lambda stream: torch.save(payload, stream))


def load_checkpoint(path: Path, state: GanState, lam: float) -> bool:
    """Restore `state` from `path` if it holds a usable checkpoint of the same λ.

    Returns:
        True when restored; False (state untouched) when absent, corrupted or for another λ.
    """
    if not path.exists():
        return False
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if float(saved["lambda"]) != lam:
            log.warning("checkpoint %s is for λ=%s, not %s; starting from step 0", path, saved["lambda"], lam)
            return False
        state.load_state_dict(saved)
    except Exception as error:  # whatever is wrong with the file, it is not to be trusted
        log.warning("checkpoint %s is unreadable (%s); starting from step 0", path, type(error).__name__)
        return False
    return True


def remove_checkpoint(path: Path) -> None:
    path.unlink(missing_ok=True)


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
