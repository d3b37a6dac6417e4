// Module details: each node's state and resources (live), its module log
// (live, pausable, filtered by level, downloadable; a script's line opens
// that run's output), its resources with each one's history, and the
// state timeline of every node.

import { api, el, enc, moduleOn, onView, show, stateOf, tone, view, why } from "/console/app.js";

const LEVELS = [
  ["IEUSC", "Events and information"],
  ["EUSC", "Events only"],
  ["C", "Critical only"],
  ["DIEUSC", "Everything, debug included"],
];

export function modulePage(name) {
  let node = view.find((n) => n.reachable)?.node || view[0]?.node || "";
  let paused = false;
  let levels = LEVELS[0][0];
  let timer = null;

  const tabs = el("div", { class: "tabs", role: "tablist" });
  const states = el("div", { class: "states" });
  const resources = el("tbody");
  const log = el("pre", { class: "log", id: "log", tabindex: "0", "aria-label": "Module log" });
  const userlog = el("pre", { class: "userlog", id: "userlog", hidden: true });
  const timeline = el("tbody");
  const history = el("div", { id: "resource-history" });
  const pause = el("button", { type: "button", text: "Pause", "aria-pressed": "false" });
  const level = el("select", { id: "levels", "aria-label": "Levels" }, LEVELS.map(([v, t]) => el("option", { value: v, text: t })));
  const download = el("button", { type: "button", text: "Download" });

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
  });
  level.addEventListener("change", () => {
    levels = level.value;
    refreshLog();
  });
  download.addEventListener("click", async () => {
    const r = await api("GET", `/api/v1.0/nodes/${enc(node)}/modules/${enc(name)}/log?lines=10000&levels=${levels}`);
    if (!r.ok) return;
    const blob = new Blob([(r.data || []).join("\n") + "\n"], { type: "text/plain" });
    const a = el("a", { href: URL.createObjectURL(blob), download: `${name}-${node}.log` });
    document.body.append(a);
    a.click();
    a.remove();
  });

  async function openUserlog(file) {
    const r = await api("GET", `/api/v1.0/nodes/${enc(node)}/modules/${enc(name)}/userlogs/${enc(file)}`);
    userlog.hidden = false;
    userlog.textContent = `${file} on ${node}\n\n${r.ok ? r.data : why(r)}`;
    userlog.scrollIntoView({ block: "nearest" });
  }

  // A "Script stop_prim" line at 18:40:16.88 is the run whose userlog
  // (userlog_<date>T<hhmmss>_stop_prim.ulog) started then or just after.
  async function openRun(script, time) {
    const stamp = time.replace(" ", "T").replace(/:/g, "").slice(0, 17);
    const r = await api("GET", `/api/v1.0/nodes/${enc(node)}/modules/${enc(name)}/userlogs`);
    const runs = (r.ok && Array.isArray(r.data) ? r.data : []).filter((u) => u.script === script);
    const after = runs.filter((u) => u.time >= stamp).sort((a, b) => (a.time < b.time ? -1 : 1));
    const chosen = after[0] || runs[0];
    if (chosen) return openUserlog(chosen.file);
    userlog.hidden = false;
    userlog.textContent = `No output kept for ${script} on ${node} (<user logging="none">, or a script that does not exist).`;
  }

  function logLine(line) {
    const named = line.match(/userlog_[A-Za-z0-9_.-]+\.ulog/);
    const run = line.match(/^\| ([0-9-]+ [0-9:]+)[0-9.]* \| [a-z]+ \| S \| Script (?:force )?([A-Za-z0-9_.-]+)$/);
    if (!named && !run) return el("span", { class: `l${line.split(" | ")[2] || ""}`, text: line + "\n" });
    const open = named ? () => openUserlog(named[0]) : () => openRun(run[2], run[1]);
    return el("span", {}, el("button", { type: "button", class: "linkish", text: line, title: "Show this run's output", onclick: open }), "\n");
  }

  async function refreshLog() {
    if (!node || !document.body.contains(log)) return;
    const r = await api("GET", `/api/v1.0/nodes/${enc(node)}/modules/${enc(name)}/log?lines=300&levels=${levels}`);
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.replaceChildren(...(r.ok && Array.isArray(r.data) ? r.data.map(logLine) : [why(r)]));
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  async function refreshTimeline() {
    const r = await api("GET", `/api/v1.0/nodes/*/modules/${enc(name)}/timeline`);
    const rows = [];
    for (const n of r.ok && Array.isArray(r.data) ? r.data : []) {
      for (const c of Array.isArray(n.body) ? n.body : []) {
        rows.push({ time: c.time, node: n.node, side: c.side, state: c.state });
      }
    }
    rows.sort((a, b) => (a.time < b.time ? 1 : -1));
    timeline.replaceChildren(
      ...rows.slice(0, 200).map((c) =>
        el("tr", {}, el("td", { text: c.time }), el("td", { text: c.node }), el("td", { text: c.side === "local" ? "itself" : "its peer" }), el("td", { text: c.state })),
      ),
    );
  }

  function paint() {
    const names = view.map((n) => n.node);
    if (!node && names.length) node = names[0];
    tabs.replaceChildren(
      ...view.map((n) =>
        el("button", {
          type: "button",
          role: "tab",
          "aria-selected": String(n.node === node),
          class: n.node === node ? "current" : "",
          text: n.node,
          onclick: () => {
            node = n.node;
            userlog.hidden = true;
            paint();
            refreshLog();
          },
        }),
      ),
    );
    states.replaceChildren(
      ...view.map((n) => {
        const m = moduleOn(n.node, name);
        return el("div", { class: "state" }, el("strong", { text: n.node }), " ", el("span", { class: `badge ${tone(n, m)}`, text: n.reachable ? (m ? stateOf(m) : "not installed") : "unreachable" }));
      }),
    );
    const m = moduleOn(node, name);
    const res = m ? Object.entries(m.resources || {}) : [];
    resources.replaceChildren(
      ...res.map(([k, v]) =>
        el("tr", { "data-resource": k }, el("td", { text: k }), el("td", { text: v }), el("td", {}, el("button", { type: "button", class: "linkish", text: "History", onclick: () => showHistory(k) }))),
      ),
    );
  }

  // Each value the resource took on this node, newest first (from the module log).
  async function showHistory(resource) {
    const r = await api("GET", `/api/v1.0/nodes/${enc(node)}/modules/${enc(name)}/resources/history?resource=${enc(resource)}`);
    const rows = r.ok && Array.isArray(r.data) ? r.data.slice().reverse() : [];
    history.replaceChildren(
      el("h3", { text: `${resource} on ${node}` }),
      r.ok
        ? rows.length
          ? el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Time (UTC)" }), el("th", { text: "Value" }), el("th", { text: "Set by" }))), el("tbody", {}, rows.slice(0, 200).map((a) => el("tr", {}, el("td", { text: a.time }), el("td", { text: a.value }), el("td", { text: a.by })))))
          : el("p", { class: "muted", text: "No change recorded in the module log." })
        : el("p", { class: "bad", text: why(r) }),
    );
  }

  show(
    el("h1", { text: `Module ${name}` }),
    states,
    tabs,
    el(
      "section",
      {},
      el("h2", { text: "Log" }),
      el("div", { class: "toolbar" }, pause, level, download),
      log,
      userlog,
    ),
    el("section", {}, el("h2", { text: "Resources" }), el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Resource" }), el("th", { text: "Value" }), el("th", { text: "" }))), resources), history),
    el(
      "section",
      {},
      el("h2", { text: "States timeline" }),
      el("button", { type: "button", text: "Refresh", onclick: refreshTimeline }),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Time (UTC)" }), el("th", { text: "Node" }), el("th", { text: "Seen by" }), el("th", { text: "State" }))), timeline),
    ),
  );
  onView(() => {
    paint();
    if (!timer) refreshLog();
  });
  if (view.length) paint();
  refreshLog();
  refreshTimeline();
  timer = setInterval(() => {
    if (!document.body.contains(log)) {
      clearInterval(timer);
      return;
    }
    if (!paused) refreshLog();
  }, 1000);
}
