"""HTTP bodies are validated before anything runs: 4xx with a JSON error naming the field."""
import json

import azure.functions as func
import pytest


@pytest.fixture(scope="module")
def fns(app_functions):
    return {name: f.get_user_function() for name, f in app_functions.items()}


def post(fn, body: bytes, headers=None):
    res = fn(func.HttpRequest("POST", "/api/x", body=body, headers=headers or {}))
    return res.status_code, json.loads(res.get_body())


@pytest.mark.parametrize("body, field", [
    (b"", "body"),
    (b"{not json", "body"),
    (b"[1]", "body"),
    (b"{}", "monitor"),
    (b'{"monitor": 7}', "monitor"),
    (b'{"monitor": "  "}', "monitor"),
    (b'{"monitor": "m", "window": 3}', "window"),
    (b'{"monitor": "m", "window": {"start": "2013-04-01T00:00:00Z"}}', "window.end"),
    (b'{"monitor": "m", "window": {"start": "2013-04-01", "end": "2013-04-02T00:00:00Z"}}', "window.start"),
    (b'{"monitor": "m", "window": {"start": "2013-04-02T00:00:00Z", "end": "2013-04-01T00:00:00Z"}}', "window"),
])
def test_check_request_validation(fns, body, field):
    status, doc = post(fns["request_check"], body)
    assert status == 400
    assert doc["field"] == field and doc["error"]


@pytest.mark.parametrize("body, field", [
    (b'{"reason": "x"}', "endpoint"),
    (b'{"endpoint": "flights"}', "reason"),
    (b'{"endpoint": "flights", "reason": "' + b"x" * 2000 + b'"}', "reason"),
])
def test_retrain_request_validation(fns, body, field):
    status, doc = post(fns["request_retrain"], body)
    assert (status, doc["field"]) == (400, field)


def test_oversized_body_is_413(fns):
    status, doc = post(fns["request_check"], b'{"monitor": "' + b"m" * 70_000 + b'"}')
    assert status == 413 and "limit" in doc["error"]


def test_the_body_limit_is_an_app_setting(fns, monkeypatch):
    import bootstrap
    from core.settings import Settings

    monkeypatch.setenv("MLOPS_MAX_BODY_BYTES", "100")
    bootstrap.configure(Settings())
    try:
        status, doc = post(fns["request_check"], b'{"monitor": "' + b"m" * 120 + b'"}')
        assert status == 413 and "100" in doc["error"]
    finally:
        monkeypatch.delenv("MLOPS_MAX_BODY_BYTES")
        bootstrap.configure(Settings())
