"""The README's "Running it locally" steps, run as written: `make devhost WORKSPACE=...` in a real process, the key
from the `export KEY=...` line it prints, then every curl line in order (curl itself, through bash).

Substitutions, and only these: `make demo` (minutes) is replaced by a small demo-like workspace made the same way
(checks already run by devhost's timer, labels a day late), `out/demo/work` by that workspace, port 7071 by a free
one, `<check_id>` / `<run_id>` by what the previous answer named; `xdg-open` is fetched with curl instead.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.azurite import _free_ports
from tests.e2e.world import build

ROOT = Path(__file__).parents[2]


def readme_steps() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Running it locally"):text.index("Settings are app settings")]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture()
def workspace(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        world = build(tmp_path / "work", mp, runs=False)
        world.close()
    return tmp_path / "work"


def run(command: str, env: dict[str, str]) -> tuple[int, dict]:
    out = subprocess.run(["bash", "-c", command + ' -w "\\n%{http_code}"'], env=env, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    body, _, status = out.stdout.rpartition("\n")
    return int(status), (json.loads(body) if body.strip().startswith(("{", "[")) else {"text": body})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_readme_local_walkthrough_works_as_written(workspace):
    if not shutil.which("curl"):
        pytest.fail("curl not found: apt-get install curl (.ci/run does)", pytrace=False)
    steps = readme_steps()
    assert steps[0] == "make demo" and steps[1].startswith("make devhost WORKSPACE=out/demo/work")
    port = _free_ports(1)[0]
    env = {**os.environ, "TRACK_SCHEDULE": "*/3 * * * * *"}  # look at the pipeline run every 3 s, not every minute
    for name in ("MLOPS_DATA_DIR", "MLOPS_MONITORS_DIR", "MLOPS_RETRAIN_CONFIG", "CHECK_SCHEDULE", "MLOPS_CLOCK"):
        env.pop(name, None)
    command = steps[1].replace("out/demo/work", str(workspace)) + f" PORT={port}"
    host = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        printed = []
        while not any(line.startswith("export KEY=") for line in printed):
            line = host.stdout.readline()
            assert line, "devhost exited before printing the key:\n" + "".join(printed)
            printed.append(line)
        assert any("devhost: clock sim:2013-04-13T00:00:00Z" in line for line in printed), printed
        key = next(line for line in printed if line.startswith("export KEY=")).strip().split("=", 1)[1]
        env["KEY"] = key
        _walk(steps[2:], env, port, workspace)
    finally:
        os.killpg(host.pid, signal.SIGTERM)
        try:
            host.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait()
        host.stdout.close()


def _walk(steps: list[str], env: dict[str, str], port: int, workspace: Path) -> None:
    ids: dict[str, str] = {}
    answers = []
    for step in steps:
        if step.startswith("export KEY="):
            continue  # the line devhost printed was taken above, as a person pastes it
        if step.startswith("xdg-open "):
            step = "curl -s " + step.removeprefix("xdg-open ")
        assert step.startswith("curl "), step
        command = step.replace("localhost:7071", f"localhost:{port}")
        for name, value in ids.items():
            command = command.replace(f"<{name}>", value)
        if "<" in command.split("-d")[0]:
            pytest.fail(f"no value for a placeholder in: {step}")
        status, body = _answer(command, env, step)
        answers.append((step, status, body))
        if "check_id" in body and "check_id" not in ids and status == 202:
            ids["check_id"] = body["check_id"]
        if "run_id" in body:
            ids["run_id"] = body["run_id"]
    _expect(answers)


def _answer(command: str, env: dict[str, str], step: str) -> tuple[int, dict]:
    """Run one curl line; the ones reading results wait for the work devhost does in the background."""
    deadline = time.monotonic() + 240
    while True:
        status, body = run(command, env)
        if "/api/checks/" in step and "rerun" in body and time.monotonic() < deadline:
            time.sleep(1)  # the forced check is still running: the record says so
            continue
        if "/api/runs/" in step and body.get("state") in ("requested", "running") and time.monotonic() < deadline:
            time.sleep(2)  # the pipeline is still running
            continue
        return status, body


def _expect(answers: list[tuple[str, int, dict]]) -> None:
    (first, second, record, retrain, run, health, *lists) = answers
    assert first[1] == 200 and first[2]["status"] == "already_checked", first
    assert "force=true" in first[2]["message"]
    assert second[1] == 202 and second[2]["status"] == "requested" and second[2]["forced"] is True, second
    assert record[1] == 200 and record[2]["rows"] == 600 and record[2]["reason"] == "http (re-run)", record[2]
    assert retrain[1] == 202 and retrain[2]["state"] == "requested", retrain
    assert run[1] == 200 and run[2]["state"] not in ("skipped", "failed", "requested", "running"), run[2]
    assert run[2]["data"]["new_rows"] >= 1000  # the demo's clock: labelled rows to train on
    assert health[1:] == (200, {"status": "ok"})
    for step, status, body in lists:
        assert status == 200, (step, body)
    assert "<!doctype html>" in lists[-1][2]["text"].lower()


@pytest.mark.timeout(300)
def test_a_fresh_make_devhost_says_the_example_monitor_is_not_scheduled_and_how_to_add_one(tmp_path):
    port = _free_ports(1)[0]
    env = {**os.environ, "MLOPS_DATA_DIR": str(tmp_path / "local")}  # not the repository's own .local
    for name in ("MLOPS_MONITORS_DIR", "MLOPS_RETRAIN_CONFIG", "CHECK_SCHEDULE", "MLOPS_CLOCK"):
        env.pop(name, None)
    host = subprocess.Popen(["make", "devhost", f"PORT={port}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        printed = []
        while not any("no monitor will run" in line for line in printed):
            line = host.stdout.readline()
            assert line, "devhost exited early:\n" + "".join(printed)
            printed.append(line)
        text = "".join(printed)
        assert "devhost: monitor flights-delay is not scheduled: its reference data" in text
        assert "make devhost WORKSPACE=out/demo/work" in text and "python -m monitors init" in text
        key = next(line for line in printed if line.startswith("export KEY=")).strip().split("=", 1)[1]
        env["KEY"] = key
        status, body = run(f"curl -s -X POST localhost:{port}/api/checks -H \"x-functions-key: $KEY\" "
                           "-d '{\"monitor\": \"flights-delay\"}'", env)
        assert status == 400 and "cannot be checked" in body["error"] and "does not exist" in body["error"]
        status, body = run(f"curl -s localhost:{port}/api/monitors -H \"x-functions-key: $KEY\"", env)
        assert body["items"][0]["status"] == "not scheduled"
    finally:
        os.killpg(host.pid, signal.SIGTERM)
        try:
            host.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait()
        host.stdout.close()
