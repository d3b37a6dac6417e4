// Pieces the configuration pages share: a text editor with line numbers
// and error marks, the list of each node's answer to a fan-out call, and
// the choice of nodes a change goes to.

import { el, view } from "/console/app.js";

export const nodesOf = () => view.map((n) => n.node);

// A text area with line numbers; `mark(lines)` flags lines with errors.
export function editor(id, label) {
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
export function perNode(answers, ok = (a) => a.status >= 200 && a.status < 300) {
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

export function nodePicker(name) {
  const boxes = nodesOf().map((n) => el("input", { type: "checkbox", checked: true, value: n, id: `${name}-${n}` }));
  const box = el(
    "fieldset",
    { class: "nodes" },
    el("legend", { text: "Nodes" }),
    boxes.map((b) => el("label", { for: b.id }, b, ` ${b.value}`)),
  );
  return { box, chosen: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}
