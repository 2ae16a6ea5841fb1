// console.js: the orderflow console's page. Plain JavaScript, no build step.
//
// Every value that comes from the database or a record is put into the page
// with textContent or setAttribute, never as markup; the server's
// Content-Security-Policy allows only this script. Routes are the URL's hash:
//   #/executions?machine=&status=&q=&since=&until=&page=   #/executions/<id>
//   #/dlq?where=   #/dlq/<id>   #/parked   #/parked/<key>   #/figures
"use strict";

const $main = () => document.getElementById("main");
let config = { writable: false };
let figuresTimer = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function show(...nodes) {
  const m = $main();
  m.replaceChildren(...nodes.flat());
}

async function api(path, opts) {
  const r = await fetch(path, opts);
  let body;
  try { body = await r.json(); } catch (e) { body = { error: "not JSON (" + r.status + ")" }; }
  if (!r.ok) {
    const err = new Error((body && body.error) || ("HTTP " + r.status));
    err.status = r.status;
    err.body = body;
    throw err;
  }
  return body;
}

function errorBox(e) {
  const parts = [el("p", { class: "error" }, "Error: ", e.message)];
  if (e.body && e.body.stderr) parts.push(el("pre", {}, e.body.stderr));
  return parts;
}

function text(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function table(rows, cols, cell) {
  const head = el("tr", {}, cols.map(c => el("th", {}, typeof c === "string" ? c : c.label || c.key)));
  const body = rows.map((r, i) => el("tr", { "data-row": i },
    cols.map(c => {
      const key = c.key || c;
      const content = cell ? cell(key, r[key], r) : null;
      return el("td", { class: c.mono ? "mono" : null }, content !== null && content !== undefined ? content : text(r[key]));
    })));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
}

function badge(v) { return el("span", { class: "badge " + text(v) }, text(v)); }

function parseHash() {
  const h = location.hash.replace(/^#/, "") || "/executions";
  const [path, qs] = h.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(qs || "") };
}

function link(hash, label) { return el("a", { href: "#" + hash }, label); }

function setNav(name) {
  for (const a of document.querySelectorAll("header nav a"))
    a.classList.toggle("active", a.id === "nav-" + name);
}

// --- executions -----------------------------------------------------------------------

const MACHINES = ["", "OrderProcess", "OrderUpdate", "ReturnRefund"];
const STATUSES = ["", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED"];

// "2h", "15m", "7d" back from now, or an RFC 3339 time as it is.
function timeArg(v) {
  const m = /^(\d+)([smhdw])$/.exec(v || "");
  if (!m) return v || "";
  const s = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2]] * Number(m[1]);
  return new Date(Date.now() - s * 1000).toISOString();
}

