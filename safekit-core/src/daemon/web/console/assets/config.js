// Configuration (Admin): the overview (nodes, modules), new modules from
// a package, and one module's files: a form for the common settings, the raw userconfig.xml with the reader's
// errors at their line, the scripts; check, apply to the chosen nodes with
// each node's answer, restore one of the last three, download, uninstall.

import { api, can, el, enc, show, toast, view, why } from "/console/app.js";
import { clusterPage } from "/console/cluster.js";
import { editor, nodePicker, nodesOf, perNode } from "/console/widgets.js";

const USERCONFIG = "conf/userconfig.xml";

export function configPage(path) {
  if (!can("Admin")) {
    show(el("h1", { text: "Configuration" }), el("p", { text: "Only an Admin user can configure the cluster." }));
    return;
  }
  if (path[0] === "cluster") clusterPage();
  else if (path[0] === "module" && path[1]) moduleEditor(path[1]);
  else overview();
}

// ---------- overview: nodes, modules, new module ----------

async function overview() {
  const nodes = el("tbody");
  const modules = el("ul");
  const packages = el("select", { id: "package", "aria-label": "Package" }, el("option", { value: "", text: "Upload a .safe file…" }));
  const upload = el("input", { type: "file", id: "upload", accept: ".safe,application/zip", "aria-label": ".safe file" });
  const name = el("input", { id: "new-module", required: true, pattern: "[A-Za-z0-9_]+", "aria-label": "Module name" });
  const results = el("div", { id: "install-results" });
  const picker = nodePicker("install");
  const install = el("form", { class: "stack" }, el("label", { for: "new-module", text: "Module name" }), name, el("label", { for: "package", text: "From" }), packages, upload, picker.box, el("button", { type: "submit", text: "Install" }), results);
  install.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const chosen = picker.chosen();
    if (!chosen.length || !name.value) return;
    const target = `/api/v1.0/nodes/${chosen.map(enc).join(",")}/modules/${enc(name.value)}/install`;
    let r;
    if (packages.value) {
      r = await api("POST", `${target}?template=${enc(packages.value)}`);
    } else {
      const file = upload.files[0];
      if (!file) return toast("choose a package or a .safe file", true);
      r = await api("POST", target, undefined, { raw: await file.arrayBuffer() });
    }
    results.replaceChildren(chosen.length === 1 && !Array.isArray(r.data) ? el("p", { class: r.ok ? "good" : "bad", text: r.ok ? "installed" : why(r) }) : perNode(r.data));
  });
  show(
    el("h1", { text: "Configuration" }),
    el("section", {}, el("h2", { text: "Cluster" }), el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Node" }), el("th", { text: "Addresses" }), el("th", { text: "Reachable" }))), nodes), el("a", { href: "#/config/cluster", class: "button", text: "Edit the cluster configuration" })),
    el("section", {}, el("h2", { text: "Modules" }), modules),
    el("section", {}, el("h2", { text: "New module" }), install),
  );
  const c = await api("GET", "/api/v1.0/cluster");
  if (c.ok) {
    nodes.replaceChildren(
      ...c.data.nodes.map((n) =>
        el("tr", {}, el("td", { text: n.name + (n.this ? " (this node)" : "") }), el("td", { text: n.addresses.map(([lan, a]) => `${lan}: ${a}`).join(", ") }), el("td", { class: n.reachable ? "good" : "bad", text: n.reachable ? "yes" : "no" })),
      ),
    );
  }
  const names = [...new Set(view.flatMap((n) => (Array.isArray(n.modules) ? n.modules.map((m) => m.name) : [])))].sort();
  modules.replaceChildren(...names.map((m) => el("li", {}, el("a", { href: `#/config/module/${enc(m)}`, text: m }))));
  if (!names.length) modules.append(el("li", { class: "muted", text: "none yet" }));
  const p = await api("GET", "/api/v1.0/packages");
  if (p.ok) packages.append(...p.data.map((t) => el("option", { value: t, text: t })));
}

// ---------- one module ----------

// A list typed one per line (or separated by commas or spaces).
const items = (v) => v.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);

// A new element `tag` with `attrs`, appended to `parent`.
function add(d, parent, tag, attrs) {
  const e = d.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  parent.append(e);
  return e;
}

