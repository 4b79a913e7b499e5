"""The dashboard in a real headless browser (Debian's chromium driven by Playwright) on a demo-like world:
what a person sees - monitors, open incidents with what opened them, the timeline chart, runs with their gate
reasons, deployments, recent checks with report links - and no console errors (CSP included)."""
import shutil
import urllib.error
import urllib.request

import pytest

from tests.e2e.world import build

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        built = build(tmp_path_factory.mktemp("dashboard"), mp)
        yield built
        built.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-dev.txt")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (the README's setup and .ci/run do)",
                    pytrace=False)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        # a fresh profile per run: launch_persistent_context is Playwright's way to name the user-data-dir
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=FLAGS,
                                                       headless=True, viewport={"width": 1400, "height": 1000})
        yield context
        context.close()


def open_dashboard(world, browser):
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(f"{world.base}dashboard?code={world.key}")
    page.wait_for_selector("body[data-ready]", timeout=60_000)
    return page, problems


def cells(page, table):
    return page.eval_on_selector_all(f"#{table} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))")


def test_a_person_sees_state_incidents_timeline_runs_and_checks(world, browser):
    page, problems = open_dashboard(world, browser)
    try:
        assert page.eval_on_selector("body", "b => b.dataset.ready") == "true"
        assert page.is_hidden("#problem")
        (monitor,) = cells(page, "monitors")
        assert monitor[:3] == ["flights-delay", "incident", "flights"]
        assert monitor[3] == "2013-04-11 \u2192 2013-04-12"

        incidents = cells(page, "incidents")
        drift = next(r for r in incidents if "data_drift" in r[1].split(", "))  # one incident, signals as facets
        assert "temp:" in drift[5] and "vs floor" in drift[5]  # the feature and effect that opened it

        # the timeline: a plotly figure with the per-feature heatmap, the verdicts and performance
        page.wait_for_selector("#timeline .main-svg")
        traces = page.evaluate("() => document.getElementById('timeline').data.map(t => [t.type, t.name || ''])")
        assert ["heatmap", ""] in traces and ["scatter", "drift share"] in traces and ["scatter", "auc"] in traces
        assert page.locator("#timeline .hm, #timeline image, #timeline .heatmaplayer *").count() > 0
        shapes = page.evaluate("() => document.getElementById('timeline').layout.shapes.length")
        assert shapes >= 4  # the runs' retrain, gate, canary and promotion marks
        names = page.evaluate("() => document.getElementById('timeline').data.map(t => t.name)")
        assert "warning incidents" in names and "critical incidents" in names  # incident bars per signal

        runs = cells(page, "runs")
        assert [r[4] for r in runs] == ["promoted", "rejected"]
        assert "auc 0.61 < champion 0.64" in runs[1][5]
        assert cells(page, "deployments") == [["flights", "blue", "flights-delay:1", "100%"]]

        checks = cells(page, "checks")
        assert len(checks) == 11 and checks[0][2] == "breached" and "temp" in checks[0][4]
        href = page.eval_on_selector("#checks tbody tr:first-child a", "a => a.href")
        assert "/api/checks/" in href and href.endswith(f"/report?code={world.key}")
        assert problems == []
    finally:
        page.close()


def test_the_page_and_its_assets_need_the_key_and_load_from_the_app_only(world, browser):
    page, problems = open_dashboard(world, browser)
    try:
        scripts = page.eval_on_selector_all("script[src]", "s => s.map(x => x.src)")
        assert scripts and all(s.startswith(world.base) for s in scripts)  # nothing from a CDN
        assert problems == []
    finally:
        page.close()
    for path in ("dashboard", "dashboard/assets/plotly.min.js"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(world.base + path, timeout=30)
        assert err.value.code == 401
    req = urllib.request.Request(f"{world.base}dashboard/assets/plotly.min.js?code={world.key}",
                                 headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=30) as res:
        assert res.headers["Content-Encoding"] == "gzip" and res.headers["Content-Type"].startswith("text/javascript")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{world.base}dashboard/assets/..%2Fsecrets?code={world.key}", timeout=30)
    assert err.value.code == 404