async function executions(query) {
  setNav("executions");
  const f = {
    machine: query.get("machine") || "", status: query.get("status") || "", q: query.get("q") || "",
    since: query.get("since") || "", until: query.get("until") || "",
    page: Number(query.get("page") || 0),
  };
  const form = el("form", { class: "filters", id: "filters" },
    el("label", {}, "Machine", el("select", { name: "machine" }, MACHINES.map(m => el("option", { value: m, selected: m === f.machine }, m || "any")))),
    el("label", {}, "Status", el("select", { name: "status" }, STATUSES.map(s => el("option", { value: s, selected: s === f.status }, s || "any")))),
    el("label", {}, "Order id or correlation id", el("input", { name: "q", id: "search", value: f.q, size: 40 })),
    el("label", {}, "Since (2h, 7d or a time)", el("input", { name: "since", value: f.since, size: 14 })),
    el("label", {}, "Until", el("input", { name: "until", value: f.until, size: 14 })),
    el("button", { type: "submit", id: "search-go" }, "Show"));
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
    location.hash = "#/executions?" + p.toString();
  });
  show(el("h1", {}, "Executions"), form, el("p", {}, "Loading…"));
  const p = new URLSearchParams({ size: 25, page: f.page });
  if (f.machine) p.set("machine", f.machine);
  if (f.status) p.set("status", f.status);
  if (f.q) p.set("q", f.q);
  if (f.since) p.set("since", timeArg(f.since));
  if (f.until) p.set("until", timeArg(f.until));
  try {
    const r = await api("/api/executions?" + p.toString());
    const counts = el("p", { class: "counts", id: "counts" },
      Object.entries(r.counts).map(([k, v]) => el("span", { "data-status": k }, k + ": " + v)),
      el("span", {}, "total: " + r.total));
    const here = new URLSearchParams(query);
    const pager = el("p", { class: "pager" });
    if (f.page > 0) { here.set("page", f.page - 1); pager.appendChild(link("/executions?" + here, "← newer")); pager.appendChild(document.createTextNode(" ")); }
    pager.appendChild(document.createTextNode("page " + (f.page + 1)));
    if (r.rows.length === 25) { here.set("page", f.page + 1); pager.appendChild(document.createTextNode(" ")); pager.appendChild(link("/executions?" + here, "older →")); }
    const t = table(r.rows, [
      { key: "id", label: "execution", mono: true }, "machine", "status", { key: "current_state", label: "state" },
      { key: "order_id", label: "order", mono: true }, { key: "correlation_id", label: "correlation id", mono: true },
      { key: "started_at", label: "started" }, { key: "stopped_at", label: "stopped" },
    ], (k, v) => k === "id" ? link("/executions/" + v, v) : k === "status" ? badge(v) : null);
    t.id = "executions";
    show(el("h1", {}, "Executions"), form, counts, t, pager);
  } catch (e) {
    show(el("h1", {}, "Executions"), form, errorBox(e));
  }
}

// Layered layout: a state's column is its distance from the start in the
// table; states of one column are stacked in table order.
function layout(m) {
  const col = new Map(), order = [];
  const first = m.rows.filter(r => r.from === null).map(r => r.to);
  for (const s of first) if (!col.has(s)) { col.set(s, 0); order.push(s); }
  for (let i = 0; i < order.length; i++) {
    const s = order[i];
    for (const r of m.rows) if (r.from === s && !col.has(r.to)) { col.set(r.to, col.get(s) + 1); order.push(r.to); }
  }
  for (const s of m.states) if (!col.has(s)) { col.set(s, 0); order.push(s); }
  const rows = new Map(), pos = new Map();
  for (const s of order) {
    const c = col.get(s), r = rows.get(c) || 0;
    rows.set(c, r + 1);
    pos.set(s, { x: 60 + c * 250, y: 40 + r * 70 });
  }
  const width = 60 + (Math.max(...col.values()) + 1) * 250, height = 40 + Math.max(...rows.values()) * 70 + 30;
  return { pos, width, height };
}