// The common settings read from and written into userconfig.xml.
const FIELDS = [
  ["vip", "Virtual IP address", (d) => d.querySelector("virtual_addr")?.getAttribute("addr"), (d, v) => d.querySelector("virtual_addr")?.setAttribute("addr", v)],
  [
    "dirs",
    "Replicated directories (one per line)",
    (d) => [...d.querySelectorAll("rfs > replicated")].map((r) => r.getAttribute("dir")).join("\n"),
    (d, v) => {
      const rfs = d.querySelector("rfs");
      if (!rfs) return;
      const dirs = v.split("\n").map((s) => s.trim()).filter(Boolean);
      const old = [...rfs.querySelectorAll(":scope > replicated")];
      dirs.forEach((dir, i) => {
        if (old[i]) old[i].setAttribute("dir", dir);
        else {
          const r = d.createElement("replicated");
          r.setAttribute("dir", dir);
          r.setAttribute("mode", "read_only");
          rfs.append(r);
        }
      });
      old.slice(dirs.length).forEach((r) => r.remove());
    },
  ],
  [
    "heartbeats",
    "Heartbeat networks (cluster.xml network names, one per line)",
    (d) => [...d.querySelectorAll("heart > heartbeat")].map((h) => h.getAttribute("name")).join("\n"),
    (d, v) => {
      const heart = d.querySelector("heart");
      if (!heart) return;
      const want = items(v);
      const old = [...heart.querySelectorAll(":scope > heartbeat")];
      old.filter((h) => !want.includes(h.getAttribute("name"))).forEach((h) => h.remove());
      for (const n of want.filter((n) => !old.some((h) => h.getAttribute("name") === n))) add(d, heart, "heartbeat", { name: n, ident: n });
    },
  ],
  [
    "procs",
    "Monitored processes (one name per line: restarted when missing)",
    (d) => [...d.querySelectorAll("errd > proc")].map((p) => p.getAttribute("name")).join("\n"),
    (d, v) => {
      const svc = d.querySelector("service");
      if (!svc) return;
      const want = items(v);
      const errd = svc.querySelector(":scope > errd") || (want.length ? add(d, svc, "errd", {}) : null);
      if (!errd) return;
      const old = [...errd.querySelectorAll(":scope > proc")];
      old.filter((p) => !want.includes(p.getAttribute("name"))).forEach((p) => p.remove());
      for (const n of want.filter((n) => !old.some((p) => p.getAttribute("name") === n))) add(d, errd, "proc", { name: n, atleast: "1", action: "restart", class: "prim" });
    },
  ],
  [
    "tcp",
    "TCP checkers (address:port, one per line: the application answers there)",
    (d) => [...d.querySelectorAll("check > tcp")].map((t) => `${t.querySelector("to")?.getAttribute("addr")}:${t.querySelector("to")?.getAttribute("port")}`).join("\n"),
    (d, v) => {
      const svc = d.querySelector("service");
      if (!svc) return;
      const want = items(v);
      const check = svc.querySelector(":scope > check") || (want.length ? add(d, svc, "check", {}) : null);
      if (!check) return;
      const key = (t) => `${t.querySelector("to")?.getAttribute("addr")}:${t.querySelector("to")?.getAttribute("port")}`;
      const old = [...check.querySelectorAll(":scope > tcp")];
      old.filter((t) => !want.includes(key(t))).forEach((t) => t.remove());
      want.filter((w) => !old.some((t) => key(t) === w)).forEach((w, i) => {
        const at = w.lastIndexOf(":");
        const addr = w.slice(0, at).replace(/^\[|\]$/g, "");
        const tcp = add(d, check, "tcp", { ident: `c_tcp_${old.length + i + 1}`, when: "prim" });
        add(d, tcp, "to", { addr, port: w.slice(at + 1), interval: "10", timeout: "5" });
      });
    },
  ],
  [
    "witness",
    "Split-brain witnesses (IP addresses pinged when every heartbeat is lost; empty: none)",
    (d) => d.querySelector("check > splitbrain")?.getAttribute("arg") || "",
    (d, v) => {
      const svc = d.querySelector("service");
      if (!svc) return;
      const sb = d.querySelector("check > splitbrain");
      const arg = items(v).join(" ");
      if (!arg) return sb && sb.remove();
      if (sb) return sb.setAttribute("arg", arg);
      const check = svc.querySelector(":scope > check") || add(d, svc, "check", {});
      add(d, check, "splitbrain", { ident: "witness", exec: "ping", arg });
    },
  ],
  ["boot", "Start at boot (on, off, auto, ignore)", (d) => d.querySelector("service")?.getAttribute("boot") || "ignore", (d, v) => d.querySelector("service")?.setAttribute("boot", v)],
  ["pulse", "Heartbeat period (e.g. 700ms)", (d) => d.querySelector("heart")?.getAttribute("pulse"), (d, v) => v && d.querySelector("heart")?.setAttribute("pulse", v)],
  ["timeout", "Heartbeat timeout (e.g. 30000ms)", (d) => d.querySelector("heart")?.getAttribute("timeout"), (d, v) => v && d.querySelector("heart")?.setAttribute("timeout", v)],
];

