"""search_experiments with MLflow's filter and order_by (names, times, tags) through the stock
client; refused filters are 400 INVALID_PARAMETER_VALUE."""

from __future__ import annotations

import uuid

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


def test_search_experiments_filters_orders_and_pages(vigil):
    client = MlflowClient()
    p = f"se{uuid.uuid4().hex[:8]}"
    for name, team in ((f"{p}-icu-b", "icu"), (f"{p}-icu-a", "icu"), (f"{p}-ed", "ed")):
        client.create_experiment(name, tags={"team": team})
    got = client.search_experiments(filter_string=f"name LIKE '{p}-icu%'", order_by=["name ASC"])
    assert [e.name for e in got] == [f"{p}-icu-a", f"{p}-icu-b"]
    got = client.search_experiments(filter_string=f"name LIKE '{p}%' AND tags.team = 'ed'")
    assert [e.name for e in got] == [f"{p}-ed"]
    got = client.search_experiments(filter_string=f"name LIKE '{p}%' AND creation_time > 0", order_by=["name DESC"], max_results=2)
    assert [e.name for e in got] == [f"{p}-icu-b", f"{p}-icu-a"]
    assert got.token, "a second page follows"
    rest = client.search_experiments(filter_string=f"name LIKE '{p}%' AND creation_time > 0", order_by=["name DESC"], max_results=2, page_token=got.token)
    assert [e.name for e in rest] == [f"{p}-ed"]


@pytest.mark.parametrize("bad", ["name = 'a' OR name = 'b'", "version_number = 1", "creation_time = 'x'"])
def test_search_experiments_refuses_bad_filters(vigil, bad):
    with pytest.raises(MlflowException) as e:
        MlflowClient().search_experiments(filter_string=bad)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
