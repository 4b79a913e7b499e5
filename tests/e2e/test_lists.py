"""The list APIs over real HTTP under devhost, on a small demo-like world (checks run by the timer)."""
import pytest

from tests.e2e.world import build


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        built = build(tmp_path_factory.mktemp("lists"), mp)
        yield built
        built.close()


def test_monitors_show_state_last_check_and_open_incidents(world):
    body = world.get("monitors")
    assert body["errors"] == [] and body["next"] is None
    (monitor,) = body["items"]
    assert monitor["name"] == "flights-delay" and monitor["status"] == "incident"
    assert monitor["watermark"] == "2013-04-12T00:00:00Z"
    assert monitor["last_check"]["window"] == {"start": "2013-04-11T00:00:00Z", "end": "2013-04-12T00:00:00Z"}
    assert "temp" in monitor["last_check"]["drifted_features"]
    (incident,) = monitor["open_incidents"]  # one incident per episode, its signals as facets
    assert {"data_drift", "performance"} <= set(incident["signals"]) and incident["signal"] == "performance"


def test_checks_page_newest_first_without_gaps_or_repeats(world):
    seen, cursor = [], None
    while True:
        body = world.get("checks?monitor=flights-delay&limit=4" + (f"&cursor={cursor}" if cursor else ""))
        assert len(body["items"]) <= 4
        seen += [c["window"]["start"] for c in body["items"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 11
    hot = world.get("checks?from=2013-04-07T00:00:00Z&to=2013-04-10T00:00:00Z")["items"]
    assert [c["window"]["start"][:10] for c in hot] == ["2013-04-09", "2013-04-08", "2013-04-07"]
    assert all(c["status"] == "breached" and "temp" in c["drifted_features"] for c in hot)
    assert hot[0]["report_url"] == f"/api/checks/{hot[0]['check_id']}/report"
    ok = world.get("checks?status=ok")["items"]
    assert ok and all(c["status"] == "ok" for c in ok)


def test_incidents_filter_by_state_and_monitor(world):
    opened = world.get("incidents?state=open")["items"]
    assert opened and all(i["status"] == "open" for i in opened)
    drift = next(i for i in opened if "data_drift" in i["signals"])
    temp = next(e for e in drift["evidence"] if e["name"] == "temp")
    assert temp["effect"] > temp["floor"] > 0  # what opened it: the effect against its floor
    assert world.get("incidents?state=resolved&monitor=flights-delay")["items"] == []
    assert world.get("incidents?monitor=another")["items"] == []


def test_runs_with_gate_reasons_and_deployments(world):
    runs = world.get("runs?endpoint=flights")["items"]
    assert [r["state"] for r in runs] == ["promoted", "rejected"]  # newest first
    assert runs[1]["gate"] == {"accepted": False, "reasons": ["auc 0.61 < champion 0.64"]}
    assert runs[0]["url"] == "/api/runs/rt-test1" and runs[0]["history"][-1]["state"] == "promoted"
    assert [r["run_id"] for r in world.get("runs?state=rejected")["items"]] == ["rt-test0"]
    (endpoint,) = world.get("deployments")["items"]
    assert endpoint["endpoint"] == "flights"
    assert endpoint["deployments"] == [{"name": "blue", "traffic": 100, "model": "flights-delay:1", "canary": False}]


def test_timeline_has_effects_verdicts_performance_and_incidents(world):
    body = world.get("monitors/flights-delay/timeline")
    points = body["points"]
    assert [p["start"][:10] for p in points][:2] == ["2013-04-01", "2013-04-02"] and len(points) == 11
    hot = points[7]
    assert hot["status"] == "breached" and hot["features"]["temp"]["effect"] > hot["features"]["temp"]["floor"]
    assert points[0]["features"]["temp"]["drifted"] is False
    auc = [p["performance"].get("performance/auc", {}).get("value") for p in points]
    assert auc[2] > auc[9]  # the model got worse in the hot week
    assert {s for i in body["incidents"] for s in i["signals"]} >= {"data_drift", "performance"}
    assert world.request("monitors/nope/timeline")[0] == 404


@pytest.mark.parametrize("path, field", [
    ("checks?limit=0", "limit"), ("checks?limit=x", "limit"), ("checks?from=yesterday", "from"),
    ("checks?status=great", "status"), ("incidents?state=closed", "state"), ("runs?cursor=%%%", "cursor"),
    ("runs?state=done", "state"),
])
def test_bad_parameters_are_a_400_naming_the_parameter(world, path, field):
    status, body = world.request(path)
    assert status == 400 and body["field"] == field, body


def test_every_list_needs_the_function_key(world):
    for path in ("monitors", "checks", "incidents", "runs", "deployments", "monitors/flights-delay/timeline",
                 "dashboard", "dashboard/assets/dashboard.js"):
        assert world.request(path, key=False)[0] == 401, path
    assert world.request("checks?monitor=unknown")[0] == 404
