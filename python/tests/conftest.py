"""Fixtures: a fresh embedded store with the original system's people, the environment the
package reads (VIGIL_DATA_DIR, VIGIL_USER, VIGIL_CREDENTIALS), and `vigil serve` on port 0
over the same store for the remote mode."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {
    "admin": "admin-password-1",
    "data_scientist_123": "dana-password-1",
    "ml_lead_456": "lee-password-1",
    "clinician_789": "cleo-password-1",
}
PEOPLE = [
    ("data_scientist_123", "Dana Scientist", "data_scientist"),
    ("ml_lead_456", "Lee Lead", "ml_lead"),
    ("clinician_789", "Dr. Cleo Reviewer", "clinical_reviewer"),
]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A data directory with an administrator and the seed's three people; the package's
    environment points at it."""
    from vigil._backend import Embedded

    data = tmp_path / "vigil"
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps(PASSWORDS))
    monkeypatch.setenv("VIGIL_CREDENTIALS", str(creds))
    monkeypatch.setenv("VIGIL_DATA_DIR", str(data))
    monkeypatch.setenv("VIGIL_USER", "data_scientist_123")
    for var in ("VIGIL_URL", "VIGIL_DATABASE_URL", "VIGIL_PASSWORD", "VIGIL_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    b = Embedded(str(data))
    b.init_admin("admin", "Ada Admin", PASSWORDS["admin"])
    for user, name, role in PEOPLE:
        b.add_user("admin", user, name, role, PASSWORDS[user])
    del b
    return data


def vigil_binary() -> Path:
    exe = ROOT / "target" / "debug" / "vigil"
    if not exe.exists():
        raise RuntimeError("build the CLI first: cargo build -p vigil-cli (scripts/test does)")
    return exe


@pytest.fixture
def server(store):
    """`vigil serve` on port 0 over the fixture's store; yields its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_LOG"] = "errors"
    proc = subprocess.Popen([str(vigil_binary()), "--data-dir", str(store), "serve", "--addr", "127.0.0.1:0", "--artifacts", str(store / "artifacts")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    yield line[len("listening on "):]
    proc.kill()
    proc.wait()


@pytest.fixture
def pg_store(tmp_path, monkeypatch):
    """An embedded PostgreSQL store in a fresh schema of $VIGIL_TEST_DATABASE_URL, with the
    same people; the package's environment points at it (VIGIL_DATABASE_URL,
    VIGIL_SIGNING_KEY). Without a server the test is skipped on a developer's machine and fails
    under CI or VIGIL_REQUIRE_POSTGRES (scripts/test sets it): it never silently skips there."""
    import time

    from vigil._backend import Embedded

    url = os.environ.get("VIGIL_TEST_DATABASE_URL", "")
    if not url:
        if os.environ.get("CI") or os.environ.get("VIGIL_REQUIRE_POSTGRES"):
            pytest.fail("VIGIL_TEST_DATABASE_URL is not set but the PostgreSQL runs are required")
        pytest.skip("VIGIL_TEST_DATABASE_URL not set")
    schema = f"py_{os.getpid()}_{time.time_ns()}"
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", f"CREATE SCHEMA {schema}"], check=True, capture_output=True)
    sep = "&" if "?" in url else "?"
    db = f"{url}{sep}options=-csearch_path%3D{schema}"
    key = tmp_path / "signing.key"
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps(PASSWORDS))
    monkeypatch.setenv("VIGIL_CREDENTIALS", str(creds))
    monkeypatch.setenv("VIGIL_DATABASE_URL", db)
    monkeypatch.setenv("VIGIL_SIGNING_KEY", str(key))
    monkeypatch.setenv("VIGIL_USER", "data_scientist_123")
    for var in ("VIGIL_URL", "VIGIL_DATA_DIR", "VIGIL_PASSWORD", "VIGIL_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    b = Embedded(None, db, str(key))
    b.init_admin("admin", "Ada Admin", PASSWORDS["admin"])
    for user, name, role in PEOPLE:
        b.add_user("admin", user, name, role, PASSWORDS[user])
    del b
    yield db
    subprocess.run(["psql", url, "-q", "-c", f"DROP SCHEMA {schema} CASCADE"], capture_output=True)
