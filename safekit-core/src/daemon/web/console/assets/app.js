// safekit console. Plain JavaScript on the public API only: every button
// is one documented call, and the server checks roles and CSRF on its own,
// so hiding a button is a courtesy, never the protection. No markup is
// built from strings: text always goes through textContent.

import { configPage } from "/console/config.js";
import { modulePage } from "/console/module.js";

const ROLES = { Monitor: 0, Control: 1, Admin: 2 };
export let session = null;

export const $ = (sel, root = document) => root.querySelector(sel);

// el("button", {class: "x", onclick: f, text: "Go"}, child...)
export function el(tag, props = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid !== null && kid !== undefined && kid !== false) e.append(kid);
  }
  return e;
}

export const can = (role) => session !== null && ROLES[session.role] >= ROLES[role];
export const enc = encodeURIComponent;

// One API call: {status, ok, data}; data is JSON when the answer is.
export async function api(method, path, body, opts = {}) {
  const headers = {};
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrf;
  let payload;
  if (opts.raw !== undefined) {
    payload = opts.raw;
    headers["Content-Type"] = "application/zip";
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  } catch (e) {
    return { status: 0, ok: false, data: { error: `the node did not answer (${e.message})` } };
  }
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json().catch(() => null) : await r.text();
  if (r.status === 401 && path !== "/api/v1.0/session") {
    loginPage("Your session ended: log in again.");
  }
  return { status: r.status, ok: r.ok, data };
}

// The API's own sentence for a refusal, shown as it is.
export function why(res) {
  if (res.data && typeof res.data === "object" && res.data.error) return res.data.error;
  if (typeof res.data === "string" && res.data) return res.data;
  return `HTTP ${res.status}`;
}

export function toast(text, bad = false) {
  const t = $("#toast");
  const line = el("div", { class: bad ? "bad" : "good", text, title: "Click to dismiss", onclick: () => line.remove() });
  t.append(line);
  // The three most recent only: older ones would cover the page.
  while (t.children.length > 3) t.firstElementChild.remove();
  setTimeout(() => line.remove(), bad ? 12000 : 5000);
}

export function show(...content) {
  const main = $("#main");
  main.replaceChildren(...content);
  const h = main.querySelector("h1");
  if (h) {
    h.tabIndex = -1;
    h.focus();
  }
}

// ---------- login ----------

export function loginPage(note) {
  session = null;
  closeEvents();
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  const user = el("input", { name: "user", id: "user", autocomplete: "username", required: true, value: "admin" });
  const pass = el("input", { name: "password", id: "password", type: "password", autocomplete: "current-password", required: true });
  const msg = el("p", { class: "error", id: "login-error", role: "alert", text: note || "" });
  const form = el(
    "form",
    { class: "login", id: "login" },
    el("h1", { text: "Log in" }),
    el("label", { for: "user", text: "User" }),
    user,
    el("label", { for: "password", text: "Password" }),
    pass,
    el("button", { type: "submit", text: "Log in" }),
    msg,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = new URLSearchParams({ httpd_username: user.value, httpd_password: pass.value, login: "Login" });
    const r = await fetch("/login", { method: "POST", body, credentials: "same-origin" });
    const data = await r.json().catch(() => null);
    if (!r.ok) {
      msg.textContent = (data && data.error) || `HTTP ${r.status}`;
      return;
    }
    start(data);
  });
  show(form);
  pass.focus();
}

function start(who) {
  session = who;
  $("#nav").hidden = false;
  $("#logout").hidden = false;
  $("#who").textContent = `${who.user} (${who.role})`;
  for (const a of document.querySelectorAll("#nav [data-needs]")) a.hidden = !can(a.dataset.needs);
  route();
}

// ---------- live view of the cluster (server-sent events) ----------

export let view = []; // [{node, reachable, error, modules: [report]}]
let source = null;
let failures = 0;
const listeners = new Set();

