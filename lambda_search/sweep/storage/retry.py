"""The one retry loop of the storage adapter: call again, a second later, after an error worth another try.

Each caller says which errors are worth it: opening a storage retries only a connection
that died in use (`storage.lost_connection`); a claim retries any lost or refused
connection, since its transaction started nothing (`claim.claim_trials`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

Result = TypeVar("Result")

# The pause before another try: long enough for a restarted database to accept connections again.
PAUSE_SECONDS = 1


def retrying(call: Callable[[], Result], retries: int, worth_retrying: Callable[[Exception], bool],
             warning: str = "") -> Result:
    """`call()`, tried again up to `retries` times while it raises an error that `worth_retrying` accepts.

    Args:
        warning: logged before each new try ("" logs nothing).

    Raises:
        Exception: the last error, or the first that is not worth retrying, as `call` raised it.
    """
    for retry in range(retries + 1):
        try:
            return call()
        except Exception as error:
            if retry == retries or not worth_retrying(error):
                raise
            if warning:
                log.warning(warning)
            time.sleep(PAUSE_SECONDS)
    raise AssertionError("unreachable")
