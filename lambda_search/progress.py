"""How the command line shows a trial's training: a tqdm bar on a terminal, log lines elsewhere (a job's log)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

log = logging.getLogger(__name__)


class _TqdmProgress:
    def __init__(self, bar: object) -> None:
        self._bar = bar

    def update(self, step: int, losses: dict[str, float]) -> None:
        bar = self._bar
        bar.n = step  # type: ignore[attr-defined]
        bar.set_postfix(G=f"{losses['generator_loss']:.3f}", D=f"{losses['discriminator_loss']:.3f}")  # type: ignore[attr-defined]


class _LogProgress:
    """Five log lines per trial where there is no terminal to draw a bar on."""

    def __init__(self, number: int, total: int) -> None:
        self._number = number
        self._every = max(1, total // 5)
        self._next = self._every

    def update(self, step: int, losses: dict[str, float]) -> None:
        if step >= self._next:
            self._next += self._every
            log.info("trial %d step %d: G %.3f D %.3f", self._number, step,
                     losses["generator_loss"], losses["discriminator_loss"])


@contextlib.contextmanager
def terminal_progress(number: int, lam: float, total: int) -> Iterator[_TqdmProgress | _LogProgress]:
    """A trial's progress (a `gan.train.ProgressFactory`): a tqdm bar on a terminal, else five log lines."""
    if not sys.stderr.isatty():
        yield _LogProgress(number, total)
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=f"trial {number} λ={lam:.2e}", unit="step", leave=False) as bar:
        yield _TqdmProgress(bar)
