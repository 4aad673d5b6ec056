"""lambda-search: find the weight-decay coefficient λ of a GAN with an Optuna sweep scored by FID."""

from lambda_search.config import StudyConfig, config_from_dict, load_config
from lambda_search.errors import ConfigError, DataError, LambdaSearchError, StorageError, WeightsError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "LambdaSearchError",
    "StorageError",
    "StudyConfig",
    "WeightsError",
    "__version__",
    "config_from_dict",
    "load_config",
    "load_study",
    "run",
]


def __getattr__(name: str) -> object:
    # The study API pulls in torch and Optuna; load it on first use so `import lambda_search` stays instant.
    if name == "run":
        from lambda_search.sweep.study import run

        return run
    if name == "load_study":
        from lambda_search.sweep.storage import load_study

        return load_study
    raise AttributeError(f"module 'lambda_search' has no attribute {name!r}")
