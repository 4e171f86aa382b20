"""Session fixtures for the MLflow compatibility suite.

One Vigil server per test session, on a fresh embedded store in a temp dir, with four users:
admin (store admin), dana (data_scientist), cleo (clinical_reviewer) and lee (ml_lead). The stock
``mlflow`` client talks to it through MLFLOW_TRACKING_URI and HTTP Basic credentials (dana by
default; tests that need another identity override the environment with ``monkeypatch``).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests

# Fail fast: on a 5xx the client otherwise retries 7 times with backoff (~4 minutes).
# Set at import time so that every mlflow code path sees them.
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "20"
# Keep the client quiet and synchronous; no calls to anything but the server under test.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "false"

# The debug binary of this checkout (tests/mlflow/ -> repository root).
DEFAULT_BIN = str(Path(__file__).resolve().parents[2] / "target" / "debug" / "vigil")
STARTUP_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
HTTP_TIMEOUT_S = 20

PASSWORDS = {
    "admin": "admin-pass-123",
    "dana": "dana-pass-123",
    "cleo": "cleo-pass-123",
    "lee": "lee-pass-123",
}

# Inherited variables that would change which server/identity/experiment the client uses.
_CLIENT_ENV_TO_CLEAR = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_RUN_ID",
    "MLFLOW_ACTIVE_MODEL_ID",
    "MLFLOW_WORKSPACE",
)

_LISTENING_RE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)\s*$")


@dataclass
class Vigil:
    """A running Vigil server."""

    url: str
    root: Path  # temp dir holding the data dir and the server log
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen
    passwords: dict = field(default_factory=lambda: dict(PASSWORDS))

    def api(
        self,
        method: str,
        path: str,
        *,
        user: str | None = "dana",
        password: str | None = None,
        **kwargs,
    ) -> requests.Response:
        """Raw HTTP call. ``path`` starts with ``/api/...``; ``user=None`` sends no credentials."""
        auth = None
        if user is not None:
            auth = (user, PASSWORDS.get(user, "") if password is None else password)
        kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
        return requests.request(method, self.url + path, auth=auth, **kwargs)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "<no server log>"


def _vigil_bin() -> str:
    path = os.environ.get("VIGIL_BIN", DEFAULT_BIN)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"Vigil binary not found or not executable: {path!r}. Build it first "
            f"(`cargo build -p vigil-cli` at the repository root) or point VIGIL_BIN at it.",
            pytrace=False,
        )
    return path


def _cli_env(password: str | None = None) -> dict[str, str]:
    # Only our explicit flags decide the store and the acting user.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    if password is not None:
        env["VIGIL_PASSWORD"] = password
    return env


def _run_cli(binary: str, args: list[str], env: dict[str, str]) -> None:
    try:
        res = subprocess.run(
            [binary, *args], env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`vigil {' '.join(args)}` did not finish within 60 s", pytrace=False)
    if res.returncode != 0:
        pytest.fail(
            f"`vigil {' '.join(args)}` exited with {res.returncode}\n"
            f"--- stdout ---\n{res.stdout}\n--- stderr ---\n{res.stderr}",
            pytrace=False,
        )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_server(binary: str, root: Path) -> Vigil:
    """Create the store and users in root/data, start `vigil serve`, wait for its URL."""
    data_dir = root / "data"
    data_dir.mkdir()
    log_path = root / "serve.log"

    _run_cli(
        binary,
        ["--data-dir", str(data_dir), "init", "--admin", "admin", "--name", "Ada Admin",
         "--new-password", PASSWORDS["admin"]],
        _cli_env(),
    )
    for user, role, name in (
        ("dana", "data_scientist", "Dana Scientist"),
        ("cleo", "clinical_reviewer", "Cleo Reviewer"),
        ("lee", "ml_lead", "Lee Lead"),
    ):
        _run_cli(
            binary,
            ["--data-dir", str(data_dir), "--user", "admin", "user", "add", user, "--role", role,
             "--name", name, "--new-password", PASSWORDS[user]],
            _cli_env(password=PASSWORDS["admin"]),
        )

    with open(log_path, "w") as log_file:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [binary, "--data-dir", str(data_dir), "serve", "--addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            env=_cli_env(),
            text=True,
            bufsize=1,
        )

    # Read stdout on a thread (and keep draining it, so the server never blocks on a full pipe).
    lines: queue.Queue = queue.Queue()

    def _pump():
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=_pump, daemon=True).start()

    url = None
    seen: list[str] = []
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while url is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:  # stdout closed: the server exited
            break
        seen.append(line)
        m = _LISTENING_RE.search(line.strip())
        if m:
            url = m.group(1)

    if url is None:
        _stop(proc)
        pytest.fail(
            f"vigil serve did not print 'listening on http://127.0.0.1:PORT' within "
            f"{STARTUP_TIMEOUT_S} s (exit code {proc.poll()})\n--- stdout ---\n{''.join(seen)}"
            f"\n--- stderr ---\n{log_path.read_text(errors='replace')[-4000:]}",
            pytrace=False,
        )
    return Vigil(url=url, root=root, data_dir=data_dir, log_path=log_path, proc=proc)


def _remove(root: Path) -> None:
    if os.environ.get("VIGIL_TEST_KEEP"):
        print(f"\nkept Vigil test store in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def vigil() -> Iterator[Vigil]:
    binary = _vigil_bin()
    root = Path(tempfile.mkdtemp(prefix="vigil-mlflow-tests-"))
    try:
        server = _start_server(binary, root)
    except BaseException:  # includes pytest.fail(): do not leave temp dirs behind
        _remove(root)
        raise

    saved_env = dict(os.environ)
    for key in _CLIENT_ENV_TO_CLEAR:
        os.environ.pop(key, None)
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    os.environ["MLFLOW_TRACKING_USERNAME"] = "dana"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = PASSWORDS["dana"]
    try:
        yield server
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        _stop(server.proc)
        _remove(root)


@pytest.fixture(autouse=True)
def _fresh_client_state(vigil, monkeypatch):
    """Per test: dana's credentials, no active experiment, no leaked active run."""
    import mlflow.tracking.fluent as fluent

    if vigil.proc.poll() is not None:
        pytest.fail(
            f"the Vigil server has exited (code {vigil.proc.returncode})\n{vigil.log_tail()}",
            pytrace=False,
        )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", vigil.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "dana")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["dana"])
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    # set_experiment() stores the experiment in a module global; reset it so every test
    # starts like a fresh process (private attribute of mlflow 3.17's fluent API).
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    _end_active_runs()
    yield
    # A test may have switched identity; end any leaked run as dana.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "dana")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["dana"])
    _end_active_runs()


def _end_active_runs() -> None:
    import mlflow

    for _ in range(10):  # bounded: end_run() keeps the run active if the server refuses
        if mlflow.active_run() is None:
            return
        try:
            mlflow.end_run()
        except Exception:
            pass


@pytest.fixture
def client(vigil):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=vigil.url)