function diagram(m, execution, history) {
  const { pos, width, height } = layout(m);
  const W = 130, H = 30;
  const taken = new Set(history.filter(h => h.outcome === "applied" && h.to_state)
    .map(h => (h.from_state || "") + ">" + h.to_state));
  const visited = new Set(history.filter(h => h.outcome === "applied").flatMap(h => [h.from_state, h.to_state]).filter(Boolean));
  const g = svg("svg", { class: "diagram", id: "diagram", viewBox: `0 0 ${width + 40} ${height + 40}`, width: width + 40, height: height + 40 });
  g.appendChild(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8b95a5" }))));
  const start = { x: 8, y: pos.size ? Math.min(...[...pos.values()].map(p => p.y)) : 40 };
  const seen = new Map();
  for (const r of m.rows) {
    const a = r.from === null ? start : pos.get(r.from), b = pos.get(r.to);
    if (!a || !b) continue;
    const key = (r.from || "") + ">" + r.to;
    const n = seen.get(key) || 0;
    seen.set(key, n + 1);
    const x1 = r.from === null ? a.x : a.x + W, y1 = a.y + H / 2;
    const x2 = b.x, y2 = b.y + H / 2;
    let d;
    if (r.from === r.to) d = `M ${a.x + W - 20} ${a.y} C ${a.x + W} ${a.y - 30}, ${a.x + W + 30} ${a.y}, ${a.x + W} ${a.y + 8}`;
    else if (x2 <= x1) d = `M ${a.x + W / 2} ${a.y + H} C ${a.x + W / 2} ${a.y + H + 40 + 10 * n}, ${b.x + W / 2} ${b.y + H + 40 + 10 * n}, ${b.x + W / 2} ${b.y + H}`;
    else { const mx = (x1 + x2) / 2; d = `M ${x1} ${y1} C ${mx} ${y1 + 8 * n}, ${mx} ${y2 + 8 * n}, ${x2} ${y2}`; }
    const cls = ["edge"];
    if (r.execution === execution.machine) cls.push("mine");
    if (taken.has(key)) cls.push("taken");
    const label = (r.trigger === "auto" ? "" : r.trigger + " / ") + r.step;
    const grp = svg("g", { class: cls.join(" "), "data-from": r.from || "", "data-to": r.to },
      svg("path", { d, "marker-end": "url(#arrow)" }),
      svg("title", {}, (r.from || "(none)") + " → " + r.to + ": " + label + " (" + r.execution + ")"));
    if (x2 > x1 && r.from !== r.to && r.from !== null)
      grp.appendChild(svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 5 + 10 * n, "text-anchor": "middle" }, label));
    g.appendChild(grp);
  }
  g.appendChild(svg("circle", { cx: start.x, cy: start.y + H / 2, r: 4, fill: "#1d2330" }));
  for (const s of m.states) {
    const p = pos.get(s);
    const cls = ["state"];
    if (visited.has(s)) cls.push("visited");
    if (s === execution.current_state) cls.push("current");
    g.appendChild(svg("g", { class: cls.join(" "), "data-state": s },
      svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 8 }),
      svg("text", { x: p.x + W / 2, y: p.y + H / 2 + 4, "text-anchor": "middle" }, s)));
  }
  return g;
}

async function execution(id) {
  setNav("executions");
  show(el("h1", {}, "Execution"), el("p", {}, "Loading…"));
  try {
    const r = await api("/api/executions/" + encodeURIComponent(id));
    const x = r.execution;
    const m = await api("/api/machines/" + encodeURIComponent(x.machine));
    const facts = table([x], [
      "machine", "status", { key: "current_state", label: "state" }, { key: "order_id", label: "order", mono: true },
      { key: "return_id", label: "return", mono: true }, { key: "correlation_id", label: "correlation id", mono: true },
      { key: "started_at", label: "started" }, { key: "stopped_at", label: "stopped" }, "error",
      { key: "trace_id", label: "trace", mono: true },
    ], (k, v) => k === "status" ? badge(v) : null);
    // Every row is a span of a W3C trace: its own id, and the span that caused it
    // (a step of this or another execution, or the upstream sender; none for a root).
    const hist = table(r.history, [
      "seq", "at", "step", { key: "from_state", label: "from" }, { key: "to_state", label: "to" }, "outcome",
      { key: "ce_id", label: "event id", mono: true }, "topic", "partition", "offset",
      { key: "trace_id", label: "trace", mono: true }, { key: "span_id", label: "span", mono: true },
      { key: "parent_span_id", label: "parent span", mono: true }, { key: "detail", label: "detail", mono: true },
    ], (k, v) => k === "outcome" ? badge(v) : null);
    hist.id = "history";
    const others = table(r.executions, [
      { key: "id", label: "execution", mono: true }, "machine", "status", { key: "current_state", label: "state" },
      { key: "started_at", label: "started" },
    ], (k, v) => k === "id" ? (v === x.id ? el("b", {}, v) : link("/executions/" + v, v)) : k === "status" ? badge(v) : null);
    show(el("h1", {}, x.machine + " ", el("span", { class: "mono" }, x.id)), facts,
      el("h2", {}, "State diagram (the table the workers run; current state filled, the path taken in blue)"),
      diagram(m, x, r.history), el("h2", {}, "History"), hist,
      el("h2", {}, "Executions of this order"), others,
      el("h2", {}, "Input"), el("pre", { class: "mono" }, JSON.stringify(x.input, null, 2)));
  } catch (e) {
    show(el("h1", {}, "Execution"), errorBox(e));
  }
}

