"""One exception tree for driftline.

Every error raised on purpose by our code derives from :class:`DriftlineError`, and its message
says the offending value, what was expected and how to fix it.
"""

from __future__ import annotations


class DriftlineError(Exception):
    """Root of every error driftline raises on purpose."""


class ConfigError(DriftlineError):
    """A setting is missing or invalid. The message names the key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


class ContractError(DriftlineError):
    """The data contract file is invalid, or data does not fit it."""


class BaselineError(DriftlineError):
    """A drift baseline is unreadable or belongs to another contract."""


class LakeWriteError(DriftlineError):
    """Writing to the lake failed after bounded retries; nothing past it may be checkpointed."""


class ProducerError(DriftlineError):
    """Records could not be put on the stream after bounded retries."""


class KclSetupError(DriftlineError):
    """The KCL daemon cannot be started: java missing, jar set unverified, bad properties."""


class EmulatorError(DriftlineError):
    """The local AWS emulator (or another local stand-in) failed to start or answer."""


class StackError(DriftlineError):
    """A CloudFormation stack could not be created, updated or read."""


class WarehouseError(DriftlineError):
    """Loading or querying the warehouse failed."""


class RetrainError(DriftlineError):
    """Training, evaluation, registration or deployment of a model failed."""


class EventError(DriftlineError):
    """An EventBridge event is malformed (kept, never dropped)."""


class CompactionError(DriftlineError):
    """Compacting a lake hour failed; what was visible before stays visible."""


class LabelRequiredError(RetrainError):
    """Retraining was asked of a contract that declares no label (nothing to learn)."""


class QualityError(DriftlineError):
    """Predictions or labels handed to a quality window do not fit it (kept, never dropped)."""
