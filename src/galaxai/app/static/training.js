// Training view: one small SVG chart per numeric field of stats.jsonl, the slider's checkpoint
// marked by a vertical line.
import { call } from "./api.js";

const SKIP = new Set(["iteration", "time", "elapsed", "n", "event", "phase"]);
const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  parent?.append(node);
  return node;
}

function chart(name, points, iteration) {
  const [w, h, pad] = [360, 160, 34];
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x) => pad + ((x - x0) / ((x1 - x0) || 1)) * (w - pad - 8);
  const sy = (y) => h - 18 - ((y - y0) / ((y1 - y0) || 1)) * (h - 30);
  const box = document.createElement("div");
  box.className = "chart";
  box.innerHTML = `<h3>${name}</h3>`;
  const svg = el("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": name }, box);
  el("line", { class: "axis", x1: pad, x2: w - 8, y1: h - 18, y2: h - 18 }, svg);
  el("line", { class: "axis", x1: pad, x2: pad, y1: 8, y2: h - 18 }, svg);
  el("polyline", { class: "line", points: points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" ") }, svg);
  if (iteration !== null && iteration >= x0 && iteration <= x1) {
    el("line", { class: "mark", x1: sx(iteration), x2: sx(iteration), y1: 8, y2: h - 18,
      "data-iteration": iteration }, svg);
  }
  for (const [text, x, y, anchor] of [[y1.toPrecision(3), pad - 3, 14, "end"],
    [y0.toPrecision(3), pad - 3, h - 20, "end"], [x0, pad, h - 4, "start"], [x1, w - 8, h - 4, "end"],
    ["iteration", (w + pad) / 2, h - 4, "middle"]]) {
    el("text", { x, y, "text-anchor": anchor }, svg).textContent = text;
  }
  return box;
}

/** Render the run's loss and metric curves into `main`. */
export async function renderTraining(main, ctx) {
  const { records } = await call(`/api/runs/${encodeURIComponent(ctx.state.run)}/stats`);
  const series = {};
  for (const r of records) {
    for (const [key, value] of Object.entries(r)) {
      if (SKIP.has(key) || typeof value !== "number" || !Number.isFinite(value)) continue;
      (series[key] ??= []).push([r.iteration, value]);
    }
  }
  const grid = document.createElement("div");
  grid.className = "charts";
  grid.dataset.testid = "charts";
  for (const [key, points] of Object.entries(series)) {
    if (points.length > 1) grid.append(chart(key, points, ctx.state.iteration));
  }
  main.replaceChildren(grid);
  if (!grid.children.length) main.textContent = "stats.jsonl has no curve yet.";
  ctx.progress.reset();
}
