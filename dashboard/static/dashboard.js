// The operators' page: reads the list APIs (same function key as this page) and draws tables and a timeline.
// Plain DOM and plotly.js; every value from the service is set as text, never parsed as HTML.
"use strict";

const KEY = new URLSearchParams(window.location.search).get("code");
const MAX_PAGES = 20;

function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(name, value);
  }
  if (KEY) query.set("code", KEY);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function getJson(path, params) {
  const response = await fetch(url(path, params), { headers: { Accept: "application/json" } });
  if (!response.ok) {
    let detail = "";
    try { detail = (await response.json()).error || ""; } catch (err) { detail = response.statusText; }
    throw new Error(`${path}: HTTP ${response.status} ${detail}`);
  }
  return response.json();
}

async function getAll(path, params = {}) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const body = await getJson(path, { ...params, limit: 500, cursor });
    items.push(...body.items);
    if (!body.next) return { items, body };
    cursor = body.next;
  }
  return { items, body: null, truncated: true };
}

// --- small DOM helpers ---------------------------------------------------------------------------------
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function badge(text) {
  return el("span", text, `badge ${String(text).replace(/[^a-z_]/gi, "_")}`);
}

function link(text, href) {
  const a = el("a", text);
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === null || cell === undefined ? "" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function fill(tableId, rows, emptyText) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  if (!rows.length) {
    const td = el("td", emptyText, "empty");
    td.colSpan = document.querySelectorAll(`#${tableId} thead th`).length;
    const tr = document.createElement("tr");
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  for (const r of rows) body.appendChild(row(r));
}

function windowText(w) {
  if (!w || !w.start) return "";
  const start = w.start.replace("T00:00:00Z", "").replace("Z", "");
  const end = (w.end || "").replace("T00:00:00Z", "").replace("Z", "");
  return `${start} \u2192 ${end}`;
}

function num(value, digits = 3) {
  return typeof value === "number" ? value.toFixed(digits) : "\u2013";
}

function list(items) {
  const ul = el("ul", null, "reasons");
  for (const item of items) ul.appendChild(el("li", item));
  return ul;
}

function reportLink(path) {
  return path ? link("report", url(path.replace(/^\/api\//, ""))) : "";
}

// --- sections ------------------------------------------------------------------------------------------
function renderMonitors(monitors, errors) {
  const status = (m) => {
    const span = el("span");
    span.appendChild(badge(m.status));
    if (m.not_scheduled_because) span.appendChild(el("div", m.not_scheduled_because, "muted"));
    return span;
  };
  fill("monitors", monitors.map((m) => [
    m.name, status(m), m.endpoint.deployment ? `${m.endpoint.name}/${m.endpoint.deployment}` : m.endpoint.name,
    m.last_check ? windowText(m.last_check.window) : "none yet",
    m.last_check ? (m.last_check.breached_signals.length ? m.last_check.breached_signals.join(", ") : m.last_check.status) : "",
    m.open_incidents.length, m.reference_model_version || "spec reference", m.source,
  ]), "No monitors: add a spec file to the monitors folder (MLOPS_MONITORS_DIR).");
  const ul = document.getElementById("spec-errors");
  ul.replaceChildren(...errors.map((e) => el("li", `${e.file}: ${e.error}`)));
}

function evidenceText(e) {
  if (typeof e.effect === "number" && typeof e.floor === "number") return `${e.name}: ${num(e.effect)} vs floor ${num(e.floor)}`;
  if (typeof e.statistic === "number") return `${e.name}: ${num(e.statistic)}${typeof e.threshold === "number" ? ` vs ${num(e.threshold)}` : ""}`;
  return e.name;
}

function renderIncidents(incidents) {
  fill("incidents", incidents.map((i) => [
    i.monitor, (i.signals || [i.signal]).join(", "), badge(i.severity), windowText(i.opened_window), i.windows,
    list((i.evidence || []).filter((e) => e.breached && e.name !== "dataset").map(evidenceText)),
    reportLink(i.last_check_report_url),
  ]), "No open incidents.");
}

function renderRuns(runs) {
  fill("runs", runs.map((r) => [
    r.run_id, r.endpoint, r.requested_at, r.trigger.kind ? `${r.trigger.kind}${r.trigger.monitor ? ` (${r.trigger.monitor})` : ""}` : "",
    badge(r.state),
    r.gate ? list([r.gate.accepted ? "accepted" : "rejected", ...r.gate.reasons]) : list(r.outcome_reasons || []),
    (r.deployment || []).map((d) => `${d.step} ${d.deployment || ""} ${d.traffic ? JSON.stringify(d.traffic) : ""}`).join("; "),
  ]), "No retrain runs yet.");
}

function renderDeployments(endpoints) {
  const rows = [];
  for (const ep of endpoints) {
    if (ep.error) { rows.push([ep.endpoint, "", ep.error, ""]); continue; }
    if (!ep.deployments.length) rows.push([ep.endpoint, "none", "", ""]);
    for (const d of ep.deployments) rows.push([ep.endpoint, d.canary ? `${d.name} (canary)` : d.name, d.model || "", `${d.traffic}%`]);
  }
  fill("deployments", rows, "No endpoints.");
}

function renderChecks(checks) {
  fill("checks", checks.map((c) => [
    windowText(c.window), c.monitor, badge(c.status), c.rows, (c.drifted_features || []).join(", "), c.model_version || "",
    c.check_id && c.status !== "running" ? reportLink(c.report_url) : "",
  ]), "No checks yet.");
}

// --- the timeline ----------------------------------------------------------------------------------------
const RUN_MARKS = { running: "retrain started", accepted: "gate: accepted", rejected: "gate: rejected",
  canary: "canary", promoted: "promoted", rolled_back: "rolled back", failed: "retrain failed" };

// How far a feature's effect is past what the verdict needs: its floor and the largest effect a window without
// drift shows (the calibrated null's 99th percentile). 1 and above: large and unusual enough to count as drift.
function ratio(f) {
  if (typeof f.effect === "number" && typeof f.floor === "number") {
    const bar = Math.max(f.floor, typeof f.null_q99 === "number" ? f.null_q99 : 0);
    if (bar > 0) return f.effect / bar;
  }
  if (typeof f.statistic === "number" && typeof f.threshold === "number" && f.threshold > 0) return f.statistic / f.threshold;
  return null;
}

function middle(point) {
  const start = Date.parse(point.start);
  return new Date(start + (Date.parse(point.end) - start) / 2).toISOString();
}

function timelineTraces(data) {
  const x = data.points.map(middle);  // a window's values sit in its middle; incidents span whole windows
  const features = data.features;
  const z = features.map((name) => data.points.map((p) => (p.features[name] ? ratio(p.features[name]) : null)));
  const text = features.map((name) => data.points.map((p) => {
    const f = p.features[name];
    if (!f) return "";
    return `effect ${num(f.effect)}, floor ${num(f.floor)}, no-drift q99 ${num(f.null_q99)}<br>p ${num(f.p_value, 4)}${f.drifted ? "<br>drifted" : ""}`;
  }));
  const traces = [{
    type: "heatmap", x, y: features, z, text, hovertemplate: "%{y} %{x}<br>%{text}<extra></extra>", zmin: 0, zmax: 3,
    colorscale: [[0, "#f6f8fa"], [0.33, "#fff1b8"], [0.66, "#fb8f44"], [1, "#cf222e"]],
    colorbar: { title: { text: "effect / bar" }, len: 0.3, y: 0.85 }, xaxis: "x", yaxis: "y",
  }, {
    type: "scatter", mode: "lines+markers", name: "drift share", x, y: data.points.map((p) => p.drift_share),
    marker: { color: data.points.map((p) => (p.status === "breached" ? "#cf222e" : p.status === "ok" ? "#1a7f37" : "#8c959f")), size: 6 },
    text: data.points.map((p) => `${p.status}${p.breached_signals.length ? `: ${p.breached_signals.join(", ")}` : ""}`),
    hovertemplate: "%{x}<br>drift share %{y:.2f}<br>%{text}<extra></extra>", xaxis: "x", yaxis: "y2",
  }];
  const metrics = new Set();
  for (const p of data.points) for (const name of Object.keys(p.performance)) metrics.add(name);
  for (const name of metrics) {
    traces.push({
      type: "scatter", mode: "lines+markers", name: name.replace(/^performance\//, "").replace(/^estimated_performance\/(.*)$/, "$1 (estimated)"), x,
      y: data.points.map((p) => (p.performance[name] ? p.performance[name].value : null)), connectgaps: false,
      xaxis: "x", yaxis: "y3",
    });
  }
  return [...traces, ...incidentTraces(data)];
}

// Incidents as bars on their own row per signal, from the window that opened them to the one that resolved them.
function incidentTraces(data) {
  const lastEnd = data.points.length ? data.points[data.points.length - 1].end : null;
  const bySeverity = {};
  const bar = (row, severity, from, to, what) => {
    const t = bySeverity[severity] || (bySeverity[severity] = { x: [], y: [], text: [] });
    t.x.push(from, to, null);
    t.y.push(row, row, null);
    t.text.push(what, what, null);
  };
  for (const i of data.incidents) {
    const start = i.opened_window && i.opened_window.start;
    const end = (i.resolved_window && i.resolved_window.end) || (i.last_window && i.last_window.end) || lastEnd;
    if (!start || !end) continue;
    const state = `${i.status}${i.resolved_window ? `, resolved ${windowText(i.resolved_window)}` : ""}`;
    const facets = Object.values(i.facets || {});
    if (!facets.length) {  // one incident per signal: one bar
      const row = i.signal || "incident";
      bar(row, i.severity || "warning", start, end, `${row} (${i.severity}) ${state}<br>opened ${windowText(i.opened_window)}`);
      continue;
    }
    for (const f of facets) {  // one incident per episode: a bar per signal that took part, over its own windows
      const from = (f.first_window && f.first_window.start) || start;
      const to = i.resolved_window ? end : ((f.last_window && f.last_window.end) || end);
      bar(f.signal, f.severity || i.severity || "warning", from, to,
        `${f.signal} (${f.severity}) in incident ${String(i.incident_id).slice(0, 8)}, ${state}<br>${f.windows || "?"} window(s) from ${windowText(f.first_window)}`);
    }
  }
  const colors = { critical: "#cf222e", warning: "#bf8700", info: "#57606a" };
  return Object.entries(bySeverity).map(([severity, t]) => ({
    type: "scatter", mode: "lines", name: `${severity} incidents`, x: t.x, y: t.y, text: t.text,
    hovertemplate: "%{text}<extra></extra>", line: { width: 9, color: colors[severity] || "#57606a" },
    connectgaps: false, xaxis: "x", yaxis: "y4",
  }));
}

function timelineShapes(data, runs) {
  const shapes = [];
  const annotations = [];
  for (const r of runs) {
    for (const h of r.history || []) {
      const label = RUN_MARKS[h.state];
      if (!label) continue;
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: h.at, x1: h.at, y0: 0, y1: 1,
        line: { width: 1, dash: "dot", color: h.state === "promoted" ? "#1a7f37" : h.state === "rolled_back" || h.state === "rejected" ? "#cf222e" : "#57606a" } });
      annotations.push({ x: h.at, xref: "x", y: 1, yref: "paper", text: label, showarrow: false, textangle: -90,
        xanchor: "right", yanchor: "top", font: { size: 9, color: "#57606a" } });
    }
  }
  return { shapes, annotations };
}

async function renderTimeline(monitor, endpointRuns) {
  const node = document.getElementById("timeline");
  if (!monitor) { node.replaceChildren(el("p", "No monitor to show.", "muted")); return; }
  const data = await getJson(`monitors/${encodeURIComponent(monitor)}/timeline`);
  if (!data.points.length) { node.replaceChildren(el("p", `No checks of ${monitor} yet.`, "muted")); return; }
  const { shapes, annotations } = timelineShapes(data, endpointRuns(data.endpoint));
  const layout = {
    height: 760, margin: { l: 130, r: 30, t: 30, b: 40 }, showlegend: true, legend: { orientation: "h", y: -0.06 },
    xaxis: { type: "date", anchor: "y3" },
    yaxis: { domain: [0.6, 1], automargin: true, title: { text: "features" } },
    yaxis2: { domain: [0.4, 0.57], title: { text: "drift share" }, rangemode: "tozero" },
    yaxis3: { domain: [0, 0.2], title: { text: "performance" } },
    yaxis4: { domain: [0.23, 0.37], type: "category", automargin: true, title: { text: "incidents" } },
    shapes, annotations,
  };
  node.replaceChildren();
  await Plotly.newPlot(node, timelineTraces(data), layout, { displaylogo: false, responsive: true });
}

// --- the page --------------------------------------------------------------------------------------------
async function main() {
  const problem = document.getElementById("problem");
  try {
    const [monitors, incidents, runs, deployments, checks] = await Promise.all([
      getAll("monitors"), getAll("incidents", { state: "open" }), getAll("runs"), getJson("deployments"),
      getJson("checks", { limit: 30 }),
    ]);
    renderMonitors(monitors.items, monitors.body ? monitors.body.errors || [] : []);
    renderIncidents(incidents.items);
    renderRuns(runs.items);
    renderDeployments(deployments.items);
    renderChecks(checks.items);
    const select = document.getElementById("monitor-select");
    select.replaceChildren(...monitors.items.map((m) => { const o = el("option", m.name); o.value = m.name; return o; }));
    const endpointRuns = (endpoint) => runs.items.filter((r) => r.endpoint === endpoint);
    select.addEventListener("change", () => renderTimeline(select.value, endpointRuns).catch(show));
    await renderTimeline(select.value, endpointRuns);
    document.getElementById("as-of").textContent =
      `${monitors.items.length} monitor(s), ${incidents.items.length} open incident(s), ${runs.items.length} run(s); loaded ${new Date().toISOString()}`;
    document.body.dataset.ready = "true";
  } catch (err) {
    show(err);
  }

  function show(err) {
    problem.hidden = false;
    problem.textContent = `Could not load: ${err.message}`;
    document.body.dataset.ready = "error";
    console.error(err);
  }
}

document.addEventListener("DOMContentLoaded", main);
