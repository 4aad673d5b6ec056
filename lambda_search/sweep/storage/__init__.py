"""The storage under a study (SQL, or a gRPC storage proxy), and the one adapter to Optuna's internals.

Optuna's RDBStorage is the distributed engine; this package makes it dependable:
health-checked connections (`opening`, `retry`), a lock so that workers claim trials one
at a time (`locks`, `claim`), a heartbeat per running trial so a killed worker is noticed
(`heartbeat`), preempted trials handed back (`orphans`; stale ones the claim retries), the weights
in the database (`files`), and the gRPC storage proxy (`grpc_proxy`, its client, and
`proxy_server`).

Every use of Optuna's private API (``study._storage``, ``_study_id``, ``trial._trial_id``
in `access`; its table models and raw SQL on its schema in `claim` and `read_only`; its
gRPC servicer in `proxy_server`) lives in this package, behind the small public functions
re-exported here; `SUPPORTED_OPTUNA` is the range it was written for. Imports no torch:
the read side opens studies through here, read-only (`load_study`).
"""

from __future__ import annotations

from lambda_search.sweep.storage.access import (
    SUPPORTED_OPTUNA,
    frozen,
    retried_trial_number,
    storage_of,
    study_id,
    trial_id,
)
from lambda_search.sweep.storage.files import load_file, save_file
from lambda_search.sweep.storage.heartbeat import Heartbeat
from lambda_search.sweep.storage.locks import worker_lock
from lambda_search.sweep.storage.opening import lost_connection, open_storage
from lambda_search.sweep.storage.orphans import hand_back
from lambda_search.sweep.storage.read_only import load_study

__all__ = [
    "SUPPORTED_OPTUNA",
    "Heartbeat",
    "frozen",
    "hand_back",
    "load_file",
    "load_study",
    "lost_connection",
    "open_storage",
    "retried_trial_number",
    "save_file",
    "storage_of",
    "study_id",
    "trial_id",
    "worker_lock",
]
