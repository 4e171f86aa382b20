"""Assertions shared by the MLflow compatibility tests."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from mlflow.exceptions import MlflowException


@contextmanager
def raises_mlflow(error_code: str, http_status: int):
    """The client raises MlflowException with this error code (and the matching HTTP status)."""
    with pytest.raises(MlflowException) as excinfo:
        yield excinfo
    err = excinfo.value
    assert err.error_code == error_code, (
        f"expected {error_code}, got {err.error_code}: {err.message}"
    )
    assert err.get_http_status_code() == http_status


def assert_error_response(resp, status: int, error_code: str | None = None) -> None:
    """A raw HTTP error: exact status; with error_code, a JSON body {error_code, message}."""
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.url}: expected HTTP {status}, got {resp.status_code}: "
        f"{resp.text[:500]!r}"
    )
    if error_code is not None:
        body = resp.json()
        assert body.get("error_code") == error_code, body
        assert isinstance(body.get("message"), str) and body["message"], body


def collect_pages(fetch, label, max_pages: int) -> list:
    """Pages through `fetch(page_token)` (pages of 2) until no token comes back: the first page
    must be full and carry a token, no page holds more than 2, and paging ends within
    `max_pages`. Returns `label(page)` of every page, concatenated."""
    collected, token = [], None
    for page_no in range(1, max_pages + 1):
        page = fetch(token)
        assert len(page) <= 2
        if page_no == 1:
            assert len(page) == 2 and page.token, "first page must be full and carry a token"
        collected += label(page)
        token = page.token
        if not token:
            return collected
    pytest.fail(f"paging did not end after {max_pages} pages")