// --- dead letters -------------------------------------------------------------------

function tokenField() {
  return el("label", {}, "Token ", el("input", { type: "password", id: "token", autocomplete: "off", size: 24 }));
}

function authHeaders() {
  const t = document.getElementById("token");
  const h = { "Content-Type": "application/json" };
  if (t && t.value) h.Authorization = "Bearer " + t.value;
  return h;
}

async function dlqList(query) {
  setNav("dlq");
  const where = query.get("where") || "";
  const form = el("form", { class: "filters" },
    el("label", {}, "Predicate (orderctl dlq --where: code=… topic=… worker=… since=2h order=… type=… redriven=no)",
      el("input", { name: "where", id: "where", value: where, size: 70 })),
    el("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const v = new FormData(form).get("where");
    location.hash = "#/dlq" + (v ? "?where=" + encodeURIComponent(v) : "");
  });
  show(el("h1", {}, "Dead letters"), form, el("p", {}, "Loading…"));
  try {
    const rows = await api("/api/dlq?limit=200" + (where ? "&where=" + encodeURIComponent(where) : ""));
    const t = table(rows, [
      { key: "id", label: "id" }, { key: "created_at", label: "at" }, "worker", "topic", "partition", "offset",
      { key: "ce_id", label: "ce_id", mono: true }, { key: "ce_type", label: "type" }, { key: "error_code", label: "code" },
      "reason", { key: "redrive_count", label: "redriven" },
    ], (k, v) => k === "id" ? link("/dlq/" + v, String(v)) : null);
    t.id = "dead-letters";
    const out = el("div", { id: "redrive-out" });
    const actions = [];
    if (where) {
      actions.push(el("h2", {}, "Redrive by this predicate"),
        el("p", {}, "A dry run lists what would be redriven and why; nothing is sent or recorded."),
        el("button", { id: "dry-run", on: { click: () => redrive({ where, dry_run: true }, out) } }, "Dry run"),
        config.writable ? el("span", {}, " ", tokenField(), " ",
          el("button", { id: "redrive-where", on: { click: () => confirmThen("Redrive every dead letter matching " + where + "?", () => redrive({ where }, out)) } }, "Redrive")) : null);
    }
    show(el("h1", {}, "Dead letters"), form, t, actions, out,
      el("p", {}, link("/dlq/history", "Redrive runs (who, when, predicate, count)")));
  } catch (e) {
    show(el("h1", {}, "Dead letters"), form, errorBox(e));
  }
}

function confirmThen(question, fn) {
  const box = el("div", { class: "confirm", id: "confirm" }, el("p", {}, question),
    el("button", { id: "confirm-yes", on: { click: () => { box.remove(); fn(); } } }, "Yes, do it"), " ",
    el("button", { on: { click: () => box.remove() } }, "Cancel"));
  $main().appendChild(box);
}

async function redrive(body, out) {
  out.replaceChildren(el("p", {}, "Running…"));
  try {
    const r = await api("/api/dlq/redrive", { method: "POST", headers: authHeaders(), body: JSON.stringify(body) });
    const lines = Array.isArray(r) ? r.map(x => body.dry_run
      ? "would redrive dead letter " + x.dead_letter_id + " to " + x.topic + " (ce_id " + text(x.ce_id) + "): " + text(x.why)
      : "redrove dead letter " + x.dead_letter_id + " (ce_id " + text(x.ce_id) + ") to " + x.topic + " [" + x.partition + "] at offset " + x.offset + ", run " + x.run)
      : [r.text !== undefined ? r.text : JSON.stringify(r)];
    out.replaceChildren(el("p", { class: "ok", id: "redrive-result" },
      body.dry_run ? "Dry run (nothing sent, nothing recorded):" : "Redriven:"),
      el("pre", { class: "mono" }, lines.length ? lines.join("\n") : "nothing to redrive"));
  } catch (e) {
    out.replaceChildren(...errorBox(e));
  }
}

