// The dashboard page: logs in with the admin key (the server answers with a session cookie and a
// CSRF token; the key itself is never kept here), then polls /dashboard/api/stats and manages keys
// and OAuth clients through /dashboard/api/keys and /dashboard/api/clients. Plain DOM code, no
// framework, no build step.
"use strict";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
let csrf = null;
let currency = "";
let timer = null;
let keysById = {};

function show(id, on) { $(id).classList.toggle("hidden", !on); }
function text(id, value) { $(id).textContent = value; }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

async function api(method, path, body) {
  const headers = {"Accept": "application/json", "X-CSRF-Token": csrf || ""};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch("/dashboard/api/" + path, {method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body)});
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401 && path !== "session") { loggedOut(); }
  return {status: resp.status, ok: resp.ok, data};
}

function errorText(r) {
  return (r.data && r.data.error && r.data.error.message) || `HTTP ${r.status}`;
}

// -- formatting ---------------------------------------------------------------------------------

function money(s) {
  const v = Number(s);
  if (!isFinite(v)) return String(s);
  const digits = v !== 0 && Math.abs(v) < 0.01 ? 6 : 4;
  return `${v.toFixed(digits)} ${currency}`;
}
function ms(seconds) { return seconds === null || seconds === undefined ? "-" : `${Math.round(seconds * 1000)} ms`; }
function pct(x) { return `${(x * 100).toFixed(1)}%`; }
function triple(p) { return `${ms(p.p50)} / ${ms(p.p95)} / ${ms(p.p99)}`; }
function day(iso) { return iso ? iso.slice(0, 10) : ""; }

// -- session ------------------------------------------------------------------------------------

async function start() {
  const r = await api("GET", "session");
  currency = (r.data && r.data.currency) || "";
  if (r.data && r.data.logged_in) { csrf = r.data.csrf; loggedIn(); return; }
  show("no-admin", !(r.data && r.data.admin_configured));
  show("login-form", !!(r.data && r.data.admin_configured));
  loggedOut();
}

function loggedIn() {
  show("login-view", false); show("app-view", true); show("logout", true); show("refresh", true);
  refreshAll();
  if (timer === null) timer = setInterval(refreshStats, REFRESH_MS);
}

function loggedOut() {
  csrf = null;
  if (timer !== null) { clearInterval(timer); timer = null; }
  show("app-view", false); show("logout", false); show("refresh", false); show("login-view", true);
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new URLSearchParams(new FormData(ev.target));
  const resp = await fetch("/dashboard/login", {method: "POST", body: form, credentials: "same-origin",
    headers: {"Accept": "application/json"}});
  const data = await resp.json().catch(() => null);
  $("admin-key").value = "";
  if (resp.ok && data && data.csrf) {
    csrf = data.csrf; show("login-error", false); loggedIn();
  } else {
    text("login-error", (data && data.error && data.error.message) || `HTTP ${resp.status}`);
    show("login-error", true);
  }
});

$("logout").addEventListener("click", async () => { await api("POST", "logout"); loggedOut(); });
$("refresh").addEventListener("click", () => refreshAll());

function refreshAll() { refreshStats(); refreshKeys(); }

// -- stats --------------------------------------------------------------------------------------

async function refreshStats() {
  const r = await api("GET", "stats?days=14");
  if (!r.ok) { text("updated", `stats unavailable: ${errorText(r)}`); return; }
  const s = r.data;
  currency = s.currency;
  text("updated", `updated ${new Date().toLocaleTimeString()}` + (s.draining ? " \u2014 draining" : ""));
  renderLive(s.live);
  renderUsage(s.usage);
  renderUpstreams(s.upstreams);
}

function renderLive(live) {
  text("live-window", `last ${Math.round(live.window_seconds / 60)} min, this worker`);
  text("live-rate", live.rate_per_second.toFixed(2));
  text("live-requests", String(live.requests));
  text("live-errors", `${pct(live.error_rate)} (${live.errors})`);
  text("live-latency", triple(live.latency));
  text("live-ttft", triple(live.ttft));
  const n = live.series.length;
  columnChart($("chart-rate"), live.series.map((v, i) => ({
    label: `${(n - i) * 10}s ago`, axis: i === n - 1 ? "now" : `-${Math.round((n - i) * 10 / 60)}m`,
    value: v, text: `${v} requests`, short: String(v)})), 6, 1200);
}

function renderUsage(u) {
  show("usage-off", u === null);
  if (u === null) return;
  text("usage-range", `since ${u.since} (Beijing days)`);
  text("usage-requests", String(u.total.requests));
  text("usage-cost", money(u.total.cost));
  const item = (label, row) => ({label, value: Number(row.cost),
    text: `${money(row.cost)} \u00b7 ${row.requests} req`, short: String(row.requests)});
  columnChart($("chart-day"), u.by_day.map((d) => ({...item(d.day, d), axis: d.day.slice(5)})), 3);
  hbarChart($("chart-model"), u.by_model.map((m) => item(m.model, m)), "no spend in this range");
  hbarChart($("chart-key"), u.by_key.filter((k) => k.requests > 0 || !k.revoked)
    .map((k) => item(k.name || k.prefix, k)), "no keys yet");
}

