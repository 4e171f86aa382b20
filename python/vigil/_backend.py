"""The two ways to reach Vigil, behind one interface of JSON documents.

``Embedded`` calls the compiled module (the rules run in this process, on a local SQLite data
directory or a PostgreSQL database); ``Remote`` calls ``vigil serve``'s native API (the rules
run in the server). Both return the same documents, so the public classes are built once.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Mapping, Optional

from . import _vigil
from .errors import AuthenticationError, StorageError, ValidationError, VigilError, from_code, kind_of_status

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

    def version(self, actor: str, ref: str, route: str = "ModelRegistry.get_model") -> dict:
        return self._call(self.store.version, self.session(actor), ref, route)

    def model(self, actor: str, name: str, route: str) -> dict:
        return self._call(self.store.model, self.session(actor), name, route)

    def models(self, actor: str) -> list:
        return self._call(self.store.models, self.session(actor))

    def request_promotion(self, actor: str, version: dict, to_stage: str, justification: str) -> dict:
        return self._call(self.store.request_promotion, self.session(actor), version["model_id"], to_stage, justification)

    def sign(self, signer: str, request_id: str, approve: bool, meaning: str, comment: str) -> dict:
        return self._call(self.store.sign, signer, self.password(signer), request_id, approve, meaning, comment)

    def request(self, actor: str, request_id: str) -> dict:
        return self._call(self.store.request, self.session(actor), request_id)

    def lineage(self, actor: str, ref: str) -> dict:
        return self._call(self.store.lineage, self.session(actor), ref)

    def audit_trail(self, actor: str, query: dict) -> list:
        return self._call(self.store.audit_trail, self.session(actor), json.dumps(query))["events"]

    def verify_audit(self) -> dict:
        return self._call(self.store.verify_audit)

    def validate(self, actor: str, version: dict, h: dict) -> dict:
        return self._call(self.store.validate, self.session(actor), version["model_id"], h["scores"], h.get("labels"), h.get("targets"),
                          h.get("champion_scores"), h.get("sensitive"), h.get("threshold", 0.5))

    def set_validation_policy(self, actor: str, scope: str, target: str, policy: dict, reason: str) -> dict:
        return self._call(self.store.set_validation_policy, self.session(actor), scope, target, json.dumps(policy), reason)

    def card(self, actor: str, version: dict) -> dict:
        return self._call(self.store.card, self.session(actor), version["model_id"])

    def drift_config(self, actor: str, version: dict) -> dict:
        return self._call(self.store.drift_config, self.session(actor), version["model_id"])

    def set_drift_config(self, actor: str, version: dict, config: dict) -> None:
        self._call(self.store.set_drift_config, self.session(actor), version["model_id"], json.dumps(config))

    def set_baseline(self, actor: str, version: dict, features: Mapping[str, Any], predictions: Any) -> dict:
        return self._call(self.store.set_baseline, self.session(actor), version["model_id"], dict(features), predictions)

    def add_samples(self, actor: str, version: dict, features: Mapping[str, Any], predictions: Any) -> dict:
        return self._call(self.store.add_samples, self.session(actor), version["model_id"], dict(features), predictions)

    def detect_drift(self, actor: str, version: dict, last_rows: Optional[int]) -> dict:
        return self._call(self.store.detect_drift, self.session(actor), version["model_id"], last_rows)


PARQUET = "application/vnd.apache.parquet"


def _call_compiled(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except _vigil.VigilError as e:
        _raise(e)
        raise


def _parquet(columns: Mapping[str, Any]) -> bytes:
    """Columns as a Parquet file, read by the compiled module exactly as the embedded mode
    reads them (same kinds, same missing values, same TypeErrors), so both modes compute on
    the same data."""
    return _call_compiled(_vigil.encode_columns, dict(columns))


def _features(features: Mapping[str, Any], predictions: Any) -> bytes:
    cols = dict(features)
    if predictions is not None:
        cols["prediction"] = predictions
    return _parquet(cols)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuses redirects: a redirect would carry the Authorization header (a password or a
    token) and the request body (patient data) to another address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ARG002
        raise StorageError("storage_failure", f"the server answered with a redirect (HTTP {code}); give the final https:// address", "internal")


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Remote:
    """The rules in ``vigil serve``: its native API over HTTP(S). A user who signs in with a
    password gets a server session (``POST /auth/login``) once, which later calls reuse;
    :meth:`close` ends the sessions. A token acts for its owner only (checked with
    ``GET /me``). Redirects are refused, and a loopback address is never reached through a
    proxy."""

    def __init__(self, url: str, token: Optional[str] = None, passwords: PasswordSource = default_passwords,
                 user: Optional[str] = None, timeout: float = 60.0, insecure: bool = False):
        parts = urllib.parse.urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
        if scheme not in ("http", "https") or not host:
            raise ValidationError("invalid_text", "the server address is http(s)://host[:port]", "invalid_input")
        if scheme == "http" and not insecure and host not in _LOOPBACK:
            # Passwords, tokens and patient data would cross the network in clear text.
            raise ValidationError("invalid_text", "plain http:// is allowed only to this machine; use https:// (or insecure=True)", "invalid_input")
        self.url = url.rstrip("/")
        handlers: list = [_NoRedirect()]
        if host in _LOOPBACK:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)
        self.token = token
        self.passwords = passwords
        self.user = user
        self.timeout = timeout
        self._owner: Optional[str] = None
        self._sessions: dict[str, str] = {}
        self._lock = threading.Lock()

    def _password(self, user: str) -> str:
        pw = self.passwords(user)
        if pw is None:
            raise AuthenticationError("authentication_failed", f"no password for {user}", "unauthenticated")
        return pw

    def token_owner(self) -> Optional[str]:
        """Whose token this client holds (``GET /me``, asked once), or None without a token.
        A ``user`` given beside a token must be its owner."""
        if not self.token:
            return None
        if self._owner is None:
            me = self._send("GET", "/me", f"Bearer {self.token}", None, "application/json")
            owner = str(me["id"])
            if self.user is not None and self.user != owner:
                raise AuthenticationError("authentication_failed", "the token belongs to another user than the one named", "unauthenticated")
            self._owner = owner
        return self._owner

    def _auth(self, actor: Optional[str]) -> str:
        owner = self.token_owner()
        if owner is not None and actor in (None, owner):
            return f"Bearer {self.token}"
        actor = actor or self.user
        if actor is None:
            raise AuthenticationError("authentication_failed", "give a token or a user", "unauthenticated")
        with self._lock:
            if actor not in self._sessions:
                out = self._send("POST", "/auth/login", None, json.dumps({"user": actor, "password": self._password(actor)}).encode(), "application/json")
                self._sessions[actor] = out["token"]
            return f"Bearer {self._sessions[actor]}"

    def _send(self, method: str, path: str, authorization: Optional[str], data: Optional[bytes], ctype: str) -> Any:
        req = urllib.request.Request(self.url + "/api/v1" + path, data=data, method=method)
        if authorization:
            req.add_header("authorization", authorization)
        if data is not None:
            req.add_header("content-type", ctype)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            try:
                err = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                raise StorageError("storage_failure", f"HTTP {e.code} from the server", kind_of_status(e.code)) from None
            raise from_code(err.get("code", "storage_failure"), err.get("message", ""), kind_of_status(e.code)) from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise StorageError("storage_failure", f"the server could not be reached: {type(e).__name__}", "internal") from None
        return json.loads(text) if text else None

    def _req(self, method: str, path: str, actor: Optional[str] = None, body: Any = None, ctype: str = "application/json", retry: bool = True) -> Any:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        who = actor or self.user
        try:
            return self._send(method, path, self._auth(actor), data, ctype)
        except AuthenticationError:
            # A session that expired or was ended elsewhere: sign in again, once. Not for
            # signatures: their password failing is not the session's fault, and a second
            # attempt would count twice towards the lockout.
            with self._lock:
                stale = retry and who is not None and who in self._sessions and not (self.token and who == self._owner)
                if stale:
                    self._sessions.pop(who, None)
            if not stale:
                raise
            return self._send(method, path, self._auth(actor), data, ctype)

    def close(self) -> None:
        """Ends the sessions this client opened (tokens given to it are left alone)."""
        with self._lock:
            tokens, self._sessions = list(self._sessions.values()), {}
        for token in tokens:
            try:
                self._send("POST", "/auth/logout", f"Bearer {token}", None, "application/json")
            except VigilError:
                pass

    @staticmethod
    def _ref(version: dict) -> str:
        return f"/models/{urllib.parse.quote(version['name'], safe='')}/versions/{urllib.parse.quote(version['version'], safe='')}"

    def register(self, actor: str, manifest: dict) -> dict:
        return self._req("POST", "/models", actor, manifest)

    def version(self, actor: Optional[str], ref: str, route: str = "") -> dict:  # noqa: ARG002 (the server names its route)
        if "@" in ref:
            name, ver = ref.split("@", 1)
            return self._req("GET", f"/models/{urllib.parse.quote(name, safe='')}/versions/{urllib.parse.quote(ver, safe='')}", actor)
        return self._req("GET", f"/versions/{urllib.parse.quote(ref, safe='')}", actor)

    def models(self, actor: Optional[str]) -> list:
        return self._req("GET", "/models", actor)["models"]

    def model(self, actor: Optional[str], name: str, route: str) -> dict:  # noqa: ARG002
        return self._req("GET", f"/models/{urllib.parse.quote(name, safe='')}", actor)

    def request_promotion(self, actor: str, version: dict, to_stage: str, justification: str) -> dict:
        return self._req("POST", "/promotions", actor, {"model": version["name"], "version": version["version"], "to_stage": to_stage, "justification": justification})

    def sign(self, signer: str, request_id: str, approve: bool, meaning: str, comment: str) -> dict:
        # A signature re-authenticates: the password goes with it even inside a session.
        pw = self._password(signer)
        op = "approve" if approve else "reject"
        return self._req("POST", f"/promotions/{urllib.parse.quote(request_id, safe='')}/{op}", signer, {"password": pw, "meaning": meaning, "comment": comment},
                         retry=False)

    def request(self, actor: Optional[str], request_id: str) -> dict:
        return self._req("GET", f"/promotions/{urllib.parse.quote(request_id, safe='')}", actor)

    def lineage(self, actor: Optional[str], ref: str) -> dict:
        name, ver = ref.split("@", 1)
        return self._req("GET", f"/models/{urllib.parse.quote(name, safe='')}/versions/{urllib.parse.quote(ver, safe='')}/lineage", actor)

    def verify_audit(self) -> dict:
        return self._req("GET", "/audit/verify")

    def audit_trail(self, actor: Optional[str], query: dict) -> list:
        q = {k: str(v) for k, v in query.items() if v is not None}
        return self._req("GET", "/audit?" + urllib.parse.urlencode(q), actor)["events"]

    def validate(self, actor: str, version: dict, h: dict) -> dict:
        cols: dict = {"score": h["scores"]}
        truth = "label" if h.get("labels") is not None else "target"
        if truth == "label":
            cols["label"] = [1.0 if x else 0.0 for x in _call_compiled(_vigil.binary_labels, h["labels"])]
        else:
            cols["target"] = h.get("targets")
        q = {"label": truth, "score": "score", "threshold": str(h.get("threshold", 0.5))}
        if h.get("champion_scores") is not None:
            cols["champion_score"] = h["champion_scores"]
            q["champion_score"] = "champion_score"
        sensitive = dict(h.get("sensitive") or {})
        for k, v in sensitive.items():
            cols[k] = v
        if sensitive:
            q["sensitive"] = ",".join(sensitive)
        return self._req("POST", self._ref(version) + "/validate?" + urllib.parse.urlencode(q), actor, _parquet(cols), PARQUET)

    def set_validation_policy(self, actor: str, scope: str, target: str, policy: dict, reason: str) -> dict:
        return self._req("PUT", f"/validation-policies/{scope}/{urllib.parse.quote(target, safe='')}", actor, {"policy": policy, "reason": reason})

    def card(self, actor: Optional[str], version: dict) -> dict:
        return self._req("GET", self._ref(version) + "/card?format=json", actor)

    def drift_config(self, actor: Optional[str], version: dict) -> dict:
        return self._req("GET", self._ref(version) + "/drift/config", actor)

    def set_drift_config(self, actor: str, version: dict, config: dict) -> None:
        self._req("PUT", self._ref(version) + "/drift/config", actor, config)

    def set_baseline(self, actor: str, version: dict, features: Mapping[str, Any], predictions: Any) -> dict:
        q = "?prediction_col=prediction" if predictions is not None else ""
        return self._req("POST", self._ref(version) + "/drift/baseline" + q, actor, _features(features, predictions), PARQUET)

    def add_samples(self, actor: str, version: dict, features: Mapping[str, Any], predictions: Any) -> dict:
        q = "?prediction_col=prediction" if predictions is not None else ""
        return self._req("POST", self._ref(version) + "/drift/samples" + q, actor, _features(features, predictions), PARQUET)

    def detect_drift(self, actor: str, version: dict, last_rows: Optional[int]) -> dict:
        q = f"?window_rows={int(last_rows)}" if last_rows else ""
        return self._req("POST", self._ref(version) + "/drift/check" + q, actor)
