"""Fixtures shared by the contract suites: Azurite for the Azure Storage adapters, and each store."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.azurite import AzuriteEndpoints, AzuriteUnavailable, running_azurite, unique_name


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteEndpoints]:
    """One Azurite for the whole session. Missing Azurite fails loudly: CI installs it, so a skip would hide it."""
    try:
        with running_azurite() as endpoints:
            yield endpoints
    except AzuriteUnavailable as exc:
        pytest.fail(f"Azurite is required for the Azure Storage contract tests: {exc}", pytrace=False)


@pytest.fixture(params=["sqlite", "tables"])
def state_store(request, tmp_path):
    """Every StateStore adapter, empty. The tables one runs through the real SDK against Azurite."""
    if request.param == "sqlite":
        from core.state_sqlite import SqliteStateStore

        store = SqliteStateStore(tmp_path / "state.db")
    else:
        from core.state_tables import TableStateStore

        az = request.getfixturevalue("azurite")
        store = TableStateStore(az.table_endpoint, credential=az.credential, table=unique_name("state"))
    yield store
    store.close()
