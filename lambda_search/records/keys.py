"""The keys of what a study and its trials store as Optuna user (and system) attributes: one place each.

Writers (`sweep`) and readers (`results`, `records`) name an attribute only through these.
`names.FID`, `names.FID_EMA`, `names.EVALUATIONS` and `names.MODEL` are attribute keys too,
kept in `names` because the config reads them.
"""

from __future__ import annotations

from typing import Final

# Of a study (and its `.control` companion) and of each trial: the resolved config, as a dict.
CONFIG: Final = "config"
# How the FID was measured (feature network, dataset fingerprint, sample counts), as a dict.
FID_PROTOCOL: Final = "fid_protocol"

# Of a sweep or race study: its `[search]` section, set by the first worker; the number of workers started.
SEARCH: Final = "search"
WORKERS_STARTED: Final = "workers_started"
# Of a `.control` companion: the study whose λ = 0 run it holds.
CONTROL_OF: Final = "control_of"
# Of a `.confirm` companion: the study it confirms, and which FID its runs store (objective, EMA decay).
CONFIRMS: Final = "confirms"
MEASUREMENT: Final = "measurement"

# Of a trial: the seed it trained with, and in a race its role ("search" or "verdict").
SEED: Final = "seed"
ROLE: Final = "role"
# Of a trial: its KID at the final evaluation (the live generator's), the KID's sd over subsets, and how
# the KID was measured; with `[train] ema`, the EMA generator's KID and sd beside them (same protocol).
# Trials stored before the EMA KID existed have the live ones only.
KID: Final = "kid"
KID_STD: Final = "kid_std"
KID_EMA: Final = "kid_ema"
KID_EMA_STD: Final = "kid_ema_std"
KID_PROTOCOL: Final = "kid_protocol"
# Of a trial: the steps it trained, its wall seconds in all and in training alone.
STEPS: Final = "steps"
SECONDS: Final = "seconds"
TRAIN_SECONDS: Final = "train_seconds"
# Of a trial: where it ran (torch device, torch threads, host:pid, scheduler identity).
DEVICE: Final = "device"
TORCH_THREADS: Final = "torch_threads"
WORKER: Final = "worker"
WORKER_IDENTITY: Final = "worker_identity"
# Of a trial: the step its checkpoint resumed from; the trials trained fused with it.
RESUMED_FROM_STEP: Final = "resumed_from_step"
FUSED_WITH: Final = "fused_with"
# Why a trial ended early: PRUNED (diverged or pruned), FAIL (an error, or handed back), a
# confirmation run that diverged (stored FAIL).
PRUNE_REASON: Final = "prune_reason"
FAIL_REASON: Final = "fail_reason"
DIVERGED: Final = "diverged"

# System attrs Optuna's `RetryFailedTrialCallback` writes on a retry: the number of the failed
# trial it copies, and the chain of those before it.
FAILED_TRIAL: Final = "failed_trial"
RETRY_HISTORY: Final = "retry_history"
