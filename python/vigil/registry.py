"""The governed model registry: the original system's ``ModelRegistry`` API over Vigil.

Differences from the original, all deliberate: actors are authenticated users (passwords come
from ``VIGIL_CREDENTIALS``, ``VIGIL_PASSWORD`` or a prompt); an approval is a 21 CFR Part 11
signature (the signer re-enters their password and states its meaning); the default Production
policy needs an ``ml_lead`` and a ``clinical_reviewer``; and Production needs a passing
validation report (``vigil validate``) of the version's current content.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from ._backend import Embedded, Remote
from .errors import ValidationError
from .errors import AuthenticationError


class ModelType(str, enum.Enum):
    """What kind of prediction a model makes."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    SURVIVAL = "survival"
    RANKING = "ranking"
    OTHER = "other"


class ModelStage(str, enum.Enum):
    """A version's lifecycle stage; stages move only through approved promotion requests."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class ModelMetrics:
    """Performance metrics recorded with a version (in its signed content). ``custom`` holds
    any other named metric."""

    accuracy: Optional[float] = None
    precision: Optional[float] = None
    recall: Optional[float] = None
    f1_score: Optional[float] = None
    auc_roc: Optional[float] = None
    auc_pr: Optional[float] = None
    sensitivity: Optional[float] = None
    specificity: Optional[float] = None
    custom: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The metrics as name → number."""
        d = _drop_none({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "custom"})
        d.update(self.custom)
        return {k: float(v) for k, v in d.items()}


@dataclass
class ModelLineage:
    """Where a version came from: data, run, code, environment, features."""

    training_data_uri: Optional[str] = None
    training_data_version: Optional[str] = None
    training_data_hash: Optional[str] = None
    training_run_id: Optional[str] = None
    code_commit: Optional[str] = None
    environment_digest: Optional[str] = None
    features: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """The lineage as Vigil's manifest fields."""
        d = _drop_none({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "features"})
        if self.features:
            d["features"] = list(self.features)
        return d


