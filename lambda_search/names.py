"""Facts the write side (sweep, gan) and the read side (results, cli) share: one place each.

Imports nothing: the CLI reads its defaults from here before it knows the command.
"""

from __future__ import annotations

# The Optuna parameter every trial of a study, its control and its confirmation runs carry: λ.
PARAM = "lambda"
# The one objective of every study, as the dashboard labels it.
OBJECTIVE = "FID"
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
