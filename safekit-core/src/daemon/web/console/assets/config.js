// Configuration (Admin): the cluster (nodes, addresses, cluster.xml saved
// on every node), new modules from a package, and one module's files: a
// form for the common settings, the raw userconfig.xml with the reader's
// errors at their line, the scripts; check, apply to the chosen nodes with
// each node's answer, restore one of the last three, download, uninstall.

import { api, can, el, enc, show, toast, view, why } from "/console/app.js";

const USERCONFIG = "conf/userconfig.xml";

const nodesOf = () => view.map((n) => n.node);

// A text area with line numbers; `mark(lines)` flags lines with errors.
function editor(id, label) {
  const gutter = el("pre", { class: "gutter", "aria-hidden": "true" });
  const area = el("textarea", { id, spellcheck: "false", "aria-label": label, wrap: "off" });
  let marked = new Set();
  const draw = () => {
    const n = area.value.split("\n").length;
    const lines = [];
    for (let i = 1; i <= n; i++) lines.push(el("span", { class: marked.has(i) ? "err" : "", "data-line": String(i), text: `${i}\n` }));
    gutter.replaceChildren(...lines);
    gutter.scrollTop = area.scrollTop;
  };
  area.addEventListener("input", draw);
  area.addEventListener("scroll", () => (gutter.scrollTop = area.scrollTop));
  return {
    area,
    box: el("div", { class: "editor" }, gutter, area),
    set(text) {
      area.value = text;
      marked = new Set();
      draw();
    },
    mark(lines) {
      marked = new Set(lines);
      draw();
    },
    goto(line, column) {
      const rows = area.value.split("\n");
      let at = 0;
      for (let i = 0; i < line - 1 && i < rows.length; i++) at += rows[i].length + 1;
      at += Math.max(0, (column || 1) - 1);
      area.focus();
      area.setSelectionRange(at, at);
      const height = area.scrollHeight / Math.max(rows.length, 1);
      area.scrollTop = Math.max(0, (line - 3) * height);
    },
  };
}

// A fan-out's answers ([{node, status, body, error}]) as a list.
function perNode(answers, ok = (a) => a.status >= 200 && a.status < 300) {
  if (!Array.isArray(answers)) return el("p", { class: "error", text: JSON.stringify(answers) });
  return el(
    "ul",
    { class: "per-node" },
    answers.map((a) => {
      const good = a.status !== null && ok(a);
      let text = good ? "done" : a.error || (a.body && a.body.error) || `HTTP ${a.status}`;
      if (!good && a.body && Array.isArray(a.body.errors)) {
        text = a.body.errors.map((e) => `${e.file}:${e.pos.line}:${e.pos.column}: ${e.message}`).join("; ");
      }
      return el("li", { class: good ? "good" : "bad", "data-node": a.node }, el("strong", { text: `${a.node}: ` }), text);
    }),
  );
}

