"""The run's history, gathered from the state store (check records) and the audit feed (events)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.records import CHECK
from core.types import parse_time

MARKERS = {
    "mlops.incident.changed.v1": ("incident", "tab:red", "v"),
    "mlops.retrain.started.v1": ("retrain", "tab:blue", "o"),
    "mlops.challenger.rejected.v1": ("rejected", "tab:gray", "x"),
    "mlops.canary.started.v1": ("canary", "tab:orange", "^"),
    "mlops.model.promoted.v1": ("promoted", "tab:green", "*"),
    "mlops.model.rolled_back.v1": ("rolled back", "tab:purple", "X"),
}


@dataclass
class Timeline:
    monitor: str
    checks: list[dict[str, Any]]
    events: list[Any]

    def most_drifted(self) -> dict[str, str] | None:
        """The window whose features exceeded their thresholds the most (sum of statistic/threshold)."""
        scored = [(_excess(c), c["window"]) for c in self.checks if c.get("summary", {}).get("features")]
        return max(scored, key=lambda s: s[0])[1] if scored else None

    def entries(self) -> list[tuple[str, str, str]]:
        out = []
        for e in self.events:
            if e.type in MARKERS or e.type == "mlops.challenger.accepted.v1":
                out.append((e.time, e.type.split(".", 1)[1].rsplit(".", 1)[0], _describe(e)))
        return out

    def plot(self, path: Path, strategies: dict[str, Any], metric: str = "auc") -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(3, 1, figsize=(13, 10), sharex=False,
                                 gridspec_kw={"height_ratios": [3, 1.4, 2]})
        self._heatmap(fig, axes[0])
        self._events(axes[1])
        _strategies(axes[2], strategies, metric)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def _heatmap(self, fig: Any, ax: Any) -> None:
        import numpy as np

        checks = [c for c in self.checks if c.get("summary", {}).get("features")]
        names = [f["name"] for f in checks[0]["summary"]["features"]] if checks else []
        grid = np.full((len(names), len(checks)), np.nan)
        for j, check in enumerate(checks):
            for f in check["summary"]["features"]:
                ratio = _ratio(f)
                if f["name"] in names and ratio is not None:
                    grid[names.index(f["name"]), j] = ratio
        image = ax.imshow(np.clip(grid, 0, 4), aspect="auto", cmap="magma_r", interpolation="nearest",
                          vmin=0, vmax=4)
        ax.set_yticks(range(len(names)), names)
        ticks = list(range(0, len(checks), max(1, len(checks) // 10)))
        ax.set_xticks(ticks, [checks[i]["window"]["start"][:10] for i in ticks])
        ax.set_title("per-feature drift (effect / floor, daily windows; >1 means over the floor)")
        fig.colorbar(image, ax=ax, fraction=0.02)

    def _events(self, ax: Any) -> None:
        import matplotlib.dates as mdates

        version_times, versions = _production_versions(self.events)
        if version_times:
            ax.step(version_times, versions, where="post", color="black", label="model version in production")
        for kind, (label, color, marker) in MARKERS.items():
            times = [parse_time(e.time) for e in self.events if e.type == kind]
            if times:
                ax.scatter(times, [0.5] * len(times), color=color, marker=marker, s=60, label=label, zorder=3)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b"))
        ax.set_ylabel("version")
        ax.legend(loc="upper left", fontsize=8, ncol=4)
        ax.set_title("incidents, retrains, gate decisions and deployments")


def collect(box: Any, events: list[Any]) -> Timeline:
    checks = sorted((dict(d.data) for _, d in box.store.list(CHECK)), key=lambda c: c["window"]["start"])
    monitor = checks[0]["monitor"] if checks else ""
    return Timeline(monitor, checks, sorted(events, key=lambda e: e.time))


def _excess(check: dict[str, Any]) -> float:
    return sum(r for f in check["summary"]["features"] if (r := _ratio(f)) is not None)


def _ratio(feature: dict[str, Any]) -> float | None:
    """The deciding number against its bar: effect / floor (calibrated), statistic / threshold (evidently)."""
    calibrated = feature.get("calibrated") or {}
    if calibrated.get("effect") is not None and calibrated.get("floor"):
        return calibrated["effect"] / calibrated["floor"]
    evidently = feature.get("evidently") or {}
    if evidently.get("statistic") is not None and evidently.get("threshold"):
        return evidently["statistic"] / evidently["threshold"]
    return None


def _describe(event: Any) -> str:
    d = event.data
    if event.type == "mlops.incident.changed.v1":
        return f"{d['signal']} incident {d['status']} ({d.get('severity', '')})"
    candidate = d.get("candidate")
    model = f"{candidate['name']}:{candidate['version']}" if isinstance(candidate, dict) else ""
    gate = d.get("gate") or {}
    numbers = ", ".join(f"{k} {v:.3f}" for k, v in gate.items() if isinstance(v, float))
    return " ".join(x for x in (model, numbers, str(d.get("traffic") or ""), d.get("reason") or "") if x)


def _production_versions(events: list[Any]) -> tuple[list[Any], list[int]]:
    times, versions = [], []
    for e in events:
        if e.type == "mlops.model.promoted.v1":
            times.append(parse_time(e.time))
            versions.append(int(e.data["candidate"]["version"]))
    if times:
        times.insert(0, times[0].replace(day=1, hour=0))
        versions.insert(0, 1)
    return times, versions


def _strategies(ax: Any, strategies: dict[str, Any], metric: str) -> None:
    for name, style in (("never", ":"), ("scheduled", "--"), ("managed", "-")):
        if name not in strategies:
            continue
        monthly = strategies[name]["monthly_metric"]
        months = sorted(monthly)
        ax.plot(months, [monthly[m] for m in months], style, marker="o",
                label=f"{name} ({strategies[name]['retrains']} retrains)")
    ax.set_ylabel(f"monthly {metric}")
    ax.legend(loc="lower left")
    ax.set_title("three strategies on the same traffic")
