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

    def interactive(self, strategies: dict[str, Any], metric: str = "auc") -> str:
        """The same story as the PNG, zoomable (plotly, bundled with evidently): per-feature effect over its
        bar by day, incidents as spans, and each strategy's monthly metric. An HTML fragment, plotly.js inline."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        checks = [c for c in self.checks if c.get("summary", {}).get("features")]
        names = [f["name"] for f in checks[0]["summary"]["features"]] if checks else []
        days = [c["window"]["start"][:10] for c in checks]
        grid = [[next((_ratio(f) for f in c["summary"]["features"] if f["name"] == n), None) for c in checks]
                for n in names]
        fig = make_subplots(rows=2, cols=1, shared_xaxes=False, row_heights=[0.6, 0.4], vertical_spacing=0.1,
                            subplot_titles=("effect / floor per feature and day (> 1: over the floor); "
                                            "shaded: incidents", f"monthly {metric} of the three strategies"))
        fig.add_trace(go.Heatmap(z=grid, x=days, y=names, zmin=0, zmax=4, colorscale="Magma", reversescale=True,
                                 hovertemplate="%{y} %{x}: %{z:.2f}<extra></extra>"), row=1, col=1)
        for start, stop in _incident_spans(self.events):
            fig.add_vrect(x0=start.date().isoformat(), x1=stop.date().isoformat(), fillcolor="red", opacity=0.12,
                          line_width=0, row=1, col=1)
        for name in ("never", "scheduled", "managed"):
            if name in strategies:
                monthly = strategies[name]["monthly_metric"]
                fig.add_trace(go.Scatter(x=sorted(monthly), y=[monthly[m] for m in sorted(monthly)],
                                         mode="lines+markers", name=f"{name} ({strategies[name]['retrains']} "
                                                                    "retrains)"), row=2, col=1)
        fig.update_layout(height=760, margin={"l": 60, "r": 20, "t": 40, "b": 30})
        return fig.to_html(full_html=False, include_plotlyjs=True)

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
        """One row per kind of event (markers never sit on each other); incidents as spans on their row;
        the model version in production on the right-hand axis."""
        import matplotlib.dates as mdates

        rows = list(MARKERS)
        for row, kind in enumerate(rows):
            label, color, marker = MARKERS[kind]
            if kind == "mlops.incident.changed.v1":
                for start, stop in _incident_spans(self.events):
                    ax.plot([start, stop], [row, row], color=color, linewidth=6, solid_capstyle="butt")
                continue
            times = [parse_time(e.time) for e in self.events if e.type == kind]
            ax.scatter(times, [row] * len(times), color=color, marker=marker, s=50, zorder=3)
        ax.set_yticks(range(len(rows)), [MARKERS[k][0] for k in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        version_times, versions = _production_versions(self.events)
        if version_times:
            twin = ax.twinx()
            twin.step(version_times, versions, where="post", color="black", alpha=0.5)
            twin.set_ylabel("model version in production")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b"))
        ax.set_title("incidents (open spans), retrains, gate decisions and deployments")


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
    """A readable sentence with the numbers: the message a person was sent, or what the step did."""
    from monitors.messages import message_for

    d = event.data
    message = message_for(event)
    if message is not None:
        return f"{message['title']}. {message['text']}".replace("\n", " ")
    if event.type == "mlops.incident.changed.v1":
        return (f"incident updated on {d.get('monitor')}: {', '.join(d.get('signals') or [d.get('signal')])} "
                f"({d.get('severity')}). " + " ".join(d.get("highlights") or []))
    candidate = d.get("candidate") or {}
    model = f"{candidate.get('name')}:{candidate.get('version')}" if isinstance(candidate, dict) else str(candidate)
    if event.type == "mlops.challenger.accepted.v1":
        gate = d.get("gate") or {}
        numbers = gate.get("numbers") or {}
        return (f"challenger {model} accepted: {'; '.join(gate.get('reasons') or [])} (challenger "
                f"{_n(numbers.get('challenger'))}, champion {_n(numbers.get('champion'))} on "
                f"{numbers.get('holdout_rows', '?')} recent labelled rows)")
    if event.type == "mlops.canary.started.v1":
        traffic = ", ".join(f"{k} {v}%" for k, v in (d.get("traffic") or {}).items())
        return f"canary {model} took its share of traffic ({traffic}) until {d.get('bake_until', '?')}"
    return event.type


def _n(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "?"


def _incident_spans(events: list[Any]) -> list[tuple[Any, Any]]:
    """(opened, resolved) times of each incident from its events; one still open runs to the last event."""
    opened: dict[str, Any] = {}
    spans = []
    for e in events:
        if e.type != "mlops.incident.changed.v1":
            continue
        if e.data.get("status") == "opened":
            opened[e.data["incident_id"]] = parse_time(e.time)
        elif e.data.get("status") == "resolved" and e.data["incident_id"] in opened:
            spans.append((opened.pop(e.data["incident_id"]), parse_time(e.time)))
    last = parse_time(events[-1].time) if events else None
    return spans + [(start, last) for start in opened.values()]


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