@dataclass
class ModelCard:
    """The human-authored model card fields. ``extra`` holds any of ONC HTI-1's 31 source
    attributes by key (e.g. ``"purpose.decision_role"``); a value of ``("not_available",
    "reason")`` marks an attribute not available, with its reason."""

    model_name: Optional[str] = None
    description: Optional[str] = None
    intended_use: Optional[str] = None
    intended_users: Optional[str] = None
    patient_population: Optional[str] = None
    out_of_scope_uses: Optional[str] = None
    limitations: Optional[str] = None
    clinical_validation_status: Optional[str] = None
    training_data_description: Optional[str] = None
    evaluation_data_description: Optional[str] = None
    ethical_considerations: Optional[str] = None
    regulatory_status: Optional[str] = None
    developer: Optional[str] = None
    fairness_approach: Optional[str] = None
    bias_mitigation: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The card as Vigil's manifest fields."""
        d = _drop_none({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        for k, v in self.extra.items():
            d[k] = {"not_available": v[1]} if isinstance(v, tuple) and v and v[0] == "not_available" else v
        return d


@dataclass(frozen=True)
class ModelVersion:
    """A registered version as Vigil records it. ``model_id`` is the version's id."""

    model_id: str
    name: str
    version: str
    model_type: ModelType
    stage: ModelStage
    artifact_uri: str
    artifact_sha256: Optional[str]
    content_hash: str
    metrics: dict
    lineage: dict
    model_card: dict
    created_by: str
    created_at: str
    raw: dict = field(repr=False, compare=False)

    @staticmethod
    def from_doc(d: dict) -> "ModelVersion":
        """From Vigil's JSON document."""
        return ModelVersion(d["model_id"], d["name"], d["version"], ModelType(d["model_type"]), ModelStage(d["stage"]), d["artifact_uri"],
                            d.get("artifact_sha256"), d["content_hash"], d.get("metrics", {}), d.get("lineage", {}), d.get("model_card", {}),
                            d["created_by"], d["created_at"], d)

    @property
    def reference(self) -> str:
        """``NAME@VERSION``."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class PromotionRequest:
    """A promotion request: its status, the signatures' tally, the evidence it rests on."""

    request_id: str
    model_id: str
    model: str
    from_stage: ModelStage
    to_stage: ModelStage
    requester: str
    justification: str
    status: str
    content_hash: str
    validation_report_id: Optional[str]
    tally: Optional[dict]
    raw: dict = field(repr=False, compare=False)

    @staticmethod
    def from_doc(d: dict) -> "PromotionRequest":
        """From Vigil's JSON document."""
        return PromotionRequest(d["request_id"], d["model_version_id"], d["model"], ModelStage(d["from_stage"]), ModelStage(d["to_stage"]),
                                d["requester"], d["justification"], d["status"], d["content_hash"], d.get("validation_report_id"), d.get("tally"), d)

    @property
    def approved(self) -> bool:
        """Whether the policy is satisfied and the stage has moved."""
        return self.status == "approved"


def connect(target: Optional[str] = None, *, token: Optional[str] = None, user: Optional[str] = None,
            signing_key: Optional[str] = None, passwords=None, insecure: bool = False) -> "ModelRegistry":
    """A registry on a store or a server.

    ``target`` is ``http(s)://host:port`` (the rules run in ``vigil serve``; authenticate with
    ``token`` or ``user`` and a password), ``postgresql://…`` (embedded, with ``signing_key``),
    ``sqlite:///path/to/data-dir`` or a directory path (embedded). Without one: ``VIGIL_URL``,
    then ``VIGIL_DATABASE_URL``, then ``VIGIL_DATA_DIR``, then ``~/.local/share/vigil``.
    """
    return ModelRegistry(target, token=token, user=user, signing_key=signing_key, passwords=passwords, insecure=insecure)


def _backend(target: Optional[str], token: Optional[str], user: Optional[str], signing_key: Optional[str], passwords, insecure: bool = False):
    from ._backend import default_passwords

    passwords = passwords or default_passwords
    user = user or os.environ.get("VIGIL_USER")
    target = os.fspath(target) if target is not None else None
    target = target or os.environ.get("VIGIL_URL") or os.environ.get("VIGIL_DATABASE_URL") or os.environ.get("VIGIL_DATA_DIR")
    if target is None:
        target = os.path.join(os.path.expanduser("~"), ".local", "share", "vigil")
    scheme = target.split("://", 1)[0].lower() if "://" in target else ""
    if scheme in ("http", "https"):
        return Remote(target, token=token or os.environ.get("VIGIL_TOKEN"), passwords=passwords, user=user, insecure=insecure)
    if scheme in ("postgres", "postgresql"):
        return Embedded(None, target, signing_key or os.environ.get("VIGIL_SIGNING_KEY"), passwords=passwords)
    if scheme == "sqlite":
        target = target[len("sqlite://"):]
    elif scheme:
        raise ValidationError("invalid_text", "the target is http(s)://…, postgresql://…, sqlite:///dir or a directory", "invalid_input")
    return Embedded(target, None, signing_key, passwords=passwords)


_LAST: Optional["ModelRegistry"] = None


def default_registry() -> "ModelRegistry":
    """The registry most recently created in this process (so that the seed's
    ``DriftDetector(config=…)`` works on the same store or server), or a new default one."""
    return _LAST if _LAST is not None else ModelRegistry()


class ModelRegistry:
    """The seed's ``ModelRegistry``: register versions with lineage and a model card, request
    and approve promotions, read lineage and verify the audit trail.

    ``target`` is a server URL, a PostgreSQL URL, ``sqlite:///dir`` or a directory (see
    :func:`connect`); ``token`` or ``user`` (default ``VIGIL_USER``) say who acts; ``passwords``
    maps a user id to their password (default: ``VIGIL_CREDENTIALS``, ``VIGIL_PASSWORD`` for
    ``VIGIL_USER``, or a prompt)."""

    def __init__(self, target: Optional[str] = None, *, token: Optional[str] = None, user: Optional[str] = None,
                 signing_key: Optional[str] = None, passwords=None, insecure: bool = False):
        self._b = _backend(target, token, user, signing_key, passwords, insecure)
        self.user = user or os.environ.get("VIGIL_USER")
        global _LAST
        _LAST = self

    @property
    def embedded(self) -> bool:
        """Whether the rules run in this process."""
        return isinstance(self._b, Embedded)

    def _actor(self, who: Optional[str]) -> str:
        who = who or self.user
        if who is None and isinstance(self._b, Remote):
            who = self._b.token_owner()  # a token acts for its owner
        if who is None:
            raise AuthenticationError("authentication_failed", "no acting user: pass user=, set VIGIL_USER, or name the actor", "unauthenticated")
        return who

    def _reader(self) -> Optional[str]:
        # Reads are a signed-in user's too: embedded ones sign in as the acting user (and reads
        # of models marked ``vigil.phi`` are audited); remote ones use the token or user.
        return self._actor(None) if self.embedded else self.user

    def close(self) -> None:
        """Ends the server sessions this registry opened (remote mode; nothing to do embedded)."""
        if isinstance(self._b, Remote):
            self._b.close()

    def __enter__(self) -> "ModelRegistry":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def register_model(self, name: str, version: str, model_type: ModelType, artifact_uri: str,
                       metrics: Optional[ModelMetrics] = None, lineage: Optional[ModelLineage] = None,
                       model_card: Optional[ModelCard] = None, *, artifact_sha256: Optional[str] = None,
                       description: Optional[str] = None, owner: Optional[str] = None, tags: Optional[dict] = None,
                       registered_by: Optional[str] = None) -> ModelVersion:
        """Registers a version in Development (creating the model on first use) and returns it."""
        manifest = _drop_none({
            "name": name, "version": version, "model_type": ModelType(model_type).value, "artifact_uri": artifact_uri,
            "artifact_sha256": artifact_sha256, "description": description, "owner": owner, "tags": tags,
            "metrics": metrics.to_dict() if metrics else None, "lineage": lineage.to_dict() if lineage else None,
            "card": model_card.to_dict() if model_card else None,
        })
        return ModelVersion.from_doc(self._b.register(self._actor(registered_by), manifest))

    def get_model(self, model_id: str) -> ModelVersion:
        """A version by id (``mv_…``) or ``NAME@VERSION``."""
        return ModelVersion.from_doc(self._b.version(self._reader(), model_id, "ModelRegistry.get_model"))

    def list_models(self) -> list:
        """Every registered model with its versions (Vigil's documents)."""
        return self._b.models(self._reader())

    def get_production_model(self, name: str) -> Optional[ModelVersion]:
        """The version of ``name`` in Production, if any."""
        m = self._b.model(self._reader(), name, "ModelRegistry.get_production_model")
        for v in m.get("versions", []):
            if v.get("stage") == ModelStage.PRODUCTION.value:
                return ModelVersion.from_doc(v)
        return None

    def request_promotion(self, model_id: str, to_stage: ModelStage, requester_id: Optional[str] = None,
                          justification: str = "") -> PromotionRequest:
        """Opens a promotion request (refused with ``ApprovalError`` for Production without a
        passing validation of the current content)."""
        version = self._b.version(self._reader(), model_id, "ModelRegistry.request_promotion")
        return PromotionRequest.from_doc(self._b.request_promotion(self._actor(requester_id), version, ModelStage(to_stage).value, justification))

    def approve_promotion(self, request_id: str, approver_id: str, comments: str = "", meaning: str = "approval") -> PromotionRequest:
        """Signs the request as approved; the signer's password is asked for again (Part 11).
        The stage moves when the policy's approvals are complete."""
        return PromotionRequest.from_doc(self._b.sign(approver_id, request_id, True, meaning, comments))

    def reject_promotion(self, request_id: str, approver_id: str, comments: str, meaning: str = "review") -> PromotionRequest:
        """Signs the request as rejected (a comment is required); the request closes."""
        return PromotionRequest.from_doc(self._b.sign(approver_id, request_id, False, meaning, comments))

    def get_request(self, request_id: str) -> PromotionRequest:
        """A request with its signatures."""
        return PromotionRequest.from_doc(self._b.request(self._reader(), request_id))

    def get_lineage(self, model_id: str) -> dict:
        """Data, run, code, signatures and stage history of a version."""
        v = self._b.version(self._reader(), model_id, "ModelRegistry.get_lineage")
        return self._b.lineage(self._reader(), f"{v['name']}@{v['version']}")

    def verify_audit_trail(self) -> dict:
        """Verifies the hash chain, every signature seal and every record; ``ok`` says whether
        all hold."""
        return self._b.verify_audit()

    def validate(self, model_id: str, scores: Any, labels: Any = None, *, targets: Any = None, champion_scores: Any = None,
                 sensitive: Optional[dict] = None, threshold: float = 0.5, validated_by: Optional[str] = None) -> dict:
        """Validates a version on a labelled holdout under its model's validation policy:
        ``labels`` (binary) or ``targets`` (regressors), the version's ``scores``, the
        Production version's ``champion_scores`` on the same rows, and ``sensitive``
        attribute columns by name. Stores and returns the report (``passed``, ``gates``,
        ``metrics`` with intervals, ``fairness``); Production needs a passing one."""
        if (labels is None) == (targets is None):
            raise ValidationError("invalid_validation_data", "give labels (classifiers) or targets (regressors), not both", "invalid_input")
        sensitive = dict(sensitive or {})
        clash = {"score", "label", "target", "champion_score"} & set(sensitive)
        if clash:
            raise ValidationError("invalid_validation_data", f"a sensitive attribute may not be named {sorted(clash)[0]!r}", "invalid_input")
        v = self._b.version(self._reader(), model_id, "ModelRegistry.validate")
        holdout = {"scores": scores, "labels": labels, "targets": targets, "champion_scores": champion_scores, "sensitive": sensitive or None,
                   "threshold": float(threshold)}
        return self._b.validate(self._actor(validated_by), v, holdout)

    def set_validation_policy(self, policy: dict, reason: str, *, model: Optional[str] = None, model_type: Optional[ModelType] = None,
                              admin: Optional[str] = None) -> dict:
        """Sets a model's validation policy, or a model type's default (administrators only).
        Keys left out take the model type's built-in values."""
        if (model is None) == (model_type is None):
            raise ValueError("give model= or model_type=")
        scope, target = ("model", model) if model is not None else ("model_type", ModelType(model_type).value)
        return self._b.set_validation_policy(self._actor(admin), scope, target, policy, reason)

    def model_card(self, model_id: str) -> dict:
        """The generated model card (Vigil's JSON: HTI-1 attribute status, the bound report)."""
        return self._b.card(self._reader(), self._b.version(self._reader(), model_id, "ModelRegistry.model_card"))

    def audit_trail(self, *, model: Optional[str] = None, version: Optional[str] = None, actor: Optional[str] = None,
                    action: Optional[str] = None, outcome: Optional[str] = None, since: Optional[str] = None,
                    until: Optional[str] = None, limit: int = 1000, after_seq: Optional[int] = None) -> list:
        """Audit events, oldest first: by model (and version), actor, action (exact, or a prefix
        ending in ``.`` such as ``"promotion."``), outcome (``ok`` or ``denied``), time
        (RFC 3339 ``since``/``until``); at most ``limit`` (up to 10,000) per call, continuing
        after the ``seq`` given as ``after_seq``. Each event is Vigil's document (``seq``,
        ``time``, ``actor``, ``action``, ``outcome``, ``entity_type``, ``entity_id``,
        ``details``, ``hash``)."""
        def when(t: Any) -> Optional[str]:
            # datetime objects as RFC 3339 (naive ones are taken as UTC); text as given.
            if t is None or isinstance(t, str):
                return t
            if hasattr(t, "isoformat"):
                return (t if t.tzinfo else t.replace(tzinfo=__import__("datetime").timezone.utc)).isoformat()
            raise TypeError("since and until are RFC 3339 text or datetime objects")
        query = {"model": model, "version": version, "actor": actor, "action": action, "outcome": outcome,
                 "since": when(since), "until": when(until), "limit": int(limit), "after_seq": None if after_seq is None else int(after_seq)}
        return self._b.audit_trail(self._reader(), {k: v for k, v in query.items() if v is not None})
