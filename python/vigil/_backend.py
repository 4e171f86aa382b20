"""The two ways to reach Vigil, behind one interface of JSON documents.

``Embedded`` calls the compiled module (the rules run in this process, on a local SQLite data
directory or a PostgreSQL database); ``Remote`` calls ``vigil serve``'s native API (the rules
run in the server). Both return the same documents, so the public classes are built once.
"""

from __future__ import annotations

import base64
import csv
import getpass
import io
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Mapping, Optional

from . import _vigil
from .errors import AuthenticationError, ValidationError, VigilError, from_code, kind_of_status

PasswordSource = Callable[[str], Optional[str]]


def default_passwords(user: str) -> Optional[str]:
    """A user's password for automation or a prompt: ``VIGIL_CREDENTIALS`` (a JSON file
    mapping user ids to passwords, for tests and batch jobs), then ``VIGIL_PASSWORD`` when the
    user is ``VIGIL_USER``, then a prompt on a terminal."""
    path = os.environ.get("VIGIL_CREDENTIALS")
    if path:
        with open(path, encoding="utf-8") as f:
            creds = json.load(f)
        if user in creds:
            return str(creds[user])
    if os.environ.get("VIGIL_PASSWORD") and os.environ.get("VIGIL_USER") == user:
        return os.environ["VIGIL_PASSWORD"]
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"Vigil password for {user}: ")
    return None


def _raise(e: Exception) -> None:
    if isinstance(e, _vigil.VigilError):
        code, message, kind = e.args
        raise from_code(code, message, kind) from None
    raise e


class Embedded:
    """The rules in process, on a local store."""

    def __init__(self, data_dir: Optional[str] = None, database_url: Optional[str] = None,
                 signing_key: Optional[str] = None, passwords: PasswordSource = default_passwords):
        try:
            self.store = _vigil.Store(data_dir, database_url, signing_key)
        except Exception as e:  # noqa: BLE001
            _raise(e)
        self.passwords = passwords
        self._sessions: dict[str, Any] = {}

    def _call(self, fn: Callable[..., str], *args: Any) -> Any:
        try:
            out = fn(*args)
        except Exception as e:  # noqa: BLE001
            _raise(e)
        return json.loads(out) if isinstance(out, str) else out

    def password(self, user: str) -> str:
        pw = self.passwords(user)
        if pw is None:
            raise AuthenticationError("authentication_failed", f"no password for {user}: set VIGIL_CREDENTIALS or VIGIL_PASSWORD, or run on a terminal", "unauthenticated")
        return pw

    def session(self, user: str) -> Any:
        if user not in self._sessions:
            try:
                self._sessions[user] = self.store.login(user, self.password(user))
            except Exception as e:  # noqa: BLE001
                _raise(e)
        return self._sessions[user]

    def init_admin(self, user: str, name: str, password: str) -> dict:
        return self._call(self.store.init_admin, user, name, password)

    def is_initialized(self) -> bool:
        return bool(self._call(self.store.is_initialized))

    def add_user(self, admin: str, user: str, name: str, role: str, password: str) -> dict:
        return self._call(self.store.add_user, self.session(admin), user, name, role, password)

    def register(self, actor: str, manifest: dict) -> dict:
        return self._call(self.store.register, self.session(actor), json.dumps(manifest))

    def version(self, ref: str) -> dict:
        return self._call(self.store.version, ref)

    def models(self) -> list:
        return self._call(self.store.models)

    def request_promotion(self, actor: str, version: dict, to_stage: str, justification: str) -> dict:
        return self._call(self.store.request_promotion, self.session(actor), version["model_id"], to_stage, justification)

    def sign(self, signer: str, request_id: str, approve: bool, meaning: str, comment: str) -> dict:
        return self._call(self.store.sign, signer, self.password(signer), request_id, approve, meaning, comment)

    def request(self, request_id: str) -> dict:
        return self._call(self.store.request, request_id)

    def lineage(self, ref: str) -> dict:
        return self._call(self.store.lineage, ref)

    def verify_audit(self) -> dict:
        return self._call(self.store.verify_audit)

    def validate(self, actor: str, version: dict, h: dict) -> dict:
        return self._call(self.store.validate, self.session(actor), version["model_id"], h["scores"], h.get("labels"), h.get("targets"),
                          h.get("champion_scores"), h.get("sensitive"), h.get("threshold", 0.5))

    def set_validation_policy(self, actor: str, scope: str, target: str, policy: dict, reason: str) -> dict:
        return self._call(self.store.set_validation_policy, self.session(actor), scope, target, json.dumps(policy), reason)

    def card(self, version: dict) -> dict:
        return self._call(self.store.card, version["model_id"])

    def drift_config(self, version: dict) -> dict:
        return self._call(self.store.drift_config, version["model_id"])

    def set_drift_config(self, actor: str, version: dict, config: dict) -> None:
        self._call(self.store.set_drift_config, self.session(actor), version["model_id"], json.dumps(config))

    def set_baseline(self, actor: str, version: dict, features: Mapping[str, Any], predictions: Any) -> dict:
        return self._call(self.store.set_baseline, self.session(actor), version["model_id"], dict(features), predictions)

    def add_samples(self, actor: str, version: dict, features: Mapping[str, Any], predictions: Any) -> dict:
        return self._call(self.store.add_samples, self.session(actor), version["model_id"], dict(features), predictions)

    def detect_drift(self, actor: str, version: dict, last_rows: Optional[int]) -> dict:
        return self._call(self.store.detect_drift, self.session(actor), version["model_id"], last_rows)


