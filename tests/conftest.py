"""Shared fixtures. azure-functions builds an app's function list once (a second get_functions() raises),
so every test that needs the real app's functions shares this session-wide list."""
import pytest


@pytest.fixture(scope="session")
def app_functions():
    import function_app
    from devhost.bindings import declared_functions

    # devhost may have built the list first (in an e2e test): reuse it rather than building it again
    return {f.get_function_name(): f for f in declared_functions(function_app.app)}
