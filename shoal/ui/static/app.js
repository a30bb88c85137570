// shoal ui: runs, a run, compare, models. No framework, nothing loaded from elsewhere.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? v.toLocaleString() : v.toFixed(4)) : esc(v ?? "-"));
const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16) : "-");
const main = () => $("#main");

async function api(path, options) {
  const r = await fetch(path, options);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || `${r.status} ${r.statusText}`);
  return body;
}

// -- runs ------------------------------------------------------------------------------------------------------------
const COLUMNS = [
  ["", null], ["run", "run_id"], ["name", "name"], ["kind", "kind"], ["status", "status"], ["model", "model"],
  ["valid auc / acc / r²", "quality"], ["valid ne / nmse", "ne"], ["created", "created_at"],
];
let runsState = {rows: [], sort: "created_at", asc: false, q: "", status: "", picked: new Set()};

function quality(r) {
  const m = r.metrics;  // the headline of each label kind (shoal.metrics.HEADLINE)
  return m.valid_auc ?? m.valid_accuracy ?? m.valid_r2 ?? m.valid_micro_f1 ?? m.valid_mean_task_score ?? null;
}

async function showRuns() {
  const t0 = performance.now();
  const data = await api("/api/runs?limit=100000");
  $("#home").textContent = data.home;
  runsState.rows = data.runs.map((r) => ({...r, quality: quality(r), ne: r.metrics.valid_ne ?? r.metrics.valid_nmse ?? r.metrics.valid_mean_ne ?? null}));
  main().innerHTML = `
    <div class="toolbar">
      <input id="filter" placeholder="filter: id, name or model" size="30" value="${esc(runsState.q)}">
      <select id="status"><option value="">any status</option><option>completed</option><option>running</option>
        <option>failed</option><option>killed</option></select>
      <button id="compare" disabled>compare</button>
      <span id="count" class="dim"></span>
    </div>
    <table id="runs"><thead><tr>${COLUMNS.map(([label, key]) => `<th data-key="${key ?? ""}">${label}</th>`).join("")}
    </tr></thead><tbody></tbody></table>`;
  $("#status").value = runsState.status;
  $("#filter").addEventListener("input", (e) => { runsState.q = e.target.value; renderRuns(); });
  $("#status").addEventListener("change", (e) => { runsState.status = e.target.value; renderRuns(); });
  $("#compare").addEventListener("click", () => { location.hash = `#/compare/${[...runsState.picked].join(",")}`; });
  for (const th of document.querySelectorAll("#runs th[data-key]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      if (!key) return;
      runsState.asc = runsState.sort === key ? !runsState.asc : false;
      runsState.sort = key;
      renderRuns();
    });
  }
  $("#runs tbody").addEventListener("change", (e) => {
    if (!e.target.matches("input[type=checkbox]")) return;
    if (e.target.checked) runsState.picked.add(e.target.value); else runsState.picked.delete(e.target.value);
    $("#compare").disabled = runsState.picked.size < 2 || runsState.picked.size > 5;
  });
  renderRuns();
  document.body.dataset.renderMs = String(Math.round(performance.now() - t0));
}