async function dlqOne(id) {
  setNav("dlq");
  show(el("h1", {}, "Dead letter " + id), el("p", {}, "Loading…"));
  try {
    const d = await api("/api/dlq/" + encodeURIComponent(id));
    const out = el("div", { id: "redrive-out" });
    const fields = Object.entries(d).filter(([k]) => !["payload", "headers", "redrives", "key"].includes(k));
    show(el("h1", {}, "Dead letter " + id),
      el("table", { id: "dead-letter" }, el("tbody", {}, fields.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { class: "mono" }, text(v)))))),
      el("h2", {}, "Key"), el("pre", { class: "mono" }, text(d.key)),
      el("h2", {}, "Payload (the original record's value)"), el("pre", { class: "mono", id: "payload" }, text(d.payload)),
      el("h2", {}, "Headers"), el("pre", { class: "mono", id: "headers" }, JSON.stringify(d.headers, null, 2)),
      el("h2", {}, "Redrives"), d.redrives && d.redrives.length ? table(d.redrives, Object.keys(d.redrives[0])) : el("p", {}, "none"),
      el("h2", {}, "Redrive"),
      el("button", { id: "dry-run", on: { click: () => redrive({ ids: [String(id)], dry_run: true }, out) } }, "Dry run"),
      config.writable ? el("span", {}, " ", tokenField(), " ",
        el("button", { id: "redrive", on: { click: () => confirmThen("Republish dead letter " + id + " to " + text(d.topic) + "?", () => redrive({ ids: [String(id)] }, out)) } }, "Redrive"))
        : el("span", {}, " (read-only console: start it with a token to redrive)"),
      out);
  } catch (e) {
    show(el("h1", {}, "Dead letter " + id), errorBox(e));
  }
}

async function dlqHistory() {
  setNav("dlq");
  try {
    const rows = await api("/api/dlq/history");
    show(el("h1", {}, "Redrive runs"), rows.length ? table(rows, Object.keys(rows[0])) : el("p", {}, "No redrive yet."));
  } catch (e) {
    show(el("h1", {}, "Redrive runs"), errorBox(e));
  }
}

// --- parked keys ----------------------------------------------------------------------

async function parkedList() {
  setNav("parked");
  try {
    const rows = await api("/api/parked");
    const t = rows.length ? table(rows, ["worker", "topic", "key", { key: "error_code", label: "code" }, "reason", "events",
      { key: "parked_at", label: "parked" }, "attempts", { key: "next_try_at", label: "next try" }],
      (k, v) => k === "key" ? link("/parked/" + v, text(v)) : null) : el("p", { id: "no-parked" }, "No key is parked.");
    t.id = t.id || "parked";
    show(el("h1", {}, "Parked keys"),
      el("p", {}, "Events that cannot take effect yet wait here, behind their key, while their partition moves on."), t);
  } catch (e) {
    show(el("h1", {}, "Parked keys"), errorBox(e));
  }
}

