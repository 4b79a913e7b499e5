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


def window(start, end):
    return json.dumps({"monitor": "m", "window": {"start": start, "end": end}}).encode()


@pytest.mark.parametrize("body, field, words", [
    (window("0001-01-01T00:30:00+01:00", "2013-04-02T00:00:00Z"), "window.start", "ISO 8601"),  # overflows to UTC
    (window("2013-04-01T00:00:00Z", "9999-12-31T23:30:00-01:00"), "window.end", "ISO 8601"),
    (window("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"), "window.start", "between 1970 and 2200"),
    (window("2013-01-01T00:00:00Z", "2014-01-01T00:00:00Z"), "window", "the limit is 92d"),
    (b"[" * 30_000 + b"]" * 30_000, "body", "nests too deeply"),
    (b'{"monitor": "m", "n": ' + b"9" * 5000 + b"}", "body", "not valid JSON"),
    (b'{"monitor": "m", "force": "maybe"}', "force", "true or false"),
])
def test_hostile_bodies_are_400_naming_the_field_never_500(fns, body, field, words):
    status, doc = post(fns["request_check"], body)
    assert (status, doc["field"]) == (400, field) and words in doc["error"], doc


def test_retrain_windows_are_bounded_too(fns):
    body = json.dumps({"endpoint": "e", "reason": "r", "window": {"start": "2010-01-01T00:00:00Z",
                                                                  "end": "2013-01-01T00:00:00Z"}}).encode()
    status, doc = post(fns["request_retrain"], body)
    assert (status, doc["field"]) == (400, "window") and "MLOPS_MAX_WINDOW_SPAN" in doc["error"]


def test_an_unknown_monitor_is_404_without_server_paths(fns):
    status, doc = post(fns["request_check"], b'{"monitor": "nope"}')
    assert status == 404 and "nope" in doc["error"] and "/" not in doc["error"].replace("n/a", "")


def test_the_caller_is_the_platforms_principal_never_a_header_the_client_chose():
    import base64

    from functions._http import caller

    principal = {"auth_typ": "aad", "name_typ": "name", "claims": [{"typ": "name", "val": "alice@contoso.com"}]}
    signed_in = func.HttpRequest("POST", "/api/retrain", body=b"", headers={
        "x-ms-client-principal": base64.b64encode(json.dumps(principal).encode()).decode()})
    assert caller(signed_in) == "alice@contoso.com"
    assert caller(func.HttpRequest("POST", "/api/retrain", body=b"")) == "function-key"
    garbage = func.HttpRequest("POST", "/api/retrain", body=b"", headers={"x-ms-client-principal": "%%%"})
    assert caller(garbage) == "function-key"