export function onView(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

function openEvents() {
  if (source) return;
  source = new EventSource("/api/v1.0/events");
  source.addEventListener("cluster", (e) => {
    failures = 0;
    view = JSON.parse(e.data);
    document.body.classList.remove("stale");
    for (const f of listeners) f(view);
  });
  source.onerror = async () => {
    document.body.classList.add("stale");
    failures += 1;
    if (failures === 3) {
      const r = await api("GET", "/api/v1.0/session");
      if (r.status === 401) loginPage("Your session ended: log in again.");
    }
  };
}

function closeEvents() {
  if (source) source.close();
  source = null;
  listeners.clear();
}

export const stateOf = (m) => (m ? `${m.status.state.toUpperCase()} ${m.status.readiness}` : "");

// SafeKit's colours: green = PRIM/ALONE/SECOND/UP Ready; orange =
// Transient or resynchronising; red = WAIT, STOP, unreachable.
export function tone(node, m) {
  if (!node.reachable || !m) return "red";
  const s = m.status.state;
  if (s === "Stop" || s === "Wait") return "red";
  if (m.status.readiness === "Ready" && !m.metrics?.reintegration) return "green";
  return "orange";
}

function progressOf(m) {
  const r = m?.metrics?.reintegration;
  if (!r) return "";
  const [done, total] = r;
  const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
  const eta = m.metrics.reintegration_eta;
  return `resynchronising ${pct}% (${done}/${total} bytes${eta !== null && eta !== undefined ? `, ETA ${eta} s` : ""})`;
}

// ---------- actions ----------

// [label, action, options, confirm?]
const NODE_ACTIONS = [
  ["Start", "start", undefined, false],
  ["Stop", "stop", undefined, "primary"],
  ["Restart", "restart", undefined, false],
  ["Force start as primary", "prim", undefined, true],
  ["Force start as secondary", "second", undefined, true],
  ["Force start as secondary with full sync", "second", { fullsync: true }, true],
  ["Swap", "swap", undefined, true],
  ["Checkers on", "checker", { on: true }, false],
  ["Checkers off", "checker", { on: false }, false],
  ["Process monitoring on", "errd", { on: true }, false],
  ["Process monitoring off", "errd", { on: false }, false],
  ["Boot start on", "boot", { on: true }, false],
  ["Boot start off", "boot", { on: false }, false],
];

export async function act(node, module, action, options, label) {
  const r = await api("POST", `/api/v1.0/nodes/${enc(node)}/modules/${enc(module)}/actions/${enc(action)}`, options);
  if (r.ok) toast(`${node}: ${label || action} ${module}: done`);
  else toast(`${node}: ${label || action} ${module}: ${why(r)}`, true);
  return r.ok;
}

function isPrimary(m) {
  return m && (m.status.state === "Prim" || m.status.state === "Alone");
}

async function nodeAction(node, module, [label, action, options, confirmation]) {
  const m = moduleOn(node, module);
  const ask =
    confirmation === true ||
    (confirmation === "primary" && isPrimary(m)) ||
    (options && options.fullsync);
  if (ask && !window.confirm(`${label} ${module} on ${node}?`)) return;
  await act(node, module, action, options, label);
}

async function estimate(node, module) {
  const r = await api("GET", `/api/v1.0/nodes/${enc(node)}/modules/${enc(module)}/rfsdiff`);
  const lines = r.ok ? (Array.isArray(r.data) ? r.data : [JSON.stringify(r.data)]) : [why(r)];
  toast(`${node}: ${lines.join("; ") || "nothing to copy"}`, !r.ok);
}

export function moduleOn(node, module) {
  const n = view.find((v) => v.node === node);
  return n && Array.isArray(n.modules) ? n.modules.find((m) => m.name === module) : undefined;
}

// Global start: every node; global stop: the secondaries first, then the
// primary (SafeKit's order, so the primary never sees its secondary leave
// in the middle of a stop of its own).
async function globalStart(module) {
  const stopped = view.filter((n) => n.reachable && moduleOn(n.node, module)?.status.state === "Stop");
  if (!stopped.length) return toast(`${module} is not stopped on any node`);
  await Promise.all(stopped.map((n) => act(n.node, module, "start")));
}

async function globalStop(module) {
  const running = view.filter((n) => n.reachable && moduleOn(n.node, module) && moduleOn(n.node, module).status.state !== "Stop");
  if (!running.length) return toast(`${module} is stopped on every node`);
  if (!window.confirm(`Stop ${module} on every node?`)) return;
  for (const n of running.filter((n) => !isPrimary(moduleOn(n.node, module)))) await act(n.node, module, "stop");
  for (const n of running.filter((n) => isPrimary(moduleOn(n.node, module)))) await act(n.node, module, "stop");
}

// ---------- monitoring page ----------

function monitoringPage() {
  const host = el("div", { class: "cards", id: "cards" }, el("p", { class: "muted", text: "Waiting for the cluster…" }));
  show(el("h1", { text: "Monitoring" }), host);
  const cards = new Map();
  const paint = () => {
    const names = [...new Set(view.flatMap((n) => (Array.isArray(n.modules) ? n.modules.map((m) => m.name) : [])))].sort();
    if (names.length === 0) {
      host.replaceChildren(el("p", { class: "muted", text: "No module runs on the reachable nodes." }));
      cards.clear();
      return;
    }
    if (cards.size === 0) host.replaceChildren();
    for (const [name, c] of cards) {
      if (!names.includes(name)) {
        c.card.remove();
        cards.delete(name);
      }
    }
    for (const name of names) {
      if (!cards.has(name)) {
        const c = moduleCard(name);
        cards.set(name, c);
        host.append(c.card);
      }
      updateCard(cards.get(name));
    }
  };
  openEvents();
  onView(paint);
  if (view.length) paint();
}

function moduleCard(name) {
  const rows = el("tbody");
  const buttons = can("Control")
    ? el(
        "div",
        { class: "global" },
        el("button", { type: "button", text: "Start", onclick: () => globalStart(name) }),
        el("button", { type: "button", text: "Stop", onclick: () => globalStop(name) }),
      )
    : null;
  const card = el(
    "article",
    { class: "card", "data-module": name },
    el("h2", {}, el("a", { href: `#/module/${enc(name)}`, text: name })),
    buttons,
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Node" }), el("th", { text: "State" }), el("th", { text: "" }))), rows),
  );
  return { name, card, rows, nodes: new Map() };
}

function nodeRow(name, node) {
  const badge = el("span", { class: "badge" });
  const info = el("div", { class: "info" });
  let menu = null;
  if (can("Control")) {
    const items = NODE_ACTIONS.map((a) =>
      el("button", { type: "button", text: a[0], onclick: () => ((menu.open = false), nodeAction(node, name, a)) }),
    );
    items.push(el("button", { type: "button", text: "Estimate the data sync", onclick: () => ((menu.open = false), estimate(node, name)) }));
    menu = el("details", { class: "menu" }, el("summary", { text: "Actions", "aria-label": `Actions on ${node}` }), el("div", {}, items));
  }
  const tr = el("tr", { "data-node": node }, el("th", { text: node, scope: "row" }), el("td", {}, badge, info), el("td", {}, menu));
  return { tr, badge, info };
}

function updateCard(c) {
  for (const n of view) {
    if (!c.nodes.has(n.node)) {
      const r = nodeRow(c.name, n.node);
      c.nodes.set(n.node, r);
      c.rows.append(r.tr);
    }
    const r = c.nodes.get(n.node);
    const m = Array.isArray(n.modules) ? n.modules.find((x) => x.name === c.name) : undefined;
    r.badge.textContent = !n.reachable ? "unreachable" : m ? stateOf(m) : "not installed";
    r.badge.className = `badge ${tone(n, m)}`;
    const extra = [progressOf(m)];
    if (!n.reachable && n.error) extra.push(n.error);
    if (m && m.peer && m.status.state !== "Stop") extra.push(`peer ${m.peer.state.toUpperCase()} ${m.peer.readiness}`);
    r.info.textContent = extra.filter(Boolean).join(" · ");
  }
}

// ---------- debug page ----------

function debugPage() {
  const list = el("div", { class: "cards" });
  show(el("h1", { text: "Debug" }), el("p", { text: "Snapshots for support: each node's logs, configuration (secrets removed), state files and system facts in one zip." }), list);
  const paint = () => {
    const names = [...new Set(view.flatMap((n) => (Array.isArray(n.modules) ? n.modules.map((m) => m.name) : [])))].sort();
    list.replaceChildren(
      ...names.map((name) =>
        el(
          "article",
          { class: "card" },
          el("h2", { text: name }),
          el(
            "ul",
            {},
            view.map((n) =>
              el("li", {}, el("a", { href: `/api/v1.0/nodes/${enc(n.node)}/modules/${enc(name)}/snapshot`, download: `snapshot-${name}-${n.node}.zip`, text: `Snapshot of ${n.node}` })),
            ),
            el("li", {}, el("a", { href: `/api/v1.0/nodes/*/modules/${enc(name)}/snapshot`, download: `snapshot-${name}-cluster.zip`, text: "Snapshot of every node (one zip)" })),
          ),
        ),
      ),
    );
  };
  openEvents();
  let painted = false;
  onView(() => {
    if (!painted) paint();
    painted = true;
  });
  if (view.length) {
    paint();
    painted = true;
  }
}

// ---------- routing ----------

function route() {
  if (!session) return;
  listeners.clear();
  const hash = location.hash || "#/";
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("current", hash.startsWith(a.getAttribute("href")) && (a.getAttribute("href") !== "#/" || hash === "#/"));
  }
  const [, page, arg] = hash.split("/").map(decodeURIComponent);
  if (page === "module" && arg) modulePage(arg);
  else if (page === "config") configPage(hash.split("/").slice(2).map(decodeURIComponent));
  else if (page === "debug") debugPage();
  else monitoringPage();
  openEvents();
}

window.addEventListener("hashchange", route);
$("#logout").addEventListener("click", async () => {
  await api("POST", "/logout");
  loginPage("Logged out.");
});

const who = await api("GET", "/api/v1.0/session");
if (who.ok) start(who.data);
else loginPage();
