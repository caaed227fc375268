// The pushgrid console page: logs in, then polls the console's JSON and draws it.
// Plain DOM and SVG: no framework, no build. Text from the grid goes in as textContent only.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const W = 480, H = 200, LEFT = 44, RIGHT = 10, TOP = 18, BOTTOM = 22;
const RATE_SERIES = ["accepted", "deliveries", "receipts"];
const timers = [];

const $ = (id) => document.getElementById(id);

class LoggedOut extends Error {}

async function api(path) {
  const answer = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  const body = await answer.json().catch(() => ({}));
  if (answer.status === 401) throw new LoggedOut(body.error || "log in first");
  if (!answer.ok) throw new Error(body.error || `${path}: HTTP ${answer.status}`);
  return body;
}

function text(id, value) {
  $(id).textContent = value === undefined || value === null || value === "" ? "-" : String(value);
}

function row(tbody, cells, attrs) {
  const tr = document.createElement("tr");
  for (const [name, value] of Object.entries(attrs || {})) tr.setAttribute(name, value);
  for (const cell of cells) {
    const td = document.createElement("td");
    const [value, cls] = Array.isArray(cell) ? cell : [cell, ""];
    td.textContent = value === undefined || value === null || value === "" ? "-" : String(value);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
}

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "-";
}

// ------------------------------------------------------------------ login

function showLogin(message) {
  for (const t of timers.splice(0)) clearInterval(t);
  $("main").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-password").value = "";
  $("login-password").focus();
}

function showMain(user) {
  $("login").hidden = true;
  $("main").hidden = false;
  $("who").hidden = false;
  $("user").textContent = user;
  const every = (ms, fn) => { fn(); timers.push(setInterval(fn, ms)); };
  every(2000, guarded(refreshCharts));
  every(5000, guarded(refreshGrid));
  every(5000, guarded(refreshUpgrade));
}

function guarded(fn) {
  return async () => {
    try {
      await fn();
    } catch (err) {
      if (err instanceof LoggedOut) showLogin(err.message);
      else console.warn(err);
    }
  };
}

async function login(event) {
  event.preventDefault();
  const user = $("login-user").value, password = $("login-password").value;
  $("login-error").textContent = "";
  const answer = await fetch("/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user, password }),
  });
  const body = await answer.json().catch(() => ({}));
  $("login-password").value = "";
  if (answer.ok) showMain(body.user);
  else $("login-error").textContent = body.error || `login failed (HTTP ${answer.status})`;
}

async function logout() {
  await fetch("/logout", { method: "POST", credentials: "same-origin" });
  showLogin("logged out");
}

// ------------------------------------------------------------------ the grid

async function refreshGrid() {
  const g = await api("/api/grid");
  text("grid-summary", `${g.active} of ${g.servers.length} servers active`);
  const regs = $("registries");
  regs.replaceChildren();
  for (const r of g.registries) {
    const li = document.createElement("li");
    li.textContent = `${r.name} ${r.up ? "up" : "DOWN"}`;
    li.className = r.up ? "up" : "down";
    regs.appendChild(li);
  }
  const nodes = $("nodes");
  nodes.replaceChildren();
  for (const n of g.nodes) {
    const i = n.info || {};
    row(nodes, [n.name, [n.up ? "up" : "DOWN", n.up ? "up" : "down"], i.hostname, i.os, i.processors], { "data-node": n.name });
  }
  const groups = $("groups");
  groups.replaceChildren();
  for (const grp of g.replica_groups) row(groups, [grp.id, grp.policy, grp.objects.join(", ")]);
  const servers = $("servers");
  servers.replaceChildren();
  for (const s of g.servers) {
    const state = s.state + (s.enabled ? "" : " (disabled)");
    row(
      servers,
      [s.id, s.node, [state, `state-${s.state}`], s.pid || "", [s.release, "mono"], s.replica_groups.join(", ")],
      { "data-server": s.id, "data-state": s.state },
    );
  }
}

