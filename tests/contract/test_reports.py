"""One contract for every ReportStore adapter: local files, and Blob Storage through the real SDK on Azurite."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from core.errors import NotFound, ValidationFailed
from core.reports import BlobReportStore, FileReportStore
from tests.azurite import unique_name

HTML = "<html><body><h1>Drift: dep_delay</h1><p>ünïcode ✓</p></body></html>".encode()


@pytest.fixture(params=["file", "blob"])
def report_store(request, tmp_path):
    if request.param == "file":
        return FileReportStore(tmp_path / "reports")
    az = request.getfixturevalue("azurite")
    return BlobReportStore(az.blob_endpoint, unique_name("reports"), credential=az.credential)


def test_put_then_get_round_trips_the_bytes(report_store):
    uri = report_store.put("flights/20130401T000000Z-20130402T000000Z/drift.html", HTML, "text/html")
    assert report_store.get("flights/20130401T000000Z-20130402T000000Z/drift.html") == HTML
    assert uri.endswith("flights/20130401T000000Z-20130402T000000Z/drift.html")


def test_put_overwrites_and_stores_the_content_type(report_store):
    report_store.put("r.json", b'{"v": 1}', "application/json")
    report_store.put("r.json", b'{"v": 2}', "application/json; charset=utf-8")
    assert report_store.get("r.json") == b'{"v": 2}'
    assert report_store.content_type("r.json") == "application/json; charset=utf-8"


def test_empty_and_binary_content_round_trip(report_store):
    payload = bytes(range(256)) * 1000
    report_store.put("empty.txt", b"", "text/plain")
    report_store.put("data.bin", payload, "application/octet-stream")
    assert report_store.get("empty.txt") == b""
    assert report_store.get("data.bin") == payload


def test_missing_report_is_not_found(report_store):
    report_store.put("exists.txt", b"x", "text/plain")
    with pytest.raises(NotFound):
        report_store.get("missing.txt")
    with pytest.raises(NotFound):
        report_store.content_type("missing.txt")


@pytest.mark.parametrize("name", ["../escape.html", "a/../../escape.html", "/etc/passwd", "a/./b", "a//b", "",
                                  "C:\\temp\\x", "a\\..\\b", ".meta/x.json", "a/.hidden", "a b.html", "a/", 5])
def test_unsafe_names_are_rejected_naming_the_field(report_store, name):
    with pytest.raises(ValidationFailed) as info:
        report_store.put(name, b"x", "text/plain")
    assert info.value.field == "name"
    with pytest.raises(ValidationFailed):
        report_store.get(name)


def test_content_must_be_bytes_with_a_media_type(report_store):
    with pytest.raises(ValidationFailed) as info:
        report_store.put("r.txt", "text, not bytes", "text/plain")
    assert info.value.field == "content"
    with pytest.raises(ValidationFailed) as info:
        report_store.put("r.txt", b"x", "plain")
    assert info.value.field == "content_type"


def test_file_reports_stay_under_the_root_and_the_uri_points_at_the_file(tmp_path):
    store = FileReportStore(tmp_path / "reports")
    uri = store.put("m1/w1/report.html", HTML, "text/html")
    path = Path(url2pathname(urlparse(uri).path))
    assert path.read_bytes() == HTML
    assert path.is_relative_to((tmp_path / "reports").resolve())
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.is_relative_to(tmp_path / "reports") for p in written)


def test_blob_uri_names_the_container_and_blob(azurite):
    container = unique_name("reports")
    store = BlobReportStore(azurite.blob_endpoint, container, credential=azurite.credential)
    uri = store.put("m1/report.html", HTML, "text/html")
    assert uri == f"{azurite.blob_endpoint}/{container}/m1/report.html"


def test_blob_container_name_is_validated():
    with pytest.raises(ValidationFailed) as info:
        BlobReportStore("http://127.0.0.1:1/devstoreaccount1", "Bad_Name")
    assert info.value.field == "container"
