// infersim dashboard: asks the server (app.py) for FigureSpecs and their plotly figures and draws
// them; all numbers come from the server. DOM text is set with textContent (no HTML from data).
"use strict";
const $ = (id) => document.getElementById(id);
let INDEX = [];
let LIMITS = {};
let pending = 0;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function api(path, body) {
  const init = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(body)};
  const resp = await fetch(path, init);
  const data = await resp.json();
  if (!resp.ok) throw new Error(data.error || resp.statusText);
  return data;
}

function busy(delta) {
  pending += delta;
  document.body.dataset.state = pending > 0 ? "loading" : "ready";
}

function currentModel() { return INDEX.find((m) => m.model === $("model").value); }
function currentWorkload() { return currentModel().workloads[Number($("workload").value)]; }

function fillSelect(select, items) {
  select.replaceChildren(...items.map(([value, label]) => { const o = el("option", label); o.value = value; return o; }));
}

function checkboxes(container, names, cls, checked) {
  container.replaceChildren(...names.map((name) => {
    const label = el("label");
    const box = el("input");
    box.type = "checkbox"; box.className = cls; box.value = name; box.checked = checked;
    box.dataset.family = name;
    label.append(box, " " + name);
    return label;
  }));
}

function list(title, items, cls) {
  const div = el("div", null, cls);
  div.append(el("h3", title));
  const ul = el("ul");
  items.forEach((i) => ul.append(el("li", i)));
  div.append(ul);
  return div;
}

function renderFigures(container, payload, prefix) {
  container.replaceChildren();
  for (const f of payload.figures) {
    const s = f.spec;
    const sec = el("section", null, "figure");
    sec.dataset.key = f.key;
    sec.append(el("h2", s.title), el("p", s.caption, "caption"));
    container.append(sec);
    if (f.empty) {
      const d = el("div", "No figure: " + f.why_empty, "empty");
      d.dataset.empty = "1";
      sec.append(d);
    } else {
      const div = el("div", null, "plot");
      div.id = `plot-${prefix}-${f.key}`;
      sec.append(div);
      Plotly.newPlot(div, f.plotly.data, f.plotly.layout, {displaylogo: false, responsive: true});
    }
    if (s.table) {
      const t = el("table", null, "data");
      const head = el("tr");
      s.table.columns.forEach((c) => head.append(el("th", c)));
      t.append(head);
      s.table.rows.forEach((r) => { const tr = el("tr"); r.forEach((v) => tr.append(el("td", v))); t.append(tr); });
      sec.append(t);
    }
    if (s.notes.length) sec.append(list("Notes", s.notes, "notes"));
    if (s.inputs.length) sec.append(list("Inputs", s.inputs, "inputs"));
    if (s.assumptions.length) sec.append(list("Estimates and assumptions", s.assumptions, "assumptions"));
  }
}

function renderMeta(header) {
  $("meta").replaceChildren(...Object.entries(header).map(([k, v]) => {
    const tr = el("tr"); tr.append(el("th", k), el("td", v)); return tr;
  }));
}

async function refresh() {
  const w = currentWorkload();
  const q = new URLSearchParams({model: $("model").value, input_len: w.input_len, output_len: w.output_len,
                                 trace: w.trace || "", min_tok_s_per_user: $("min-tok-s").value,
                                 max_ttft_s: $("max-ttft").value});
  q.set("families", [...document.querySelectorAll(".family-toggle:checked")].map((b) => b.value).join(","));
  busy(1);
  try {
    const payload = await api("/api/figures?" + q.toString());
    renderMeta(payload.header);
    renderFigures($("figures"), payload, "main");
    $("status").textContent = payload.slo_left_out ? `${payload.slo_left_out} configurations miss the SLO` : "";
    $("status").className = "";
    document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
  } catch (e) {
    $("status").textContent = "error: " + e.message;
    $("status").className = "error";
  } finally {
    busy(-1);
  }
}

