// The dashboard page: a snapshot, then updates over Server-Sent Events (board.py applies the
// very same updates on the server). Text from events is only ever set as textContent.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                 "#17becf", "#bcbd22", "#7f7f7f"];
const MAX_SERIES = 10;
const MAX_SAMPLES = 500;
const BANNERS = 3;  // alerts shown in full; more are listed in one line (a storm stays readable)
let state = {samples: [], status: {}, active: [], alerts: [], errors: [], thumbs: {}};
let statusAt = 0;

function el(tag, attrs = {}, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function apply(u) {
  if (u.type === "sample") {
    const i = state.samples.findIndex(s => s.sample_id === u.sample.sample_id);
    if (i >= 0) state.samples[i] = u.sample; else state.samples.push(u.sample);
    if (state.samples.length > MAX_SAMPLES) state.samples.shift();
  } else if (u.type === "status") {
    state.status = u.status; statusAt = Date.now();
  } else if (u.type === "alert") {
    if (state.alerts.some(a => a.key === u.alert.key)) return;
    const rule = a => a.label + "|" + a.metric;
    state.active = state.active.filter(a => rule(a) !== rule(u.alert));
    if (u.alert.state === "fired") state.active.push(u.alert);
    state.alerts.unshift(u.alert);
  } else if (u.type === "error") {
    state.errors.unshift(u.error); state.errors.length = Math.min(state.errors.length, 10);
  } else if (u.type === "thumbs") {
    state.thumbs = u.thumbs;
  }
}

function when(s) { const t = Date.parse(s.t); return isNaN(t) ? null : t; }

function lineChart(box, series, yLabel) {
  // series: [{name, colour, points: [[t, y], ...]}]
  box.replaceChildren();
  const W = box.clientWidth || 800, H = box.classList.contains("small") ? 140 : 260;
  const m = {l: 52, r: 12, t: 10, b: 26};
  const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": yLabel});
  const all = series.flatMap(s => s.points);
  if (!all.length) { svg.appendChild(el("svg:text", {x: m.l, y: H / 2}, "waiting for samples…")); box.appendChild(svg); return; }
  let [t0, t1] = [Math.min(...all.map(p => p[0])), Math.max(...all.map(p => p[0]))];
  if (t0 === t1) { t0 -= 60e3; t1 += 60e3; }
  const y1 = Math.max(...all.map(p => p[1]), 1e-9) * 1.1;
  const x = t => m.l + (t - t0) / (t1 - t0) * (W - m.l - m.r);
  const y = v => H - m.b - v / y1 * (H - m.t - m.b);
  for (let i = 0; i <= 4; i++) {
    const v = y1 * i / 4;
    svg.appendChild(el("svg:line", {class: "grid", x1: m.l, x2: W - m.r, y1: y(v), y2: y(v)}));
    svg.appendChild(el("svg:text", {x: m.l - 4, y: y(v) + 4, "text-anchor": "end"}, v >= 100 ? v.toFixed(0) : v.toPrecision(2)));
  }
  svg.appendChild(el("svg:line", {class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b}));
  for (const [t, anchor] of [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]]) {
    svg.appendChild(el("svg:text", {x: x(t), y: H - 8, "text-anchor": anchor},
                       new Date(t).toISOString().slice(5, 16).replace("T", " ")));
  }
  for (const s of series) {
    const pts = s.points.slice().sort((a, b) => a[0] - b[0]);
    const d = pts.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    const path = el("svg:path", {class: "series", d, stroke: s.colour, "data-label": s.name});
    path.appendChild(el("svg:title", {}, s.name));
    svg.appendChild(path);
    for (const p of pts) svg.appendChild(el("svg:circle", {cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: s.colour}));
  }
  box.appendChild(svg);
}

function renderPlot() {
  const withVolume = state.samples.some(s => s.per_ml);
  document.getElementById("plot-unit").textContent = withVolume ? "(particles/mL per sample)" : "(particles per sample: no analysed volume)";
  const peak = {};
  for (const s of state.samples) {
    const values = (withVolume ? s.per_ml : s.counts) || {};
    for (const [k, v] of Object.entries(values)) peak[k] = Math.max(peak[k] || 0, v);
  }
  const names = Object.keys(peak).sort((a, b) => peak[b] - peak[a]).slice(0, MAX_SERIES);
  const series = names.map((name, i) => ({
    name, colour: COLOURS[i % COLOURS.length],
    points: state.samples.filter(s => when(s) !== null && (withVolume ? s.per_ml : s.counts))
      .map(s => [when(s), ((withVolume ? s.per_ml : s.counts)[name]) || 0])}));
  lineChart(document.getElementById("plot"), series, "concentration per class");
  const legend = document.getElementById("legend");
  legend.replaceChildren(...series.map(s => { const e = el("span", {}, s.name); e.style.setProperty("--c", s.colour); return e; }));
  const rate = state.samples.filter(s => when(s) !== null && s.classified > 0).map(s => [when(s), 100 * s.unknown / s.classified]);
  lineChart(document.getElementById("unknown-plot"), [{name: "unknown %", colour: "#7f7f7f", points: rate}], "unknown rate (%)");
  document.getElementById("unknown-now").textContent = rate.length ? `(latest ${rate[rate.length - 1][1].toFixed(1)} %)` : "";
}

