"""Shared fixtures. azure-functions builds an app's function list once (a second get_functions() raises),
so every test that needs the real app's functions shares this session-wide list."""
import pytest


@pytest.fixture(scope="session")
def app_functions():
    import function_app
    from devhost.bindings import declared_functions

    # devhost may have built the list first (in an e2e test): reuse it rather than building it again
    return {f.get_function_name(): f for f in declared_functions(function_app.app)}


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """The check command caches under the user's cache folder by default: tests keep theirs apart."""
    import os

    saved = os.environ.get("MLOPS_CACHE_DIR")
    os.environ["MLOPS_CACHE_DIR"] = str(tmp_path_factory.mktemp("mlops-cache"))
    yield
    if saved is None:
        os.environ.pop("MLOPS_CACHE_DIR", None)
    else:
        os.environ["MLOPS_CACHE_DIR"] = saved