// ------------------------------------------------------------------ charts

function svgEl(name, attrs, parent) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function short(value) {
  if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
  if (value >= 1e3) return (value / 1e3).toFixed(1) + "k";
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(2)));
}

// series: [{name, points: [[x, y], ...]}]; x from xMin to xMax, labelled by xLabels [[x, text]].
function lineChart(svg, series, xMin, xMax, xLabels) {
  svg.replaceChildren();
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const yMax = niceMax(Math.max(0, ...ys));
  const x = (v) => LEFT + ((v - xMin) / Math.max(1e-9, xMax - xMin)) * (W - LEFT - RIGHT);
  const y = (v) => H - BOTTOM - (v / yMax) * (H - TOP - BOTTOM);
  for (const f of [0, 0.5, 1]) {
    svgEl("line", { x1: LEFT, x2: W - RIGHT, y1: y(f * yMax), y2: y(f * yMax), class: f ? "gridline" : "axis" }, svg);
    const label = svgEl("text", { x: LEFT - 4, y: y(f * yMax) + 3, "text-anchor": "end" }, svg);
    label.textContent = short(f * yMax);
  }
  svgEl("line", { x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM, class: "axis" }, svg);
  for (const [at, label] of xLabels) {
    const t = svgEl("text", { x: x(at), y: H - 6, "text-anchor": "middle" }, svg);
    t.textContent = label;
  }
  let legendX = LEFT + 4;
  for (const s of series) {
    const values = s.points.map((p) => p[1]);
    const attrs = {
      class: `line s-${s.name}`,
      points: s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "),
      "data-series": s.name,
      "data-count": values.length,
      "data-last": values.length ? values[values.length - 1] : "",
      "data-max": values.length ? Math.max(...values) : "",
    };
    svgEl("polyline", attrs, svg);
    const last = s.points[s.points.length - 1];
    if (last) svgEl("circle", { cx: x(last[0]), cy: y(last[1]), r: 2.5, class: `dot f-${s.name}` }, svg);
    if (series.length > 1 || s.legend) {
      svgEl("rect", { x: legendX, y: 5, width: 8, height: 8, class: `dot f-${s.name}` }, svg);
      const t = svgEl("text", { x: legendX + 11, y: 12 }, svg);
      t.textContent = s.legend || s.name;
      legendX += 14 + 6 * (s.legend || s.name).length + 10;
    }
  }
  svg.dataset.max = String(Math.max(0, ...ys));
}

async function refreshCharts() {
  const c = await api("/api/charts");
  // the window, or what of it has samples yet (a minute at least)
  const now = c.points.length ? c.points[c.points.length - 1].t : Date.now();
  const first = c.points.length ? c.points[0].t : now;
  const from = Math.max(now - c.window * 1000, Math.min(first, now - 60000));
  const ago = (ms) => (ms >= 120000 ? `-${Math.round(ms / 60000)}m` : `-${Math.round(ms / 1000)}s`);
  const labels = [[from, ago(now - from)], [(from + now) / 2, ago((now - from) / 2)], [now, "now"]];
  const pts = (name) => c.points.filter((p) => p[name] !== null && p[name] !== undefined).map((p) => [p.t, p[name]]);
  lineChart($("chart-connections"), [{ name: "connections", points: pts("connections") }], from, now, labels);
  lineChart($("chart-rates"), RATE_SERIES.map((name) => ({ name, points: pts(name) })), from, now, labels);
  const last = c.points[c.points.length - 1];
  text("now-connections", last ? `now ${short(last.connections)}` : "");
  text("now-rates", last ? RATE_SERIES.map((n) => `${n} ${short(last[n] || 0)}`).join(", ") : "");
  $("live-note").textContent = c.points.length
    ? "accepted: pushes Push accepted; deliveries: message frames STC wrote to devices; receipts: devices' acks"
    : "no samples yet: the console reads every server's metrics once an operator has logged in " +
      "(none while the grid runs with metrics off)";
}

