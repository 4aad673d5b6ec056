"""Facts the write side (sweep, gan) and the read side (results, cli) share: one place each.

Imports nothing: the CLI reads its defaults from here before it knows the command.
"""

from __future__ import annotations

# The Optuna parameter every trial of a study, its control and its confirmation runs carry: λ.
PARAM = "lambda"
# λ of the control run, the baseline every λ is compared with.
CONTROL = 0.0

# A trial's files, uploaded as Optuna artifacts: its sample grid and its curves.
SAMPLES_FILE = "samples.png"
CURVES_FILE = "curves.csv"
CURVE_COLUMNS = ("step", "generator_loss", "discriminator_loss", "generator_penalty", "fid")

DASHBOARD_HOST = "127.0.0.1"  # the dashboard can change studies: never expose it unless asked
DASHBOARD_PORT = 8080


def control_name(study_name: str) -> str:
    """The companion study that holds a sweep's λ = 0 control run."""
    return f"{study_name}.control"


def confirm_name(study_name: str) -> str:
    """The companion study that holds a sweep's confirmation runs."""
    return f"{study_name}.confirm"

# `fail_reason` of a trial handed back for retry (SIGTERM/SIGINT): not a failure of its λ.
PREEMPTED = "preempted"
# System attribute of a preempted trial's copy (`storage.hand_back`): the number of the trial it
# replaces. A RUNNING trial that has such a copy was handed back, whatever state it was left in.
PREEMPTED_TRIAL = "preempted_trial"
