"""Which worker ran a trial: host and pid, and where a scheduler started it (SLURM task, pod)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

# Environment a scheduler sets → the key it is stored under. HOSTNAME is the pod name in
# Kubernetes; POD_NAME is what the downward API sets in deploy/k8s.
_SCHEDULER_VARIABLES = {
    "SLURM_JOB_ID": "slurm_job_id",
    "SLURM_ARRAY_JOB_ID": "slurm_array_job_id",
    "SLURM_ARRAY_TASK_ID": "slurm_array_task_id",
    "POD_NAME": "pod",
    "KUBERNETES_SERVICE_HOST": "kubernetes",
}


def worker_identity(environment: Mapping[str, str] | None = None) -> dict[str, str | int]:
    """This process: host, pid, and the scheduler's ids found in the environment."""
    environment = os.environ if environment is None else environment
    identity: dict[str, str | int] = {"host": socket.gethostname(), "pid": os.getpid()}
    for variable, key in _SCHEDULER_VARIABLES.items():
        if environment.get(variable):
            identity[key] = environment[variable]
    if "kubernetes" in identity:
        identity.pop("kubernetes")
        identity.setdefault("pod", environment.get("HOSTNAME", identity["host"]))
    return identity


def worker_label(identity: Mapping[str, Any] | None) -> str:
    """A short name for a worker: `slurm 812_2`, `pod lambda-search-3-x7k`, or `host:pid`."""
    if not identity:
        return "-"
    if "slurm_array_job_id" in identity:
        return f"slurm {identity['slurm_array_job_id']}_{identity.get('slurm_array_task_id', '?')}"
    if "slurm_job_id" in identity:
        return f"slurm {identity['slurm_job_id']}"
    if "pod" in identity:
        return f"pod {identity['pod']}"
    return f"{identity.get('host', '?')}:{identity.get('pid', '?')}"
