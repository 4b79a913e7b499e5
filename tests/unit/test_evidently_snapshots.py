"""Each check's window as an evidently snapshot in an evidently workspace: one project per monitor, one run per
checked window, which `evidently ui --workspace <folder>` lists."""
import numpy as np

from core.types import Window
from monitors.results import EvidentlySnapshots
from monitors.spec import SpecRepository
from tests.unit.test_check_handler import DAY, SPEC, T0, traffic


def test_checks_become_runs_of_the_monitors_project(tmp_path):
    (tmp_path / "flights.yaml").write_text(SPEC)
    spec = SpecRepository(tmp_path).get("flights-delay")
    reference = traffic(np.random.default_rng(0), 800)
    windows = {}

    def frames(monitor, window):
        windows[monitor] = window
        return reference, traffic(np.random.default_rng(1), 300, shift=250.0, start=window.start), spec

    sink = EvidentlySnapshots(tmp_path / "evidently", frames)
    for day in (3, 4):
        window = Window(T0 + day * DAY, T0 + (day + 1) * DAY)
        record = {"monitor": "flights-delay", "window": window.to_json(), "status": "breached",
                  "breached_signals": ["data_drift"]}
        assert sink.publish(record) == 1
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(tmp_path / "evidently"))
    (project,) = workspace.list_projects()
    assert project.name == "flights-delay" and len(workspace.list_runs(project.id)) == 2
    run = workspace.get_run(project.id, workspace.list_runs(project.id)[0])
    assert run.timestamp.date().isoformat() in ("2013-04-05", "2013-04-06")
    assert "breached" in run.tags
