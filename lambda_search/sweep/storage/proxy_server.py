"""`lambda-search storage-proxy`: Optuna's gRPC storage proxy plus the calls of `grpc_proxy.SERVICE`.

One process, one port: Optuna's servicer for its storage API, and beside it a generic handler
(JSON in, JSON out) that claims trials and race runs in the proxy (`claim.claim`,
`race.claim.claim_run`), records heartbeats and holds worker locks. Claims of one study wait for each other here, in the
process, before one of them takes the database lock: waiting workers cost a thread each,
never a database connection, so the proxy's pool bounds the connections whatever the workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._grpc.auto_generated import api_pb2_grpc
from optuna.storages._grpc.servicer import OptunaStorageProxyService

from lambda_search.errors import LambdaSearchError, ResourceError
from lambda_search.names import control_name
from lambda_search.sweep.race.claim import RaceRules, claim_run
from lambda_search.sweep.storage import claim, locks
from lambda_search.sweep.storage.access import retry_callback
from lambda_search.sweep.storage.grpc_proxy import SERVICE
from lambda_search.sweep.storage.locks import worker_lock
from lambda_search.sweep.storage.opening import open_database

# Server threads: one per worker waiting in a claim or holding a lock, and the storage calls of
# the others. More workers than this queue their calls in gRPC (slower, never wrong).
THREADS = 256


class WorkerService:
    """The calls of `grpc_proxy.SERVICE`, on the proxy's database."""

    def __init__(self, database: RDBStorage, storage: BaseStorage) -> None:
        self._database = database
        self._storage = storage  # Optuna's cache in front of `database`: what its servicer serves
        self._studies: dict[str, optuna.Study] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def handler(self) -> grpc.GenericRpcHandler:
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Claim": unary(self._json(self.claim)),
            "Beat": unary(self._json(self.beat)),
            "ClaimRun": unary(self._json(self.claim_run)),
            "Hold": grpc.unary_stream_rpc_method_handler(self.hold),
        })

    @staticmethod
    def _json(call: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                return json.dumps(call(json.loads(request))).encode()
            except LambdaSearchError as error:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
            except KeyError as error:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"no such study or trial: {error}")
            raise AssertionError("unreachable")  # abort raises
        return handle

    def claim(self, request: dict[str, Any]) -> dict[str, Any]:
        study = self._study(request["study"])
        with self._local(locks.lock_name(study.study_name)):
            claimed = claim.claim(self._database, study, int(request["n_trials"]), int(request["limit"]),
                                  2 * float(request["heartbeat_seconds"]),
                                  retry_callback(int(request["max_retries"])))
        return {"trial_ids": claimed.trial_ids, "running": claimed.running}

    def beat(self, request: dict[str, Any]) -> dict[str, Any]:
        for trial_id in request["trial_ids"]:
            self._database.record_heartbeat(int(trial_id))
        return {}

    def claim_run(self, request: dict[str, Any]) -> dict[str, Any]:
        study = self._study(request["study"])
        control = self._study(control_name(study.study_name))
        with self._local(locks.lock_name(study.study_name)):
            claimed = claim_run(self._database, study, control, RaceRules(**request["rules"]),
                                2 * float(request["heartbeat_seconds"]),
                                retry_callback(int(request["max_retries"])))
        return dataclasses.asdict(claimed)

    def hold(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Hold a study's worker lock until the caller ends the call (or its connection drops)."""
        name = json.loads(request)["name"]
        ended = threading.Event()
        context.add_callback(ended.set)
        with self._local(locks.lock_name(name)), worker_lock(self._database, name):
            yield b"{}"
            ended.wait()

    def _study(self, name: str) -> optuna.Study:
        with self._guard:
            if name not in self._studies:
                self._studies[name] = optuna.load_study(study_name=name, storage=self._storage)
            return self._studies[name]

    @contextlib.contextmanager
    def _local(self, name: str) -> Iterator[None]:
        """The in-process turn of lock `name`: one thread per lock goes to the database at a time."""
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=locks.LOCK_WAIT_SECONDS):
            raise locks.waited_too_long(name)
        try:
            yield
        finally:
            lock.release()


def bind(database_url: str, host: str, port: int) -> grpc.Server:
    """A server for the database at `database_url`, bound to host:port and not yet started (`serve` starts it).

    The port is checked before the database is opened: a second proxy on a taken port
    refuses without creating tables in (or a file for) the database it was given.
    SO_REUSEPORT off: a second proxy on a taken port would otherwise start and split the
    workers between two databases.

    Raises:
        ResourceError: the port is taken (by another proxy too) or the address is not this machine's.
        ConfigError, StorageError: the database URL is not one, or the database cannot be reached.
    """
    _refuse_taken(host, port)
    database = open_database(database_url)
    storage = optuna.storages.get_storage(database)  # Optuna's cache in front of the database
    server = grpc.server(ThreadPoolExecutor(max_workers=THREADS), options=[("grpc.so_reuseport", 0)])
    api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    server.add_generic_rpc_handlers((WorkerService(database, storage).handler(),))
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # newer grpc raises where older returned 0
        bound = 0
    if not bound:
        raise ResourceError(f"cannot listen on {host}:{port}: the port is taken (another storage-proxy?) "
                            "or the address is not this machine's")
    return server


def _refuse_taken(host: str, port: int) -> None:
    # A plain socket first: gRPC's own refusal below also logs lines of its own to stderr.
    try:
        with socket.create_server((host, port)):  # SO_REUSEADDR, not SO_REUSEPORT: any listener refuses it
            pass
    except OSError as error:
        raise ResourceError(f"cannot listen on {host}:{port}: {error.strerror or error} "
                            "(another storage-proxy?)") from None


def serve(server: grpc.Server) -> None:
    """Start a bound server (`bind`) and serve until the process is stopped."""
    server.start()
    server.wait_for_termination()
