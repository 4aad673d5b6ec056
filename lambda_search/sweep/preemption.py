"""SIGTERM and SIGINT during a trial: noted at once, acted on at the next training step boundary.

A scheduler preempts with SIGTERM and kills a little later (SLURM's grace period,
Kubernetes' terminationGracePeriodSeconds); a person stops with Ctrl-C. Raising from
the signal handler would leave the networks halfway through an optimizer step, so
inside `noted_signals` the handler only records the signal; the training loop calls
`Stop.check` after every step, which checkpoints (through the caller's `save`) and
raises `Preempted`. A second signal raises at once: a person pressing Ctrl-C twice
wants out now.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from lambda_search.errors import Interrupted, Preempted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stop:
    """The signal noted inside `noted_signals`, if any."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum

    def check(self, save: Callable[[], dict[int, int]]) -> None:
        """Raise `Preempted` if a signal came; `save` checkpoints and returns {trial number: step}."""
        if self.signum is not None:
            raise Preempted(self.signum, save())


@contextlib.contextmanager
def noted_signals() -> Iterator[Stop]:
    """Within: SIGTERM/SIGINT are noted on the yielded `Stop`, not raised; on leaving, one still
    pending (it came after the last step, e.g. while the trial was told) raises `Interrupted`.

    Outside the main thread (where Python delivers no signal) nothing is installed.
    """
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {signum: signal.signal(signum, stop.note) for signum in SIGNALS}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stop.signum is not None:
        raise Interrupted(stop.signum)