function renderUpstreams(rows) {
  $("upstream-rows").replaceChildren(...rows.map((h) => {
    const bal = h.balance === null ? "not polled"
      : Object.entries(h.balance).map(([c, v]) => `${v.toFixed(2)} ${c}`).join(", ") || "not yet polled";
    const state = el("span", {class: `badge ${h.state}`}, h.state.replace("_", " "));
    return el("tr", {"data-upstream": h.name}, el("td", {}, h.name), el("td", {}, state),
      el("td", {class: "num"}, String(h.in_flight)), el("td", {class: "num"}, String(h.requests)),
      el("td", {class: "num"}, String(h.failures)), el("td", {class: "num"}, ms(h.p95_ttft)),
      el("td", {}, h.out_of_balance ? `${bal} (out of balance)` : bal));
  }));
}

// -- keys ---------------------------------------------------------------------------------------

async function refreshKeys() {
  const r = await api("GET", "keys");
  show("keys-off", !r.ok);
  show("key-form", r.ok);
  show("key-table", r.ok);
  if (!r.ok) { text("keys-off", errorText(r)); keysById = {}; }
  else {
    keysById = {};
    for (const k of r.data.data) keysById[k.id] = k;
    $("key-rows").replaceChildren(...r.data.data.map(keyRow));
  }
  const select = $("client-key");
  select.replaceChildren(el("option", {value: ""}, "key to act as\u2026"),
    ...Object.values(keysById).filter((k) => k.status === "active")
      .map((k) => el("option", {value: k.id}, `${k.name} (${k.prefix})`)));
  refreshClients();
}

function keyRow(k) {
  const revoke = el("button", {class: "danger", type: "button", "data-revoke": k.id}, "Revoke");
  revoke.addEventListener("click", () => revokeThing("keys", k.id, `key ${k.name} (${k.prefix})`, "key-error"));
  return el("tr", {"data-key-id": k.id}, el("td", {}, k.name), el("td", {}, el("code", {}, k.prefix)),
    el("td", {}, el("span", {class: `badge ${k.status}`}, k.status)),
    el("td", {}, k.models ? k.models.join(", ") : "all"),
    el("td", {}, k.budget_daily ? money(k.budget_daily) : "-"), el("td", {}, day(k.created_at)),
    el("td", {}, k.status === "revoked" ? "" : revoke));
}

$("key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = {name: f.get("name").trim()};
  const models = f.get("models").split(",").map((m) => m.trim()).filter(Boolean);
  if (models.length) body.models = models;
  if (f.get("budget_daily").trim()) body.budget_daily = f.get("budget_daily").trim();
  const r = await api("POST", "keys", body);
  show("key-error", !r.ok);
  if (!r.ok) { text("key-error", errorText(r)); return; }
  ev.target.reset();
  showSecret("key-secret", `Key ${r.data.name} created. Copy it now: it is not shown again.`, r.data.key);
  refreshAll();
});

function showSecret(id, message, secret) {
  const close = el("button", {type: "button"}, "Done");
  close.addEventListener("click", () => { $(id).replaceChildren(); show(id, false); });
  $(id).replaceChildren(el("p", {}, message), el("code", {class: "secret-value"}, secret), " ", close);
  show(id, true);
}

async function revokeThing(kind, id, what, errorId) {
  if (!window.confirm(`Revoke ${what}? Requests with it fail from now on.`)) return;
  const r = await api("POST", `${kind}/${encodeURIComponent(id)}/revoke`);
  show(errorId, !r.ok);
  if (!r.ok) text(errorId, errorText(r));
  refreshAll();
}

// -- OAuth clients ------------------------------------------------------------------------------

async function refreshClients() {
  const r = await api("GET", "clients");
  show("clients-off", !r.ok);
  show("client-form", r.ok);
  show("client-table", r.ok);
  if (!r.ok) {
    text("clients-off", r.status === 404 ? "OAuth clients not available on this gateway." : errorText(r));
    $("client-rows").replaceChildren();
    return;
  }
  $("client-rows").replaceChildren(...r.data.data.map((c) => {
    const key = keysById[c.key_id];
    const revoke = el("button", {class: "danger", type: "button", "data-revoke": c.client_id}, "Revoke");
    revoke.addEventListener("click", () => revokeThing("clients", c.client_id, `client ${c.name}`, "client-error"));
    const status = c.revoked ? "revoked" : "active";
    return el("tr", {"data-client-id": c.client_id}, el("td", {}, c.name), el("td", {}, el("code", {}, c.client_id)),
      el("td", {}, key ? key.name : c.key_id), el("td", {}, c.scope || "-"),
      el("td", {}, c.token_ttl ? `${c.token_ttl} s` : "-"),
      el("td", {}, el("span", {class: `badge ${status}`}, status)), el("td", {}, c.revoked ? "" : revoke));
  }));
}

$("client-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = {name: f.get("name").trim(), key: f.get("key")};
  if (f.get("scope").trim()) body.scope = f.get("scope").trim();
  if (f.get("token_ttl").trim()) body.token_ttl = Number(f.get("token_ttl").trim());
  const r = await api("POST", "clients", body);
  show("client-error", !r.ok);
  if (!r.ok) { text("client-error", errorText(r)); return; }
  ev.target.reset();
  showSecret("client-secret", `Client ${r.data.name} created (id ${r.data.client_id}). Copy the secret now: ` +
    "it is not shown again.", r.data.client_secret);
  refreshClients();
});

start();