def _values(v: Any) -> list:
    if hasattr(v, "to_pylist"):  # Arrow
        return v.to_pylist()
    return list(v.tolist() if hasattr(v, "tolist") else v)


def _cell(x: Any) -> Any:
    """One CSV cell: missing is empty, booleans are true/false as the embedded mode reads them."""
    if x is None or (isinstance(x, float) and x != x):
        return ""
    if isinstance(x, bool):
        return "true" if x else "false"
    return x


def labels_01(values: Any) -> list:
    """Binary labels as booleans: True/False or 1/0 only (the embedded rule); anything else,
    including missing, is refused without echoing it."""
    out = []
    for x in _values(values):
        if isinstance(x, bool):
            out.append(x)
        elif isinstance(x, (int, float)) and x in (0, 1):
            out.append(bool(x))
        else:
            raise ValidationError("invalid_validation_data", "labels must be 1/0 or true/false in every row", "invalid_input")
    return out


def _csv(features: Mapping[str, Any], predictions: Any) -> bytes:
    """Feature columns as CSV (the server reads CSV and Parquet bodies); every column must have
    the same length, and no feature may take the predictions' column name."""
    cols = {k: _values(v) for k, v in features.items()}
    if predictions is not None:
        if "prediction" in cols:
            raise ValidationError("invalid_manifest", "a feature is named 'prediction', which holds the predictions", "invalid_input")
        cols["prediction"] = _values(predictions)
    names = list(cols)
    n = len(next(iter(cols.values()), []))
    for k in names:
        kinds = {type(x) for x in cols[k] if x is not None}
        if str in kinds and kinds & {int, float}:
            # As the embedded mode: a column is numeric or categorical.
            raise TypeError(f"column {k!r}: mixes numbers and text; a column is numeric or categorical")
        if len(cols[k]) != n:
            raise ValidationError("invalid_manifest", f"column {k!r} has {len(cols[k])} values, not {n} like the others", "invalid_input")
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(names)
    for i in range(n):
        w.writerow([_cell(cols[k][i]) for k in names])
    return out.getvalue().encode()