function nodePicker(name) {
  const boxes = nodesOf().map((n) => el("input", { type: "checkbox", checked: true, value: n, id: `${name}-${n}` }));
  const box = el(
    "fieldset",
    { class: "nodes" },
    el("legend", { text: "Nodes" }),
    boxes.map((b) => el("label", { for: b.id }, b, ` ${b.value}`)),
  );
  return { box, chosen: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}

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
  const results = el("div");
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

// ---------- the cluster ----------

function clusterXml(lan, rows) {
  const nodes = rows.filter((r) => r.name && r.addr).map((r) => `      <node name="${esc(r.name)}" addr="${esc(r.addr)}"/>`);
  return `<cluster>\n  <lans>\n    <lan name="${esc(lan)}">\n${nodes.join("\n")}\n    </lan>\n  </lans>\n</cluster>\n`;
}

const esc = (s) => s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");

async function clusterPage() {
  const xml = editor("cluster-xml", "cluster.xml");
  const errors = el("ul", { class: "errors", id: "cluster-errors" });
  const results = el("div", { id: "cluster-results" });
  const lan = el("input", { id: "lan", value: "default", "aria-label": "Network name" });
  const rows = el("tbody");
  const addRow = (name = "", addr = "") => {
    const n = el("input", { value: name, "aria-label": "Node name", class: "node-name" });
    const a = el("input", { value: addr, "aria-label": "Node address", class: "node-addr" });
    rows.append(el("tr", {}, el("td", {}, n), el("td", {}, a), el("td", {}, el("button", { type: "button", text: "Remove", onclick: (e) => e.target.closest("tr").remove() }))));
  };
  const readRows = () => [...rows.querySelectorAll("tr")].map((tr) => ({ name: tr.querySelector(".node-name").value.trim(), addr: tr.querySelector(".node-addr").value.trim() }));
  const showErrors = (checked) => {
    const list = checked && Array.isArray(checked.errors) ? checked.errors : [];
    xml.mark(list.map((e) => e.pos.line));
    errors.replaceChildren(...list.map((e) => el("li", {}, el("button", { type: "button", class: "linkish", text: `cluster.xml:${e.pos.line}:${e.pos.column}: ${e.message}`, onclick: () => xml.goto(e.pos.line, e.pos.column) }))));
  };
  show(
    el("h1", { text: "Cluster configuration" }),
    el("p", { text: "The nodes and their addresses on each network. Saved on every node; each daemon reads it when it restarts." }),
    el("label", { for: "lan", text: "Network" }),
    lan,
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Node" }), el("th", { text: "Address" }), el("th", { text: "" }))), rows),
    el("div", { class: "toolbar" }, el("button", { type: "button", text: "Add a node", onclick: () => addRow() }), el("button", { type: "button", text: "Write into the XML", onclick: () => xml.set(clusterXml(lan.value, readRows())) })),
    el("h2", { text: "cluster.xml" }),
    xml.box,
    errors,
    el(
      "div",
      { class: "toolbar" },
      el("button", {
        type: "button",
        text: "Check",
        onclick: async () => {
          const r = await api("POST", "/api/v1.0/config/cluster/check", { text: xml.area.value });
          showErrors(r.data);
          toast(r.ok ? "cluster.xml is valid" : why(r) === `HTTP ${r.status}` ? "cluster.xml has errors" : why(r), !r.ok);
        },
      }),
      el("button", {
        type: "button",
        text: "Save and apply to all nodes",
        onclick: async () => {
          const r = await api("PUT", "/api/v1.0/nodes/*/config/cluster", { text: xml.area.value });
          const first = Array.isArray(r.data) ? r.data.find((a) => a.body && a.body.errors && a.body.errors.length) : null;
          showErrors(first ? first.body : null);
          results.replaceChildren(Array.isArray(r.data) ? perNode(r.data) : el("p", { class: "bad", text: why(r) }));
        },
      }),
    ),
    results,
  );
  const r = await api("GET", "/api/v1.0/config/cluster");
  xml.set(r.ok ? r.data.text : clusterXml("default", []));
  const doc = new DOMParser().parseFromString(xml.area.value, "application/xml");
  const firstLan = doc.querySelector("lan");
  if (firstLan) lan.value = firstLan.getAttribute("name") || "default";
  for (const n of doc.querySelectorAll("lan:first-of-type > node")) addRow(n.getAttribute("name") || "", n.getAttribute("addr") || "");
  if (!rows.children.length) {
    addRow();
    addRow();
  }
}

// ---------- one module ----------

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
      const input = key === "dirs" ? el("textarea", { id: `f-${key}`, rows: "3" }) : el("input", { id: `f-${key}` });
      input.value = value;
      inputs[key] = input;
      form.append(el("label", { for: `f-${key}`, text: label }), input);
    }
    const procs = [...doc.querySelectorAll("errd > proc")].map((p) => p.getAttribute("name")).filter(Boolean);
    form.append(el("p", { class: "muted", text: procs.length ? `Monitored processes: ${procs.join(", ")} (edit them in the XML)` : "No monitored process (errd)." }));
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
