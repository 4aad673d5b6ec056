"""One rule for joining a study: every stored setting that changes a trial's result must match.

A study stores the resolved config it was started with; a worker whose study file differs in
any field of it (steps, lr, apply_to, seed, data, the λ range, the strategy, the objective …)
would mix trials of two protocols in one study, so it is refused before it writes anything,
naming every field that differs. Compared is every field of every section, except `RUN_TIME`:
where and how fast a trial runs, and how many trials the study holds. A field added to the
config later is compared without a change here; a study stored before the field existed is
read with its default (what the older version did).

The FID protocol (feature network by sha256, dataset fingerprint) and the model identity are
checked beside this, in `sweep.study`: they are measured, not read from the file.
"""

from __future__ import annotations

from typing import Any

from lambda_search.config import StudyConfig
from lambda_search.errors import ConfigError

# (section, key) of the settings a worker may choose for itself: they change no trial's result.
RUN_TIME = frozenset({
    ("study", "name"), ("study", "storage"), ("study", "artifacts"),
    ("study", "n_trials"), ("study", "heartbeat_seconds"), ("study", "max_retries"),
    # Whether this worker also trains the λ = 0 control: the control is its own study.
    ("search", "control"),
    # Where the data lives: which images they are is the FID protocol's dataset fingerprint.
    ("data", "root"),
    # Where and how fast: a fused group's trial is the same trial alone (`fused`), on any device.
    ("train", "device"), ("train", "fuse"), ("train", "cuda_graph"), ("train", "checkpoint_every"),
    # The weights' path: the protocol names them by their sha256.
    ("fid", "inception_weights"),
})


def differing_fields(stored: dict[str, Any], config: StudyConfig) -> list[tuple[str, str, Any, Any]]:
    """(section, key, stored value, this config's value) of every compared field that differs."""
    defaults = StudyConfig().to_dict()
    differing = []
    for section, values in config.to_dict().items():
        stored_section = stored.get(section) or {}
        for key, value in values.items():
            before = stored_section.get(key, defaults[section][key])
            if (section, key) not in RUN_TIME and before != value:
                differing.append((section, key, before, value))
    return differing


def check_compatible(name: str, stored: dict[str, Any] | None, config: StudyConfig) -> None:
    """Refuse `config` for the study `name`, started with the config `stored`, if a trial's result would differ.

    Raises:
        ConfigError: one line naming every field that differs, with both values.
    """
    if stored is None:  # a new study: this config is the one it is started with
        return
    differing = differing_fields(stored, config)
    if differing:
        before = ", ".join(f"[{section}] {key} = {old!r}" for section, key, old, _ in differing)
        now = ", ".join(f"[{section}] {key} = {new!r}" for section, key, _, new in differing)
        raise ConfigError(f"study {name!r} was started with {before}; this file asks for {now}: trials of "
                          "different settings do not compare, keep the study's or use another study name")


