"""Workers behind `lambda-search storage-proxy`: Optuna's gRPC storage API plus lambda-search's own calls.

Through ``grpc://HOST:PORT`` a worker talks to the proxy (`proxy_server`), which alone holds
database connections: their number no longer grows with the workers. The proxy serves
Optuna's storage API, so Optuna's tools work through it, and beside it, on the same port,
the service `SERVICE` with the calls a worker makes in SQL on a direct connection:

- **Claim**: `claim.claim` run in the proxy under the study's database lock, one call per
  claim (up to `limit` trials, `[train] fuse` of them for a fused job). Workers never wait
  for a lock themselves.
- **Beat**: Optuna's heartbeat of running trials, written to its heartbeat table.
- **ClaimRun**: the race's claim (`race.claim.claim_run`), run in the proxy the same way.
- **Hold**: a study's worker lock for a `with` block (opening a study): a streaming
  call that the proxy answers once the lock is held and that holds it until the worker
  ends the call, or its connection drops (a killed worker frees it at once).

Requests and replies are JSON: no generated code on either side.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from typing import Any

import grpc
import optuna
from optuna.storages import GrpcStorageProxy

from lambda_search.errors import StorageError

SERVICE = "lambda_search.Workers"


def method(name: str) -> str:
    """The gRPC path of one of `SERVICE`'s calls."""
    return f"/{SERVICE}/{name}"


class ProxyStorage(GrpcStorageProxy):
    """A gRPC proxy client that knows the study's heartbeat interval and retry limit."""

    def __init__(self, host: str, port: int, heartbeat_seconds: int, max_retries: int) -> None:
        with warnings.catch_warnings():
            # Experimental since Optuna 4.2; one warning per worker says nothing the docs do not.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(host=host, port=port)
        self.heartbeat_seconds = heartbeat_seconds
        self.max_retries = max_retries

    def _call(self, name: str, request: dict[str, Any]) -> Any:
        try:
            reply = self._channel.unary_unary(method(name))(json.dumps(request).encode())
        except grpc.RpcError as error:
            raise _error(error) from None
        return json.loads(reply)

    def claim(self, study_name: str, n_trials: int, limit: int) -> tuple[list[int], int]:
        """`claim.claim` in the proxy: the trial ids started, and how many run elsewhere."""
        reply = self._call("Claim", {"study": study_name, "n_trials": n_trials, "limit": limit,
                                     "heartbeat_seconds": self.heartbeat_seconds, "max_retries": self.max_retries})
        return [int(trial_id) for trial_id in reply["trial_ids"]], int(reply["running"])

    def beat(self, trial_ids: list[int]) -> None:
        self._call("Beat", {"trial_ids": trial_ids})

    def claim_run(self, study_name: str, rules: dict[str, Any]) -> dict[str, Any]:
        """`race.claim.claim_run` in the proxy: `rules` and the reply are `RaceRules` and `ClaimedRun` as dicts."""
        reply: dict[str, Any] = self._call("ClaimRun", {
            "study": study_name, "rules": rules, "heartbeat_seconds": self.heartbeat_seconds,
            "max_retries": self.max_retries})
        return reply

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold the lock `name` in the proxy for the `with` block."""
        call = self._channel.unary_stream(method("Hold"))(json.dumps({"name": name}).encode())
        try:
            next(call)
        except grpc.RpcError as error:
            raise _error(error) from None
        try:
            yield
        finally:
            call.cancel()


def _error(error: grpc.RpcError) -> Exception:
    """A refusal of the proxy's (`FAILED_PRECONDITION`: its message is for the user) as a StorageError."""
    if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.FAILED_PRECONDITION:
        return StorageError(error.details() or "the storage proxy refused the call")
    return error
