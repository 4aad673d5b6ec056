"""Every worker names itself in its trials: host and pid, plus the SLURM task or pod it runs as."""

from __future__ import annotations

import os
import socket

from lambda_search.sweep.identity import worker_identity, worker_label


def test_a_slurm_array_task_is_named_by_its_array_job_and_task():
    identity = worker_identity({"SLURM_JOB_ID": "815", "SLURM_ARRAY_JOB_ID": "812", "SLURM_ARRAY_TASK_ID": "2"})
    assert identity == {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": "815",
                        "slurm_array_job_id": "812", "slurm_array_task_id": "2"}
    assert worker_label(identity) == "slurm 812_2"


def test_a_pod_is_named_by_its_pod_name_or_hostname():
    assert worker_label(worker_identity({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "sweep-3-x7k"})) \
        == "pod sweep-3-x7k"
    assert worker_label(worker_identity({"POD_NAME": "sweep-0-abc"})) == "pod sweep-0-abc"


def test_a_plain_process_is_host_and_pid_and_an_old_trial_a_dash():
    assert worker_label(worker_identity({})) == f"{socket.gethostname()}:{os.getpid()}"
    assert worker_label(None) == "-"
