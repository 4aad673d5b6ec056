"""The storage adapter's one retry loop: which errors it tries again, how often, and what it raises then."""

from __future__ import annotations

import pytest

from lambda_search.sweep.storage import retry
from lambda_search.sweep.storage.retry import retrying


class Lost(Exception):
    pass


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch):
    monkeypatch.setattr(retry, "PAUSE_SECONDS", 0)


def failing(errors: list[Exception]):
    """A call that raises `errors` in turn, then returns how many calls it took."""
    calls = []

    def call() -> int:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return len(calls)

    return call, calls


def test_errors_worth_retrying_are_tried_again_until_the_call_succeeds(caplog):
    call, _ = failing([Lost(), Lost()])
    assert retrying(call, 2, lambda error: isinstance(error, Lost), "lost; retrying") == 3
    assert caplog.text.count("lost; retrying") == 2


def test_after_its_retries_the_last_error_is_raised_as_it_was():
    last = Lost("third")
    call, calls = failing([Lost("first"), Lost("second"), last])
    with pytest.raises(Lost) as raised:
        retrying(call, 2, lambda error: isinstance(error, Lost))
    assert raised.value is last and len(calls) == 3


def test_an_error_not_worth_retrying_is_raised_at_once():
    call, calls = failing([ValueError("bad input")])
    with pytest.raises(ValueError, match="bad input"):
        retrying(call, 5, lambda error: isinstance(error, Lost))
    assert len(calls) == 1
