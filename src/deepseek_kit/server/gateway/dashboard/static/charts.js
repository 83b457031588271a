// Bar charts drawn as SVG by hand. Why not a chart library: the dashboard must work offline with
// no build step and no CDN, and two small bar-chart shapes do not justify vendoring a library of
// hundreds of kilobytes. Every bar carries data-label and data-value so tests (and people with a
// screen reader, through its <title>) can read the numbers.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// Horizontal bars, one row per item: label on the left, bar, value text on the right.
// items: [{label, value, text}]
function hbarChart(container, items, emptyText) {
  const rowH = 22, labelW = 110, textW = 140, width = 420;
  const height = Math.max(1, items.length) * rowH + 6;
  const svg = svgEl("svg", {viewBox: `0 0 ${width} ${height}`, role: "img", class: "hbar"});
  if (!items.length) {
    svg.appendChild(svgEl("text", {x: 4, y: 16, class: "empty"}, emptyText || "no data yet"));
  }
  const max = Math.max(0, ...items.map((i) => i.value));
  const span = width - labelW - textW;
  items.forEach((item, n) => {
    const y = n * rowH + 4;
    const w = max > 0 ? Math.max(item.value > 0 ? 2 : 0, (item.value / max) * span) : 0;
    svg.appendChild(svgEl("text", {x: 0, y: y + 13, class: "axis"}, clip(item.label, 16)));
    const bar = svgEl("rect", {x: labelW, y: y, width: w.toFixed(1), height: rowH - 6,
      class: item.value > 0 ? "bar" : "bar zero", "data-label": item.label, "data-value": item.value});
    bar.appendChild(svgEl("title", {}, `${item.label}: ${item.text}`));
    svg.appendChild(bar);
    svg.appendChild(svgEl("text", {x: labelW + w + 6, y: y + 13, class: "value"}, item.text));
  });
  container.replaceChildren(svg);
}

// Vertical columns over a time axis (days, or 10-second buckets); a few axis labels underneath.
// items: [{label, value, text}]
function columnChart(container, items, axisEvery, width) {
  width = width || 420;
  const height = 150, bottom = 20, top = 16;
  const svg = svgEl("svg", {viewBox: `0 0 ${width} ${height}`, role: "img", class: "columns"});
  const max = Math.max(0, ...items.map((i) => i.value));
  const slot = width / Math.max(1, items.length);
  const plotH = height - bottom - top;
  svg.appendChild(svgEl("line", {x1: 0, x2: width, y1: height - bottom, y2: height - bottom}));
  items.forEach((item, n) => {
    const h = max > 0 ? (item.value / max) * plotH : 0;
    const x = n * slot + slot * 0.15;
    const bar = svgEl("rect", {x: x.toFixed(1), y: (height - bottom - h).toFixed(1),
      width: (slot * 0.7).toFixed(1), height: h.toFixed(1), class: item.value > 0 ? "bar" : "bar zero",
      "data-label": item.label, "data-value": item.value});
    bar.appendChild(svgEl("title", {}, `${item.label}: ${item.text}`));
    svg.appendChild(bar);
    if (item.value > 0 && items.length <= 31) {
      svg.appendChild(svgEl("text", {x: (x + slot * 0.35).toFixed(1), y: (height - bottom - h - 3).toFixed(1),
        "text-anchor": "middle", class: "value"}, item.short || item.text));
    }
    if ((items.length - 1 - n) % axisEvery === 0) {  // counted from the newest, which is always labelled
      svg.appendChild(svgEl("text", {x: (n * slot + slot / 2).toFixed(1), y: height - 5,
        "text-anchor": "middle", class: "axis"}, item.axis || item.label));
    }
  });
  container.replaceChildren(svg);
}

function clip(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "\u2026" : text;
}