function renderHealth() {
  const st = state.status, dl = document.getElementById("health");
  const drops = Object.values(st.drops || {}).reduce((a, b) => a + b, 0);
  const age = statusAt ? (Date.now() - statusAt) / 1000 : null;
  const rows = [
    ["state", st.state || "no status yet", !st.state || (age !== null && age > 10)],
    ["last status", age === null ? "–" : `${age.toFixed(0)} s ago`, age !== null && age > 10],
    ["engine", st.engine || "–"],
    ["backlog", st.backlog_files ?? "–", (st.backlog_files || 0) > 10],
    ["lag", st.lag_s == null ? "–" : `${st.lag_s.toFixed(1)} s`],
    ["particles/s", st.particles_per_s ?? "–"],
    ["drops", drops, drops > 0],
    ["files done / failed", `${st.files_done ?? "–"} / ${st.files_failed ?? "–"}`, (st.files_failed || 0) > 0],
    ["particles", st.particles_total ?? "–"],
  ];
  dl.replaceChildren(...rows.flatMap(([k, v, bad]) => [el("dt", {}, k), el("dd", bad ? {class: "bad"} : {}, String(v))]));
  for (const note of st.notes || []) dl.append(el("dt", {}, "note"), el("dd", {class: "bad"}, note));
}

function describe(a) {
  const verb = a.state === "fired" ? "≥" : "<";
  return `${a.label} ${a.metric} = ${a.value} ${a.unit} (${verb} ${a.threshold}) in sample ${a.sample_id}`;
}

function renderAlerts() {
  const box = document.getElementById("alerts");
  const shown = state.active.slice(-BANNERS).reverse();  // the newest; the rest summed up in one line
  const rest = state.active.slice(0, -BANNERS);
  box.replaceChildren(...shown.map(a => el("div", {class: "banner", role: "alert", "data-label": a.label},
                                           "ALERT " + describe(a))));
  if (rest.length) box.appendChild(el("div", {class: "banner more"},
    `and ${rest.length} more firing: ${rest.map(a => a.label + " " + a.metric).join(", ")}`));
  document.getElementById("alert-log").replaceChildren(...state.alerts.map(a =>
    el("li", {class: a.state}, `${(a.ts || "").slice(0, 19)} ${a.state}: ${describe(a)}`)));
  document.getElementById("errors").replaceChildren(...state.errors.map(e =>
    el("li", {}, `${e.file || ""}: ${e.reason || ""} (${e.action || ""})`)));
}

function renderThumbs() {
  const box = document.getElementById("thumbs");
  const labels = Object.keys(state.thumbs).sort();
  if (!labels.length) { box.replaceChildren(el("p", {class: "empty"}, "no crops yet")); return; }
  box.replaceChildren(...labels.map(label => {
    const row = el("div", {class: "row", "data-label": label}, undefined);
    row.appendChild(el("b", {}, label));
    for (const t of state.thumbs[label]) row.appendChild(el("img", {src: t.url, alt: `${label} particle ${t.particle_id}`, title: `particle ${t.particle_id}`}));
    return row;
  }));
}

function render(what) {
  if (what === undefined || what === "sample") renderPlot();
  if (what === undefined || what === "status") renderHealth();
  if (what === undefined || what === "alert" || what === "error") renderAlerts();
  if (what === undefined || what === "thumbs") renderThumbs();
}

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/events");
  source.addEventListener("snapshot", e => {
    state = JSON.parse(e.data);
    if (state.status && state.status.state) statusAt = Date.now();
    conn.textContent = "live"; conn.classList.remove("down");
    render();
  });
  source.addEventListener("update", e => { const u = JSON.parse(e.data); apply(u); render(u.type); });
  source.onerror = () => { conn.textContent = "reconnecting…"; conn.classList.add("down"); };
}

setInterval(renderHealth, 2000);  // the age of the last status keeps counting
window.addEventListener("resize", () => renderPlot());
connect();
