"""Shared fixtures. azure-functions builds an app's function list once (a second get_functions() raises),
so every test that needs the real app's functions shares this session-wide list."""
import pytest


@pytest.fixture(scope="session")
def app_functions():
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}