async function moduleEditor(name) {
  let source = view.find((n) => n.reachable)?.node || nodesOf()[0];
  let files = {};
  let original = {};
  const xml = editor("userconfig", "userconfig.xml");
  const script = editor("script", "script");
  const scripts = el("select", { id: "scripts", "aria-label": "Script" });
  const errors = el("ul", { class: "errors", id: "config-errors" });
  const results = el("div", { id: "apply-results" });
  const history = el("ul", { id: "history" });
  const form = el("form", { class: "stack", id: "settings" });
  const picker = nodePicker("apply");
  const inputs = {};
  let shownScript = null;

  const keepScript = () => {
    if (shownScript) files[shownScript] = script.area.value;
  };
  const showScript = (path) => {
    keepScript();
    shownScript = path || null;
    script.set(path ? files[path] || "" : "");
  };
  const fillScripts = () => {
    const list = Object.keys(files).filter((p) => p.startsWith("bin/")).sort();
    scripts.replaceChildren(...list.map((p) => el("option", { value: p, text: p.slice(4) })));
    showScript(list.includes(shownScript) ? shownScript : list[0]);
    if (shownScript) scripts.value = shownScript;
  };
  const fillForm = () => {
    const doc = new DOMParser().parseFromString(xml.area.value, "application/xml");
    const broken = doc.querySelector("parsererror");
    form.replaceChildren();
    if (broken) {
      form.append(el("p", { class: "bad", text: "userconfig.xml does not parse: fix it below first." }));
      return;
    }
    for (const [key, label, read] of FIELDS) {
      const value = read(doc) ?? "";
      const input = ["dirs", "heartbeats", "procs", "tcp"].includes(key) ? el("textarea", { id: `f-${key}`, rows: "3" }) : el("input", { id: `f-${key}` });
      input.value = value;
      inputs[key] = input;
      form.append(el("label", { for: `f-${key}`, text: label }), input);
    }
    form.append(el("p", { class: "muted", text: "Other settings (failover rules, custom checkers, a process's options) are edited in the XML below." }));
    form.append(el("button", { type: "submit", text: "Write into the XML" }));
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const doc = new DOMParser().parseFromString(xml.area.value, "application/xml");
    for (const [key, , , write] of FIELDS) if (inputs[key]) write(doc, inputs[key].value.trim());
    xml.set(new XMLSerializer().serializeToString(doc));
    toast("userconfig.xml updated: check or apply it");
  });
  const changes = () => {
    keepScript();
    files[USERCONFIG] = xml.area.value;
    const out = {};
    for (const [p, t] of Object.entries(files)) if (original[p] !== t) out[p] = t;
    for (const p of Object.keys(original)) if (!(p in files)) out[p] = null;
    return out;
  };
  const showErrors = (checked) => {
    const list = checked && Array.isArray(checked.errors) ? checked.errors : [];
    const warn = checked && Array.isArray(checked.warnings) ? checked.warnings : [];
    xml.mark(list.filter((e) => e.file.endsWith("userconfig.xml")).map((e) => e.pos.line));
    errors.replaceChildren(
      ...list.map((e) => el("li", { class: "bad" }, el("button", { type: "button", class: "linkish", text: `${e.file}:${e.pos.line}:${e.pos.column}: ${e.message}`, onclick: () => xml.goto(e.pos.line, e.pos.column) }))),
      ...warn.map((e) => el("li", { class: "muted", text: `warning: ${e.file}:${e.pos.line}:${e.pos.column}: ${e.message}` })),
    );
  };
  async function load() {
    const r = await api("GET", `/api/v1.0/nodes/${enc(source)}/config/modules/${enc(name)}`);
    if (!r.ok) {
      errors.replaceChildren(el("li", { class: "bad", text: why(r) }));
      return;
    }
    files = { ...r.data.files };
    original = { ...r.data.files };
    xml.set(files[USERCONFIG] || "");
    fillForm();
    fillScripts();
    const h = await api("GET", `/api/v1.0/nodes/${enc(source)}/config/modules/${enc(name)}/history`);
    history.replaceChildren(
      ...(h.ok ? h.data : []).map((k) =>
        el(
          "li",
          {},
          `${new Date(k.applied * 1000).toISOString().replace("T", " ").slice(0, 19)} by ${k.by} `,
          el("button", {
            type: "button",
            text: `Restore on ${source}`,
            onclick: async () => {
              if (!window.confirm(`Apply that configuration of ${name} again on ${source}?`)) return;
              const r2 = await api("POST", `/api/v1.0/nodes/${enc(source)}/config/modules/${enc(name)}/history/${k.id}/restore`);
              toast(r2.ok ? `${source}: restored` : `${source}: ${why(r2)}`, !r2.ok);
              if (r2.ok) load();
            },
          }),
        ),
      ),
    );
  }
  const from = el("select", { id: "source", "aria-label": "Read from node" }, nodesOf().map((n) => el("option", { value: n, text: n })));
  from.value = source;
  from.addEventListener("change", () => {
    source = from.value;
    load();
  });
  scripts.addEventListener("change", () => showScript(scripts.value));
  xml.area.addEventListener("change", fillForm);

  show(
    el("h1", { text: `Module ${name}: configuration` }),
    el("div", { class: "toolbar" }, el("label", { for: "source", text: "Read from " }), from),
    el("section", {}, el("h2", { text: "Settings" }), form),
    el("section", {}, el("h2", { text: "userconfig.xml" }), xml.box, errors),
    el(
      "section",
      {},
      el("h2", { text: "Scripts" }),
      el(
        "div",
        { class: "toolbar" },
        scripts,
        el("button", {
          type: "button",
          text: "New script",
          onclick: () => {
            const n = window.prompt("Script name (e.g. start_prim)");
            if (!n || !/^[A-Za-z0-9_.-]+$/.test(n)) return;
            keepScript();
            files[`bin/${n}`] = files[`bin/${n}`] || "#!/bin/sh\n";
            shownScript = `bin/${n}`;
            fillScripts();
          },
        }),
        el("button", {
          type: "button",
          text: "Delete script",
          onclick: () => {
            if (!shownScript || !window.confirm(`Delete ${shownScript}?`)) return;
            delete files[shownScript];
            shownScript = null;
            fillScripts();
          },
        }),
      ),
      script.box,
    ),
    el(
      "section",
      {},
      el("h2", { text: "Check and apply" }),
      el("p", { class: "muted", text: "A configuration is applied only while the module is stopped on that node." }),
      picker.box,
      el(
        "div",
        { class: "toolbar" },
        el("button", {
          type: "button",
          id: "check",
          text: "Check",
          onclick: async () => {
            const r = await api("POST", `/api/v1.0/nodes/${enc(source)}/config/modules/${enc(name)}/check`, { files: changes() });
            showErrors(r.data);
            toast(r.ok ? "the configuration is valid" : "the configuration has errors", !r.ok);
          },
        }),
        el("button", {
          type: "button",
          id: "apply",
          text: "Save and apply",
          onclick: async () => {
            const chosen = picker.chosen();
            if (!chosen.length) return;
            const r = await api("PUT", `/api/v1.0/nodes/${chosen.map(enc).join(",")}/config/modules/${enc(name)}`, { files: changes() });
            const answers = Array.isArray(r.data) ? r.data : [{ node: chosen[0], status: r.status, body: r.data, error: null }];
            const withErrors = answers.find((a) => a.body && Array.isArray(a.body.errors) && a.body.errors.length);
            showErrors(withErrors ? withErrors.body : null);
            results.replaceChildren(perNode(answers));
          },
        }),
      ),
      results,
    ),
    el("section", {}, el("h2", { text: "Last applied configurations" }), history),
    el(
      "section",
      {},
      el("h2", { text: "Package" }),
      el("div", { class: "toolbar" }, el("a", { class: "button", href: `/api/v1.0/nodes/${enc(source)}/modules/${enc(name)}/package`, download: `${name}.safe`, text: "Download as .safe" }), el("button", {
        type: "button",
        text: "Uninstall",
        onclick: async () => {
          const chosen = picker.chosen();
          if (!chosen.length || !window.confirm(`Uninstall ${name} from ${chosen.join(", ")}?`)) return;
          const r = await api("POST", `/api/v1.0/nodes/${chosen.map(enc).join(",")}/modules/${enc(name)}/uninstall`);
          results.replaceChildren(Array.isArray(r.data) ? perNode(r.data) : el("p", { class: r.ok ? "good" : "bad", text: r.ok ? "uninstalled" : why(r) }));
        },
      })),
    ),
  );
  await load();
}
