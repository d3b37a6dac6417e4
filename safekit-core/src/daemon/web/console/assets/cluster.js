// The cluster wizard (Admin): each node's addresses on each network, the
// typed addresses checked with the cluster key (reachable, and the name
// that node answers as), cluster.xml written, checked, and saved on every
// node with each node's answer.

import { api, el, show, toast, why } from "/console/app.js";
import { editor, perNode } from "/console/widgets.js";

// cluster.xml from the wizard: one <lan> per network, each node with its
// address on it (a node without an address on a network is left out of it).
function clusterXml(lans, rows) {
  const lan = (name, i) => {
    const nodes = rows.filter((r) => r.name && r.addrs[i]).map((r) => `      <node name="${esc(r.name)}" addr="${esc(r.addrs[i])}"/>`);
    return `    <lan name="${esc(name)}">\n${nodes.join("\n")}\n    </lan>`;
  };
  return `<cluster>\n  <lans>\n${lans.map(lan).join("\n")}\n  </lans>\n</cluster>\n`;
}

const esc = (s) => s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");

export async function clusterPage() {
  const xml = editor("cluster-xml", "cluster.xml");
  const errors = el("ul", { class: "errors", id: "cluster-errors" });
  const results = el("div", { id: "cluster-results" });
  const head = el("tr");
  const rows = el("tbody");
  // The networks are columns: the first one (addresses probed, the web
  // service's) and extra ones for heartbeats or replication.
  const lanInputs = [];
  const addrInput = (i, value = "") => el("input", { value, "aria-label": `Address on network ${i + 1}`, class: i === 0 ? "node-addr lan-addr" : "lan-addr", "data-lan": String(i) });
  const drawHead = () =>
    head.replaceChildren(el("th", { text: "Node" }), ...lanInputs.map((l) => el("th", {}, l)), el("th", { text: "Check" }), el("th", { text: "" }));
  const addLan = (name) => {
    const i = lanInputs.length;
    lanInputs.push(el("input", { value: name, "aria-label": `Network ${i + 1} name`, class: "lan-name", id: i === 0 ? "lan" : `lan-${i}` }));
    for (const tr of rows.querySelectorAll("tr")) tr.querySelector(".probe").before(el("td", {}, addrInput(i)));
    drawHead();
  };
  const addRow = (name = "", addrs = []) => {
    const n = el("input", { value: name, "aria-label": "Node name", class: "node-name" });
    rows.append(
      el(
        "tr",
        {},
        el("td", {}, n),
        lanInputs.map((_, i) => el("td", {}, addrInput(i, addrs[i] || ""))),
        el("td", { class: "probe" }),
        el("td", {}, el("button", { type: "button", text: "Remove", onclick: (e) => e.target.closest("tr").remove() })),
      ),
    );
  };
  const readRows = () =>
    [...rows.querySelectorAll("tr")].map((tr) => ({
      name: tr.querySelector(".node-name").value.trim(),
      addrs: [...tr.querySelectorAll(".lan-addr")].map((a) => a.value.trim()),
    }));
  // Each typed address of the first network asked, with the cluster key, which node it is.
  const probe = async () => {
    const trs = [...rows.querySelectorAll("tr")].filter((tr) => tr.querySelector(".node-addr").value.trim());
    if (!trs.length) return toast("type the nodes' addresses first", true);
    const r = await api("POST", "/api/v1.0/cluster/probe", { addresses: trs.map((tr) => tr.querySelector(".node-addr").value.trim()) });
    if (!r.ok) return toast(why(r), true);
    trs.forEach((tr, i) => {
      const p = r.data[i];
      const typed = tr.querySelector(".node-name").value.trim();
      const cell = tr.querySelector(".probe");
      if (!p.reachable) {
        cell.className = "probe bad";
        cell.textContent = `unreachable: ${p.error}`;
      } else if (typed && p.node !== typed) {
        cell.className = "probe bad";
        cell.textContent = `answers as ${p.node}, not ${typed}`;
      } else {
        cell.className = "probe good";
        cell.textContent = `${p.node} (safekit ${p.version})`;
        if (!typed) tr.querySelector(".node-name").value = p.node;
      }
    });
  };
  const showErrors = (checked) => {
    const list = checked && Array.isArray(checked.errors) ? checked.errors : [];
    xml.mark(list.map((e) => e.pos.line));
    errors.replaceChildren(...list.map((e) => el("li", {}, el("button", { type: "button", class: "linkish", text: `cluster.xml:${e.pos.line}:${e.pos.column}: ${e.message}`, onclick: () => xml.goto(e.pos.line, e.pos.column) }))));
  };
  const check = async () => {
    const r = await api("POST", "/api/v1.0/config/cluster/check", { text: xml.area.value });
    showErrors(r.data);
    toast(r.ok ? "cluster.xml is valid" : why(r) === `HTTP ${r.status}` ? "cluster.xml has errors" : why(r), !r.ok);
  };
  show(
    el("h1", { text: "Cluster configuration" }),
    el("p", { text: "The nodes and their addresses on each network (the first one carries the web service; add networks for heartbeats or replication). Saved on every node; each daemon reads it when it restarts." }),
    el("table", { id: "cluster-nodes" }, el("thead", {}, head), rows),
    el(
      "div",
      { class: "toolbar" },
      el("button", { type: "button", text: "Add a node", onclick: () => addRow() }),
      el("button", { type: "button", id: "add-lan", text: "Add a network", onclick: () => addLan(`lan${lanInputs.length + 1}`) }),
      el("button", { type: "button", id: "probe", text: "Check the addresses", onclick: probe }),
      el("button", { type: "button", id: "to-xml", text: "Write into the XML", onclick: () => xml.set(clusterXml(lanInputs.map((l) => l.value.trim()), readRows())) }),
    ),
    el("h2", { text: "cluster.xml" }),
    xml.box,
    errors,
    el(
      "div",
      { class: "toolbar" },
      el("button", { type: "button", id: "cluster-check", text: "Check", onclick: check }),
      el("button", {
        type: "button",
        id: "cluster-save",
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
  xml.set(r.ok ? r.data.text : clusterXml(["default"], []));
  const doc = new DOMParser().parseFromString(xml.area.value, "application/xml");
  const lans = [...doc.querySelectorAll("lans > lan")];
  for (const l of lans.length ? lans : [null]) addLan(l ? l.getAttribute("name") || "" : "default");
  const names = [...new Set(lans.flatMap((l) => [...l.querySelectorAll(":scope > node")].map((n) => n.getAttribute("name") || "")))];
  for (const name of names) addRow(name, lans.map((l) => l.querySelector(`:scope > node[name="${CSS.escape(name)}"]`)?.getAttribute("addr") || ""));
  if (!rows.children.length) {
    addRow();
    addRow();
  }
}
