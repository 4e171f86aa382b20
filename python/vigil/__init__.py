"""Vigil from Python: the governed model registry with Part 11 e-signatures, validation
gates and drift monitoring of clinical models.

Embedded (the rules run in this process, on a local store)::

    import vigil
    registry = vigil.ModelRegistry()                  # ~/.local/share/vigil, or VIGIL_DATA_DIR
    registry = vigil.connect("sqlite:///srv/vigil")   # a data directory

Against ``vigil serve`` (the rules run in the server)::

    registry = vigil.connect("https://vigil.example.org", token="vgt_…")

The original system's quick start runs with only its import lines changed (see the README's
Python section).
"""

from ._vigil import Session as _Session  # noqa: F401  (compiled module present)
from .drift import DriftDetector, DriftDetectorConfig, DriftReport
from .errors import (
    ApprovalError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
    ValidationError,
    VigilError,
)
from .registry import (
    ModelCard,
    ModelLineage,
    ModelMetrics,
    ModelRegistry,
    ModelStage,
    ModelType,
    ModelVersion,
    PromotionRequest,
    connect,
)

__all__ = [
    "ApprovalError", "AuthenticationError", "ConflictError", "DriftDetector", "DriftDetectorConfig", "DriftReport",
    "ModelCard", "ModelLineage", "ModelMetrics", "ModelRegistry", "ModelStage", "ModelType", "ModelVersion",
    "NotFoundError", "PermissionDeniedError", "PromotionRequest", "StorageError", "ValidationError", "VigilError", "connect",
]
