"""Heartbeats of running trials in Optuna's heartbeat table, directly or through the storage proxy."""

from __future__ import annotations

import threading

import grpc
import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage

from lambda_search.sweep.storage.grpc_proxy import ProxyStorage


def record_heartbeat(storage: BaseStorage, trial_id: int) -> None:
    """One heartbeat of a running trial in Optuna's heartbeat table (through a proxy: in the proxy)."""
    if isinstance(storage, ProxyStorage):
        storage.beat([trial_id])
    else:
        assert isinstance(storage, RDBStorage)
        storage.record_heartbeat(trial_id)


class Heartbeat:
    """Records a heartbeat for some running trials every `interval` seconds, in a thread.

    Optuna beats only inside `study.optimize`; the ask/tell loop here beats itself,
    for one trial or for a fused group of them.
    """

    def __init__(self, storage: BaseStorage, trial_ids: list[int], interval: float) -> None:
        self._storage = storage
        self._trial_ids = list(trial_ids)
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_stopped, daemon=True, name="heartbeat")

    def __enter__(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _beat(self) -> None:
        for trial_id in self._trial_ids:
            record_heartbeat(self._storage, trial_id)

    def _beat_until_stopped(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._beat()
            except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ConnectionError,
                    grpc.RpcError):
                # The database blinked: the next beat retries; a long outage makes the trial stale.
                optuna.logging.get_logger(__name__).warning("heartbeat failed; retrying")
