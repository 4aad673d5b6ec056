"""The errors lambda-search raises, each with the exit code the CLI turns it into."""

from __future__ import annotations


class LambdaSearchError(Exception):
    """Base of every error the library raises on purpose.

    ``exit_code`` is 2 for bad input the user can fix (config, arguments, missing
    files) and 1 for failures at run time (database down, training crashed).
    """

    exit_code = 1


class ConfigError(LambdaSearchError):
    """The study file or a command-line value is invalid."""

    exit_code = 2


class DataError(LambdaSearchError):
    """The dataset is unknown, missing or unreadable."""

    exit_code = 2


class WeightsError(LambdaSearchError):
    """A feature-network weights file is missing or unreadable."""

    exit_code = 2


class StudyNotFoundError(LambdaSearchError):
    """No study of that name lives in the storage."""

    exit_code = 2


class StorageError(LambdaSearchError):
    """The storage cannot be reached or used."""

    exit_code = 1


class ResourceError(LambdaSearchError):
    """A resource of the machine cannot be used: a busy port, a folder that cannot be written."""

    exit_code = 1


class NoResultError(LambdaSearchError):
    """The study holds no finished trial to report or export."""

    exit_code = 1


class TrainingError(LambdaSearchError):
    """Production training failed (a loss became NaN or infinite)."""

    exit_code = 1


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; a BaseException so no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class Preempted(Interrupted):
    """Interrupted mid-training: the running trials were checkpointed and handed back for retry."""

    def __init__(self, signum: int, steps: dict[int, int]) -> None:
        super().__init__(signum)
        # Trial number → the step its checkpoint holds (where its retry resumes).
        self.steps = steps