async function parkedOne(key) {
  setNav("parked");
  try {
    const r = await api("/api/parked/" + encodeURIComponent(key));
    const out = el("div", { id: "release-out" });
    const release = final => confirmThen((final ? "Replay " + key + " for the last time (what still cannot take effect takes its outcome)?" : "Replay " + key + " now?"), async () => {
      try {
        const x = await api("/api/parked/release", { method: "POST", headers: authHeaders(), body: JSON.stringify({ keys: [key], final }) });
        out.replaceChildren(el("pre", { class: "ok" }, x.text !== undefined ? x.text : JSON.stringify(x)));
      } catch (e) { out.replaceChildren(...errorBox(e)); }
    });
    show(el("h1", {}, "Parked key ", el("span", { class: "mono" }, key)),
      r.keys.length ? table(r.keys, Object.keys(r.keys[0])) : el("p", {}, "(key row gone)"),
      el("h2", {}, "Events, in replay order"), r.events.length ? table(r.events, Object.keys(r.events[0])) : el("p", {}, "none"),
      config.writable ? el("p", {}, tokenField(), " ", el("button", { id: "release", on: { click: () => release(false) } }, "Release"), " ",
        el("button", { id: "release-final", on: { click: () => release(true) } }, "Release for the last time")) : el("p", {}, "(read-only console)"),
      out);
  } catch (e) {
    show(el("h1", {}, "Parked key"), errorBox(e));
  }
}

// --- figures ------------------------------------------------------------------------

function chart(title, samples, key, unit) {
  const W = 320, H = 120, pad = 28;
  const vals = samples.map(s => s[key]);
  const max = Math.max(1, ...vals);
  const t0 = samples.length ? samples[0].t : 0, t1 = samples.length ? samples[samples.length - 1].t : 1;
  const span = Math.max(1, t1 - t0);
  const pts = samples.map(s => `${(pad + (s.t - t0) / span * (W - pad - 6)).toFixed(1)},${(H - 18 - s[key] / max * (H - 34)).toFixed(1)}`).join(" ");
  const last = vals.length ? vals[vals.length - 1] : 0;
  return el("div", { class: "chart-box", "data-figure": key },
    el("h2", {}, title + ": ", el("span", { class: "value" }, String(last)), " ", unit),
    svg("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}` },
      svg("text", { x: 2, y: 12 }, String(Math.round(max * 10) / 10)),
      svg("text", { x: 2, y: H - 20 }, "0"),
      svg("line", { x1: pad, y1: H - 18, x2: W - 4, y2: H - 18, stroke: "#d1d5db" }),
      svg("polyline", { points: pts }),
      svg("text", { x: pad, y: H - 4 }, "last " + Math.round(span / 60) + " min")));
}

async function figures() {
  setNav("figures");
  const draw = async () => {
    try {
      const f = await api("/api/figures");
      const s = f.samples;
      show(el("h1", {}, "Live figures"),
        el("p", {}, "Sampled every 5 s from the workers' /metrics: ",
          f.sources.map(x => el("span", { class: x.ok ? "ok" : "error" }, x.url + (x.ok ? " ✓ " : " ✗ "))),
          f.sources.length ? null : "no source (start the console with --metrics-urls)"),
        el("div", { class: "charts", id: "charts" },
          chart("Events processed", s, "events_per_s", "/s"),
          chart("Consumer lag", s, "lag", "messages"),
          chart("Oldest unpublished outbox row", s, "oldest_outbox_s", "s"),
          chart("Dead letters", s, "dead_per_min", "/min"),
          chart("Parked keys", s, "parked", "")));
    } catch (e) {
      show(el("h1", {}, "Live figures"), errorBox(e));
    }
  };
  await draw();
  figuresTimer = setInterval(() => { if (parseHash().parts[0] === "figures") draw(); }, 5000);
}

// --- router -------------------------------------------------------------------------

async function route() {
  if (figuresTimer) { clearInterval(figuresTimer); figuresTimer = null; }
  const { parts, query } = parseHash();
  const [page, arg, more] = parts;
  if (page === "executions" && arg) return execution(arg);
  if (page === "dlq" && arg === "history") return dlqHistory();
  if (page === "dlq" && arg) return dlqOne(arg);
  if (page === "dlq") return dlqList(query);
  if (page === "parked" && arg) return parkedOne(more ? arg + "/" + more : arg);
  if (page === "parked") return parkedList();
  if (page === "figures") return figures();
  return executions(query);
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  try { config = await api("/api/config"); } catch (e) { /* read-only */ }
  document.getElementById("mode").textContent = config.writable ? "writes need the token" : "read-only";
  route();
});