function renderRuns() {
  const q = runsState.q.trim().toLowerCase();
  let rows = runsState.rows.filter((r) => (!runsState.status || r.status === runsState.status) &&
    (!q || [r.run_id, r.name, r.model].some((v) => (v || "").toLowerCase().includes(q))));
  const key = runsState.sort, dir = runsState.asc ? 1 : -1;
  rows = rows.slice().sort((a, b) => {
    const x = a[key], y = b[key];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
  const html = [];
  for (const r of rows) {
    const cls = r.status === "failed" || r.status === "killed" ? "bad" : r.status === "completed" ? "ok" : "";
    html.push(`<tr><td><input type="checkbox" value="${esc(r.run_id)}" ${runsState.picked.has(r.run_id) ? "checked" : ""}></td>` +
      `<td><a href="#/run/${esc(r.run_id)}">${esc(r.run_id)}</a></td><td>${esc(r.name)}</td><td>${esc(r.kind)}</td>` +
      `<td class="${cls}">${esc(r.status)}</td><td>${esc(r.model ?? "")}</td><td class="num">${fmt(r.quality)}</td>` +
      `<td class="num">${fmt(r.ne)}</td><td>${when(r.created_at)}</td></tr>`);
  }
  $("#runs tbody").innerHTML = html.join("");
  $("#count").textContent = `${rows.length.toLocaleString()} of ${runsState.rows.length.toLocaleString()} runs`;
  for (const th of document.querySelectorAll("#runs th")) {
    th.classList.toggle("sorted", th.dataset.key === key);
    th.classList.toggle("asc", th.dataset.key === key && runsState.asc);
  }
}

// -- one run ---------------------------------------------------------------------------------------------------------
function metricsTable(metrics) {
  const splits = ["valid", "test"].filter((s) => Object.keys(metrics).some((k) => k.startsWith(s + "_")));
  const names = [...new Set(Object.keys(metrics).filter((k) => splits.includes(k.split("_")[0]))
    .map((k) => k.slice(k.indexOf("_") + 1)))].sort();
  if (!names.length) return `<p class="dim">no metrics</p>`;
  return `<table class="metrics"><tr><th>metric</th>${splits.map((s) => `<th>${s}</th>`).join("")}</tr>` +
    names.map((n) => `<tr><td>${esc(n)}</td>${splits.map((s) => `<td class="num">${fmt(metrics[`${s}_${n}`])}</td>`).join("")}</tr>`).join("") +
    `</table>`;
}

function confusion(summary, split) {
  const cm = summary[`${split}_confusion`], classes = summary.classes || [];
  if (!cm) return "";
  return `<div class="card"><h3>${split} confusion matrix</h3><table class="confusion"><tr><th>true \\ predicted</th>` +
    classes.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr>" +
    cm.map((row, i) => `<tr><th>${esc(classes[i])}</th>${row.map((v) => `<td class="num">${v}</td>`).join("")}</tr>`).join("") +
    "</table></div>";
}

async function showRun(id) {
  const r = await api(`/api/runs/${encodeURIComponent(id)}`);
  const s = r.summary, lineage = ((s.lineage || {}).data) || {};
  const parent = r.parent ? `<a href="#/run/${esc(r.parent)}">${esc(r.parent)}</a>` : "-";
  main().innerHTML = `
    <h2>${esc(r.name)} <span class="dim">${esc(r.run_id)}</span></h2>
    <p>${esc(r.kind)}, <b>${esc(r.status)}</b>, created ${when(r.created_at)}, finished ${when(r.finished_at)};
      parent ${parent}</p>
    <div class="grid">
      <div class="card"><h3>metrics</h3>${metricsTable(r.metrics)}</div>
      <div class="card"><h3>lineage</h3>${Object.entries(lineage).map(([split, f]) =>
        `<p><b>${esc(split)}</b>: ${esc(f.path)}<br><span class="dim">${fmt(f.bytes)} bytes, sha256 ${esc(f.sha256 || "not hashed")}</span></p>`).join("") || "<p class='dim'>not recorded</p>"}
        <p>rows: ${["train_rows", "valid_rows", "test_rows"].filter((k) => s[k]).map((k) => `${fmt(s[k])} ${k.split("_")[0]}`).join(", ") || "-"}</p></div>
      ${r.pictures.map((p) => `<div class="card"><h3>${esc(p)}</h3><img class="picture" alt="${esc(p)}" src="/api/runs/${encodeURIComponent(r.run_id)}/pictures/${encodeURIComponent(p)}"></div>`).join("")}
      ${confusion(s, "valid")}${confusion(s, "test")}
      <div class="card"><h3>config</h3><pre>${esc(JSON.stringify(r.config, null, 2))}</pre></div>
    </div>`;
}

// -- compare ---------------------------------------------------------------------------------------------------------
const PALETTE = ["#1f6feb", "#e8590c", "#2e7d32", "#8e24aa", "#c62828"];

function curves(runs, key) {
  const series = runs.map((r) => r.history.filter((h) => typeof h[key] === "number").map((h) => [h.step ?? 0, h[key]]));
  const all = series.flat();
  if (!all.length) return `<p class="dim">no ${esc(key)} history</p>`;
  const W = 520, H = 260, P = 40;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) || 1], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x) => P + ((x - x0) / ((x1 - x0) || 1)) * (W - 2 * P);
  const sy = (y) => H - P - ((y - y0) / ((y1 - y0) || 1)) * (H - 2 * P);
  const paths = series.map((pts, i) => `<path class="series" data-run="${esc(runs[i].run_id)}" fill="none" stroke="${PALETTE[i]}" stroke-width="2" d="${
    pts.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("")}"/>`).join("");
  return `<svg width="${W}" height="${H}" role="img" aria-label="${esc(key)} by step">
    <line x1="${P}" y1="${H - P}" x2="${W - P}" y2="${H - P}" stroke="#999"/><line x1="${P}" y1="${P}" x2="${P}" y2="${H - P}" stroke="#999"/>
    <text x="${W / 2}" y="${H - 8}">optimizer step</text><text x="4" y="${P - 10}">validation ${esc(key)}</text>
    <text x="${P}" y="${H - P + 14}">${x0}</text><text x="${W - P - 20}" y="${H - P + 14}">${x1}</text>
    <text x="2" y="${sy(y0)}">${y0.toFixed(3)}</text><text x="2" y="${sy(y1) + 10}">${y1.toFixed(3)}</text>${paths}</svg>`;
}

