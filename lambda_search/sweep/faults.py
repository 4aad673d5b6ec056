"""Named points of a trial's life where the fault-injection tests kill a worker.

``LAMBDA_SEARCH_FAULT=<point>:<signal>[,<point>:<signal>...]`` (e.g.
``mid-training:SIGTERM,hand-back:SIGKILL``), set only by tests, makes the worker send
itself that signal the first time it reaches the point; unset, `fault_point` is one
cached lookup. The points, in the order a trial meets them:
"""

from __future__ import annotations

import functools
import logging
import os
import signal

from lambda_search.errors import ConfigError

log = logging.getLogger(__name__)

ENV = "LAMBDA_SEARCH_FAULT"

POINTS = (
    "claim",  # the trial is started (RUNNING, first heartbeat written), before its λ is sampled
    "setup",  # its setup attributes are stored, before its first step
    "mid-training",  # after the step halfway to `steps`
    "last-step",  # after the last step, before its final FID evaluation
    "final-evaluation",  # within the final evaluation: scored, not yet reported
    "tell",  # its files uploaded, before it is told COMPLETE
    "hand-back",  # preempted: its WAITING copy is queued, the original not yet told FAIL
)

_fired: set[str] = set()


@functools.cache
def _armed() -> dict[str, signal.Signals]:
    armed = {}
    for entry in filter(None, os.environ.get(ENV, "").split(",")):
        point, _, name = entry.partition(":")
        if point not in POINTS or name not in signal.Signals.__members__:
            raise ConfigError(f"{ENV}: {entry!r} is not <point>:<signal> with a point of {', '.join(POINTS)}")
        armed[point] = signal.Signals[name]
    return armed


def fault_point(name: str) -> None:
    """Send this process the signal armed at point `name`, the first time it is reached."""
    signum = _armed().get(name)
    if signum is None or name in _fired:
        return
    _fired.add(name)
    log.warning("fault injected: %s at %s", signum.name, name)
    os.kill(os.getpid(), signum)


def after_step(step: int, steps: int) -> None:
    """The point a training loop passes after each step: "mid-training" is the one halfway to `steps`."""
    if step == steps // 2:
        fault_point("mid-training")
