"""lambda-search: find the weight-decay coefficient λ of a GAN with an Optuna sweep scored by FID.

Applying an exported λ in one's own training loop::

    import lambda_search, torch

    export = lambda_search.load_export("best.yaml")
    groups = lambda_search.param_groups(generator, export.lam, export.decay_mode, export.penalize)
    optimizer = torch.optim.Adam(groups, lr=2e-4, betas=(0.5, 0.999))  # AdamW for decay_mode "decoupled"

`penalty`, `decayed_parameters` and `param_groups` import torch when first used;
`load_export` and the config never do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lambda_search.config import StudyConfig, config_from_dict, load_config
from lambda_search.errors import ConfigError, DataError, LambdaSearchError, StorageError, WeightsError

if TYPE_CHECKING:
    from lambda_search._api import decayed_parameters, param_groups, penalty
    from lambda_search.records.export import Export, load_export
    from lambda_search.sweep.storage import load_study
    from lambda_search.sweep.study import run

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Export",
    "LambdaSearchError",
    "StorageError",
    "StudyConfig",
    "WeightsError",
    "__version__",
    "config_from_dict",
    "decayed_parameters",
    "load_config",
    "load_export",
    "load_study",
    "param_groups",
    "penalty",
    "run",
]

# Each lazily loaded name → its module: torch, Optuna and YAML load on first use (`import lambda_search` is instant).
_LAZY = {
    "decayed_parameters": "lambda_search._api",
    "param_groups": "lambda_search._api",
    "penalty": "lambda_search._api",
    "Export": "lambda_search.records.export",
    "load_export": "lambda_search.records.export",
    "load_study": "lambda_search.sweep.storage",
    "run": "lambda_search.sweep.study",
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'lambda_search' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