async function showCompare(ids) {
  const data = await api(`/api/compare?ids=${encodeURIComponent(ids)}`);
  const runs = data.runs;
  const names = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort();
  main().innerHTML = `
    <h2>compare ${runs.length} runs</h2>
    <div class="grid">
      <div class="card"><h3>metrics</h3><table id="compare-metrics"><tr><th>metric</th>${runs.map((r, i) =>
        `<th style="color:${PALETTE[i]}"><a href="#/run/${esc(r.run_id)}">${esc(r.run_id)}</a><br><span class="dim">${esc(r.name)} ${esc(r.model ?? "")}</span></th>`).join("")}</tr>
        ${names.map((n) => `<tr><td>${esc(n)}</td>${runs.map((r) => `<td class="num">${fmt(r.metrics[n])}</td>`).join("")}</tr>`).join("")}</table></div>
      <div class="card"><h3>validation log loss</h3>${curves(runs, "logloss")}</div>
      <div class="card"><h3>validation AUC / accuracy</h3>${curves(runs, runs.some((r) => r.history.some((h) => "auc" in h)) ? "auc" : "accuracy")}</div>
    </div>`;
}

// -- models ----------------------------------------------------------------------------------------------------------
async function showModels() {
  const data = await api("/api/models");
  main().innerHTML = `
    <h2>models</h2>
    <table id="models"><tr><th>model</th><th>version</th><th>aliases</th><th>run</th><th>registered</th><th>note</th></tr>
      ${data.versions.map((v) => `<tr><td>${esc(v.name)}</td><td>v${v.version}</td><td>${v.aliases.map(esc).join(", ")}</td>
        <td><a href="#/run/${esc(v.run_id)}">${esc(v.run_id)}</a></td><td>${when(v.created_at)}</td><td>${esc(v.note)}</td></tr>`).join("")}
    </table>
    <h3>move an alias</h3>
    <form id="move" class="toolbar">
      <input name="name" placeholder="model" required> @ <input name="alias" placeholder="alias, e.g. production" required>
      -&gt; v<input name="version" type="number" min="1" required style="width:5rem">
      <input name="token" type="password" placeholder="admin token">
      <button type="submit">move</button>
    </form>
    <div id="move-result" class="message">${data.admin ? "moving an alias needs the admin token" : "read-only: start <code>shoal ui --admin-token ...</code> to move aliases"}</div>`;
  $("#move").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const out = $("#move-result");
    try {
      const r = await api(`/api/models/${encodeURIComponent(f.get("name"))}/aliases/${encodeURIComponent(f.get("alias"))}`, {
        method: "POST", headers: {"content-type": "application/json", "authorization": `Bearer ${f.get("token")}`},
        body: JSON.stringify({version: Number(f.get("version"))})});
      out.className = "message ok";
      out.textContent = `${r.name}@${r.alias} -> v${r.version}` + (r.previous ? ` (was v${r.previous})` : "");
      setTimeout(showModels, 800);
    } catch (err) {
      out.className = "message bad";
      out.textContent = `refused: ${err.message}`;
    }
  });
}

// -- routing ---------------------------------------------------------------------------------------------------------
async function route() {
  const [, page, arg] = (location.hash || "#/").split("/");
  try {
    if (page === "run") await showRun(decodeURIComponent(arg));
    else if (page === "compare") await showCompare(decodeURIComponent(arg));
    else if (page === "models") await showModels();
    else await showRuns();
    document.body.dataset.page = page || "runs";
  } catch (err) {
    main().innerHTML = `<p class="bad">${esc(err.message)}</p>`;
    document.body.dataset.page = "error";
  }
}
window.addEventListener("hashchange", route);
route();
