// streamq dashboard: keeps the overview table and the charts live by polling the JSON API.
// Values are written with textContent only, never as HTML: whatever a job holds stays text.
"use strict";

(function () {
  const table = document.getElementById("overview");
  if (!table) return;
  const status = document.getElementById("status");
  const charts = document.getElementById("charts");
  const every = Math.max(0.2, parseFloat(status.dataset.refresh) || 2) * 1000;
  const FIELDS = ["waiting", "scheduled", "held", "in_flight", "oldest_in_flight_s", "dead", "processed",
    "failed", "retried", "cancelled", "consumers"];
  const SVG = "http://www.w3.org/2000/svg";

  function age(s) {
    if (s === null || s === undefined) return "-";
    if (s < 1) return Math.round(s * 1000) + "ms";
    if (s < 120) return s.toFixed(1) + "s";
    if (s < 7200) return (s / 60).toFixed(1) + "m";
    return (s / 3600).toFixed(1) + "h";
  }

  function cellText(row, field) {
    if (field === "oldest_in_flight_s") return age(row[field]);
    if (field === "consumers") return String(Object.keys(row[field]).length);
    const levels = row.waiting_by_priority;
    if (field === "waiting" && levels && Object.keys(levels).length) {  // as _pages writes it
      return row[field] + " (" + Object.entries(levels).map(([k, n]) => k[0] + n).join(" ") + ")";
    }
    return String(row[field]);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function link(href, text) {
    return el("a", { href: href }, text);
  }

  function renderTable(rows) {
    const body = el("tbody");
    for (const row of rows) {
      const type = encodeURIComponent(row.type);
      const tr = el("tr", { "data-type": row.type });
      const name = el("td", { "data-field": "type" });
      name.appendChild(link("/pending/" + type, row.type));
      if (row.paused) {  // as _pages.paused_badge writes it
        name.appendChild(document.createTextNode(" "));
        name.appendChild(el("span", { class: "badge paused",
          title: "paused" + (row.pause_reason ? ": " + row.pause_reason : "") }, "paused"));
      }
      tr.appendChild(name);
      for (const field of FIELDS) {
        const td = el("td", { "data-field": field });
        const text = cellText(row, field);
        if (field === "in_flight") td.appendChild(link("/pending/" + type, text));
        else if (field === "dead") td.appendChild(link("/dead/" + type, text));
        else td.textContent = text;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    if (!rows.length) {
      const tr = el("tr", { class: "empty" });
      tr.appendChild(el("td", { colspan: String(FIELDS.length + 1) },
        "no job types on this server yet"));
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // One chart: lines over the samples there are (at most the window), newest at the right.
  function draw(box, title, t, lines, windowS, stepS) {
    const W = 460, H = 150, L = 44, R = 8, T = 22, B = 20;
    const now = t.length ? t[t.length - 1] : Date.now() / 1000;
    const span = t.length > 1 ? Math.min(windowS, Math.max(now - t[0], 4 * stepS)) : windowS;
    let max = 0;
    for (const line of lines) for (const v of line.values) max = Math.max(max, v);
    const top = max > 0 ? max * 1.1 : 1;
    const x = (ts) => L + (W - L - R) * (1 - (now - ts) / span);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
    root.appendChild(svg("title", {}, title));
    root.appendChild(svg("text", { x: L, y: 14, class: "chart-title" }, title));
    root.appendChild(svg("line", { x1: L, y1: y(0), x2: W - R, y2: y(0), class: "axis" }));
    root.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    root.appendChild(svg("text", { x: L - 4, y: y(top) + 4, class: "tick", "text-anchor": "end" },
      top >= 10 ? top.toFixed(0) : top.toFixed(1)));
    root.appendChild(svg("text", { x: L - 4, y: y(0) + 4, class: "tick", "text-anchor": "end" }, "0"));
    root.appendChild(svg("text", { x: L, y: H - 4, class: "tick" }, "-" + age(span)));
    root.appendChild(svg("text", { x: W - R, y: H - 4, class: "tick", "text-anchor": "end" }, "now"));
    let lx = W - R;
    for (const line of lines.slice().reverse()) {
      const label = svg("text", { x: lx, y: 14, class: "legend " + line.cls, "text-anchor": "end" },
        line.label + " " + (line.values.length ? +line.values[line.values.length - 1].toFixed(2) : 0));
      root.appendChild(label);
      lx -= 10 + 7 * (line.label.length + 6);
      if (line.values.length < 2) continue;
      const pts = line.values.map((v, i) => x(t[i]).toFixed(1) + "," + y(v).toFixed(1));
      root.appendChild(svg("polyline", { points: pts.join(" "), class: "series " + line.cls }));
    }
    box.replaceChildren(root);
  }

  function renderCharts(history) {
    const seen = new Set();
    for (const [type, s] of Object.entries(history.types)) {
      seen.add(type);
      let card = Array.from(charts.children).find((c) => c.dataset.type === type);
      if (!card) {
        card = el("div", { class: "card", "data-type": type });
        card.appendChild(el("h2", {}, type));
        card.appendChild(el("div", { class: "rates" }));
        card.appendChild(el("div", { class: "levels" }));
        charts.appendChild(card);
      }
      draw(card.querySelector(".rates"), "jobs per second", s.t, [
        { label: "processed/s", values: s.processed_per_s, cls: "ok" },
        { label: "failed/s", values: s.failed_per_s, cls: "bad" },
      ], history.window_s, history.interval_s);
      draw(card.querySelector(".levels"), "jobs", s.t, [
        { label: "waiting", values: s.waiting, cls: "wait" },
        { label: "in flight", values: s.in_flight, cls: "busy" },
      ], history.window_s, history.interval_s);
    }
    for (const card of Array.from(charts.children)) {
      if (!seen.has(card.dataset.type)) card.remove();
    }
  }

  async function getJSON(path) {
    const reply = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await reply.json();
    if (!reply.ok) throw new Error(body.error || reply.statusText);
    return body;
  }

  async function tick() {
    try {
      const [rows, history] = await Promise.all([getJSON("/api/stats"), getJSON("/api/history")]);
      renderTable(rows);
      renderCharts(history);
      status.className = "status";
      status.textContent = "updated " + new Date().toLocaleTimeString() + "; live every " +
        every / 1000 + "s" + (history.error ? " (sampling failed: " + history.error + ")" : "");
    } catch (err) {
      status.className = "status error";
      status.textContent = "cannot update: " + err.message;
    } finally {
      setTimeout(tick, every);
    }
  }

  tick();
})();