// ------------------------------------------------------------------ a push

function offsetLabel(seconds) {
  if (seconds < 10) return `+${Number(seconds.toFixed(1))}s`;
  if (seconds < 120) return `+${Math.round(seconds)}s`;
  if (seconds < 7200) return `+${Math.round(seconds / 60)}m`;
  return `+${Math.round(seconds / 3600)}h`;
}

async function lookup(event) {
  event.preventDefault();
  const id = $("message-id").value.trim();
  $("message-error").textContent = "";
  try {
    const m = await api(`/api/message?id=${encodeURIComponent(id)}`);
    showMessage(m);
  } catch (err) {
    if (err instanceof LoggedOut) return showLogin(err.message);
    $("message").hidden = true;
    $("message-error").textContent = err.message;
  }
}

function showMessage(m) {
  $("message").hidden = false;
  $("message").dataset.msgId = m.msg_id;
  text("message-msg-id", m.msg_id);
  text("message-state", m.state);
  text("message-app", m.app);
  text("message-kind", m.kind);
  const a = m.audience;
  const who = a.everyone ? "everyone" : a.parts.map((p) => `${p.count} ${p.kind}`).join(", ");
  text("message-audience", who + (a.platforms.length ? ` (${a.platforms.join(", ")})` : ""));
  text("message-created", when(m.created_at));
  text("message-send", when(m.send_at));
  text("message-expires", when(m.expires_at));
  text("report-targets", m.report.targets);
  text("report-sent-online", m.report.sent_online);
  text("report-stored-offline", m.report.stored_offline);
  text("report-received", m.report.received);
  text("report-error", m.report.error);
  const points = [[0, 0]];
  for (const p of m.curve) {
    points.push([p.offset, points[points.length - 1][1]]);
    points.push([p.offset + p.width, p.total]);
  }
  const end = Math.max(5, points[points.length - 1][0]);
  points.push([end, points[points.length - 1][1]]);  // flat to the chart's end: nobody more yet
  const labels = [[0, "+0s"], [end / 2, offsetLabel(end / 2)], [end, offsetLabel(end)]];
  lineChart($("chart-curve"), [{ name: "curve", legend: "devices reached", points }], 0, end, labels);
  $("chart-curve").dataset.points = String(m.curve.length);
}

// ------------------------------------------------------------------ releases and upgrades

async function refreshUpgrade() {
  const u = await api("/api/upgrade");
  $("upgrade-summary").textContent = u.summary;
  $("upgrade-summary").dataset.inProgress = u.in_progress ? "1" : "0";
  const r = u.record;
  $("upgrade-record").textContent = r
    ? `last rollout: ${r.previous} -> ${r.target}, ${r.phase}` + (r.note ? ` (${r.note})` : "") +
      `; started ${when(r.started_at)}, last step ${when(r.updated_at)}`
    : u.record_error || "no rollout recorded";
  const releases = $("upgrade-releases");
  releases.replaceChildren();
  for (const rel of u.releases) {
    const li = document.createElement("li");
    li.textContent = `${rel.release}: ${rel.servers} servers` + (rel.release === u.target ? " (target)" : "");
    releases.appendChild(li);
  }
  const tbody = $("upgrade-servers");
  tbody.replaceChildren();
  for (const s of u.servers) {
    row(
      tbody,
      [s.id, s.node, [s.state, `state-${s.state}`], [s.release, "mono"], [s.step, s.step ? `step-${s.step}` : ""]],
      { "data-server": s.id, "data-release": s.release },
    );
  }
}

// ------------------------------------------------------------------ start

$("login-form").addEventListener("submit", (e) => login(e).catch((err) => { $("login-error").textContent = err.message; }));
$("logout").addEventListener("click", () => logout());
$("message-form").addEventListener("submit", lookup);
api("/api/session").then((s) => showMain(s.user), (err) => showLogin(err instanceof LoggedOut ? "" : err.message));