async function onModel() {
  const m = currentModel();
  fillSelect($("workload"), m.workloads.map((w, i) => [String(i), `${w.label} (${w.rows} rows)`]));
  await onWorkload();
  busy(1);
  try {
    const deps = await api("/api/deployments?" + new URLSearchParams({model: m.model}));
    fillSelect($("est-deployment"), deps.map((d) => [d.key, `${d.label} (${d.source})`]));
    const fams = await api("/api/frontier-families?" + new URLSearchParams({model: m.model}));
    checkboxes($("fr-families"), fams, "fr-family", false);
  } catch (e) {
    $("est-status").textContent = "error: " + e.message;
  } finally {
    busy(-1);
  }
}

async function onWorkload() {
  const w = currentWorkload();
  checkboxes($("families"), w.families, "family-toggle", true);
  for (const id of ["est-input", "fr-input"]) $(id).value = w.input_len;
  for (const id of ["est-output", "fr-output"]) $(id).value = w.output_len;
  await refresh();
}

async function runEstimate() {
  $("est-status").textContent = "estimating...";
  busy(1);
  try {
    const r = await api("/api/estimate", {model: $("model").value, deployment: $("est-deployment").value,
                                          batch: $("est-batch").value, input_len: $("est-input").value,
                                          output_len: $("est-output").value});
    const rows = [["deployment", r.deployment], ["status", r.status + (r.error ? ": " + r.error : "")],
                  ["tok/s per user", r.tok_s_per_user], ["output tok/s", r.output_tok_s], ["TTFT (s)", r.ttft_s],
                  ["TPOT (s)", r.tpot_s], ["racks", r.racks], ["power (W)", r.power_w],
                  ["tok/s per MW", r.tok_s_per_mw], ["USD per Mtok output", r.cost_per_mtok_output_usd]];
    $("est-result").replaceChildren(...rows.map(([k, v]) => {
      const tr = el("tr");
      tr.append(el("th", k), el("td", typeof v === "number" ? Number(v.toPrecision(4)) : (v ?? "n/a")));
      return tr;
    }));
    $("est-status").textContent = "";
  } catch (e) {
    $("est-status").textContent = "error: " + e.message;
  } finally {
    busy(-1);
  }
}

async function runFrontier() {
  const fams = [...document.querySelectorAll(".fr-family:checked")].map((b) => b.value);
  const batches = $("fr-batches").value.split(",").map((s) => s.trim()).filter((s) => s);
  $("fr-status").textContent = "running...";
  busy(1);
  try {
    const r = await api("/api/frontier", {model: $("model").value, families: fams, batches: batches,
                                          input_len: $("fr-input").value, output_len: $("fr-output").value});
    renderFigures($("fr-figures"), r, "frontier");
    $("fr-status").textContent = `screened ${r.screened} configurations in ${r.seconds} s`;
  } catch (e) {
    $("fr-status").textContent = "error: " + e.message;
  } finally {
    busy(-1);
  }
}

let timer = null;
function later() { clearTimeout(timer); timer = setTimeout(refresh, 250); }

async function start() {
  busy(1);
  try {
    const opts = await api("/api/options");
    INDEX = opts.index; LIMITS = opts.limits;
    $("results-file").textContent = opts.results_file;
    $("fr-max").textContent = LIMITS.frontier_families;
    fillSelect($("model"), INDEX.map((m) => [m.model, m.model]));
    $("model").addEventListener("change", onModel);
    $("workload").addEventListener("change", onWorkload);
    $("min-tok-s").addEventListener("input", later);
    $("max-ttft").addEventListener("input", later);
    $("families").addEventListener("change", refresh);
    $("est-run").addEventListener("click", runEstimate);
    $("fr-run").addEventListener("click", runFrontier);
    $("controls").addEventListener("submit", (e) => e.preventDefault());
    await onModel();
  } catch (e) {
    $("status").textContent = "error: " + e.message;
    $("status").className = "error";
  } finally {
    busy(-1);
  }
}

start();