class Remote:
    """The rules in ``vigil serve``: its native API over HTTP(S)."""

    def __init__(self, url: str, token: Optional[str] = None, passwords: PasswordSource = default_passwords,
                 user: Optional[str] = None, timeout: float = 60.0, insecure: bool = False):
        host = urllib.parse.urlsplit(url).hostname or ""
        if url.startswith("http://") and not insecure and host not in ("127.0.0.1", "localhost", "::1"):
            # Passwords, tokens and patient data would cross the network in clear text.
            raise ValidationError("invalid_text", "plain http:// is allowed only to this machine; use https:// (or insecure=True)", "invalid_input")
        self.url = url.rstrip("/")
        self.token = token
        self.passwords = passwords
        self.user = user
        self.timeout = timeout

    def _auth(self, actor: Optional[str]) -> str:
        if self.token:
            if self.user is None:
                # Whose token it is decides who may act with it.
                self.user = self._get_me()
            if actor is None or actor == self.user:
                return f"Bearer {self.token}"
        actor = actor or self.user
        if actor is None:
            raise AuthenticationError("authentication_failed", "give a token or a user", "unauthenticated")
        pw = self.passwords(actor)
        if pw is None:
            raise AuthenticationError("authentication_failed", f"no password for {actor}", "unauthenticated")
        return "Basic " + base64.b64encode(f"{actor}:{pw}".encode()).decode()

    def _get_me(self) -> str:
        req = urllib.request.Request(self.url + "/api/v1/me", method="GET")
        req.add_header("authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode())["id"]
        except urllib.error.HTTPError as e:
            raise from_code("authentication_failed", f"the token was refused (HTTP {e.code})", "unauthenticated") from None

    def _req(self, method: str, path: str, actor: Optional[str] = None, body: Any = None, ctype: str = "application/json") -> Any:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/api/v1" + path, data=data, method=method)
        req.add_header("authorization", self._auth(actor))
        if data is not None:
            req.add_header("content-type", ctype)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            try:
                err = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                raise VigilError("storage_failure", f"HTTP {e.code} from the server", kind_of_status(e.code)) from None
            raise from_code(err.get("code", "storage_failure"), err.get("message", ""), kind_of_status(e.code)) from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise VigilError("storage_failure", f"the server could not be reached: {type(e).__name__}", "internal") from None
        return json.loads(text) if text else None

    @staticmethod
    def _ref(version: dict) -> str:
        return f"/models/{urllib.parse.quote(version['name'], safe='')}/versions/{urllib.parse.quote(version['version'], safe='')}"

    def register(self, actor: str, manifest: dict) -> dict:
        return self._req("POST", "/models", actor, manifest)

    def version(self, ref: str) -> dict:
        if "@" in ref:
            name, ver = ref.split("@", 1)
            return self._req("GET", f"/models/{urllib.parse.quote(name, safe='')}/versions/{urllib.parse.quote(ver, safe='')}")
        for m in self.models():
            for v in m.get("versions", []):
                if v.get("model_id") == ref:
                    return v
        raise from_code("version_not_found", "model version not found", "not_found")

    def models(self) -> list:
        return self._req("GET", "/models")["models"]

    def request_promotion(self, actor: str, version: dict, to_stage: str, justification: str) -> dict:
        return self._req("POST", "/promotions", actor, {"model": version["name"], "version": version["version"], "to_stage": to_stage, "justification": justification})

    def sign(self, signer: str, request_id: str, approve: bool, meaning: str, comment: str) -> dict:
        pw = self.passwords(signer)
        if pw is None:
            raise AuthenticationError("authentication_failed", f"no password for {signer}", "unauthenticated")
        op = "approve" if approve else "reject"
        return self._req("POST", f"/promotions/{urllib.parse.quote(request_id, safe='')}/{op}", signer, {"password": pw, "meaning": meaning, "comment": comment})

    def request(self, request_id: str) -> dict:
        return self._req("GET", f"/promotions/{urllib.parse.quote(request_id, safe='')}")

    def lineage(self, ref: str) -> dict:
        name, ver = ref.split("@", 1)
        return self._req("GET", f"/models/{urllib.parse.quote(name, safe='')}/versions/{urllib.parse.quote(ver, safe='')}/lineage")

    def verify_audit(self) -> dict:
        return self._req("GET", "/audit/verify")

    def validate(self, actor: str, version: dict, h: dict) -> dict:
        cols: dict = {"score": h["scores"]}
        truth = "label" if h.get("labels") is not None else "target"
        cols[truth] = h.get("labels") if h.get("labels") is not None else h.get("targets")
        if truth == "label":
            cols["label"] = labels_01(cols["label"])
        collide = {"score", "label", "target", "champion_score"} & set(h.get("sensitive") or {})
        if collide:
            raise ValidationError("invalid_validation_data", f"a sensitive attribute may not be named {sorted(collide)[0]!r}", "invalid_input")
        q = {"label": truth, "score": "score", "threshold": str(h.get("threshold", 0.5))}
        if h.get("champion_scores") is not None:
            cols["champion_score"] = h["champion_scores"]
            q["champion_score"] = "champion_score"
        sensitive = dict(h.get("sensitive") or {})
        for k, v in sensitive.items():
            cols[k] = v
        if sensitive:
            q["sensitive"] = ",".join(sensitive)
        return self._req("POST", self._ref(version) + "/validate?" + urllib.parse.urlencode(q), actor, _csv(cols, None), "text/csv")

    def set_validation_policy(self, actor: str, scope: str, target: str, policy: dict, reason: str) -> dict:
        return self._req("PUT", f"/validation-policies/{scope}/{urllib.parse.quote(target, safe='')}", actor, {"policy": policy, "reason": reason})

    def card(self, version: dict) -> dict:
        return self._req("GET", self._ref(version) + "/card?format=json")

    def drift_config(self, version: dict) -> dict:
        return self._req("GET", self._ref(version) + "/drift/config")

    def set_drift_config(self, actor: str, version: dict, config: dict) -> None:
        self._req("PUT", self._ref(version) + "/drift/config", actor, config)

    def set_baseline(self, actor: str, version: dict, features: Mapping[str, Any], predictions: Any) -> dict:
        q = "?prediction_col=prediction" if predictions is not None else ""
        return self._req("POST", self._ref(version) + "/drift/baseline" + q, actor, _csv(features, predictions), "text/csv")

    def add_samples(self, actor: str, version: dict, features: Mapping[str, Any], predictions: Any) -> dict:
        q = "?prediction_col=prediction" if predictions is not None else ""
        return self._req("POST", self._ref(version) + "/drift/samples" + q, actor, _csv(features, predictions), "text/csv")

    def detect_drift(self, actor: str, version: dict, last_rows: Optional[int]) -> dict:
        q = f"?window_rows={int(last_rows)}" if last_rows else ""
        return self._req("POST", self._ref(version) + "/drift/check" + q, actor)
