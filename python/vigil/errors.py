"""Vigil's errors as Python exceptions.

Every error carries Vigil's stable ``code`` (the same snake_case string the CLI prints and the
HTTP API returns) and its ``kind``. Messages never contain submitted values, which may be
patient data.
"""

from __future__ import annotations


class VigilError(Exception):
    """Base class: ``code`` is Vigil's stable error code, ``kind`` whose problem it is."""

    def __init__(self, code: str, message: str, kind: str = "internal"):
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message
        self.kind = kind

    def __reduce__(self):
        return (type(self), (self.code, self.message, self.kind))


class ValidationError(VigilError, ValueError):
    """The input is malformed (bad name, version, manifest, holdout, policy)."""


class AuthenticationError(VigilError):
    """Who is asking could not be established (unknown user, wrong password, locked account)."""


class PermissionDeniedError(VigilError, PermissionError):
    """The rules refuse the action (role, stage, frozen artifacts, a guarded alias)."""


class ApprovalError(VigilError):
    """A promotion or signature was refused: separation of duties, a request that is not
    pending or has expired, content that changed, missing validation evidence. Each is also a
    ``PermissionDeniedError`` or a ``ConflictError``, by its kind."""


class NotFoundError(VigilError, LookupError):
    """A referenced record does not exist."""


class ConflictError(VigilError):
    """The record's state conflicts with the action (duplicate, already pending)."""


class StorageError(VigilError):
    """Vigil's own failure: storage unavailable, corrupt database, broken invariant."""


#: Codes of refused promotions and signatures.
APPROVAL_CODES = frozenset({
    "self_approval", "request_expired", "request_not_pending", "request_already_pending",
    "duplicate_signature", "content_changed", "validation_required", "transition_not_allowed",
    "promotion_required",
})

_BY_KIND = {
    "invalid_input": ValidationError,
    "unauthenticated": AuthenticationError,
    "denied": PermissionDeniedError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "internal": StorageError,
}


class ApprovalDeniedError(ApprovalError, PermissionDeniedError):
    """A refused promotion or signature (kind ``denied``)."""


class ApprovalConflictError(ApprovalError, ConflictError):
    """A promotion or signature in conflict with the request's state (kind ``conflict``)."""


def from_code(code: str, message: str, kind: str) -> VigilError:
    """The exception for an error code and kind."""
    if code in APPROVAL_CODES:
        cls = ApprovalConflictError if kind == "conflict" else ApprovalDeniedError
    else:
        cls = _BY_KIND.get(kind, VigilError)
    return cls(code, message, kind)


def kind_of_status(status: int) -> str:
    """The error kind of an HTTP status (for errors from a server)."""
    return {400: "invalid_input", 401: "unauthenticated", 403: "denied", 404: "not_found", 409: "conflict"}.get(status, "internal")
