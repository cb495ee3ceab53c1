// Units view: GAN Dissection of the generator at the slider's checkpoint. A layer picker, the
// sortable unit table (label, IoU, IQR), the gallery of the clicked unit, and ablate / insert
// controls that send the dissection intervention JSON for the chosen blend and show both outputs
// before and after, with ΔPSNR and the share of each galaxy's flux removed.
import { call, checkpointPath, imageUrl, interventionPath, unitsPath } from "./api.js";

const COLUMNS = [
  ["unit", "unit"], ["label", "label"], ["iou", "IoU"], ["iqr", "IQR"], ["threshold", "threshold"],
];
const fmt = (v, digits = 3) => (v === null || v === undefined ? "–" : v.toFixed(digits));

/** GET a unit table, showing the server's dissection progress while it computes. */
async function fetchTable(state, layer, progress) {
  let waiting = true;
  const timer = setInterval(async () => {
    const p = await call("/api/progress").catch(() => null);
    if (waiting && p?.task) progress.status(`${p.task}: ${p.done} / ${p.total} images`, p.done, p.total);
  }, 400);
  try {
    return await call(unitsPath(state, layer));
  } finally {
    waiting = false;
    clearInterval(timer);
    progress.reset();
  }
}

function sorted(units, key) {
  const numeric = key !== "label";
  return [...units].sort((a, b) => {
    if (!numeric) return a.label.localeCompare(b.label) || a.unit - b.unit;
    if (key === "unit") return a.unit - b.unit;
    return (b[key] ?? -Infinity) - (a[key] ?? -Infinity) || a.unit - b.unit;
  });
}

function element(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function unitTable(table, state, update) {
  const chosen = new Set(state.units);
  const all = element("input", { type: "checkbox", id: "all-units", title: "all units",
    checked: chosen.size === table.units.length,
    onchange: (e) => update({ units: e.target.checked ? table.units.map((u) => u.unit) : [] }) });
  const head = element("tr", {}, [element("th", { title: "units to ablate or insert" }, ["edit ", all]),
    ...COLUMNS.map(([key, text]) => element("th", {
      textContent: text + (state.sort === key ? " ▾" : ""), className: "sortable",
      title: `sort by ${text}`, onclick: () => update({ sort: key }),
    })),
    element("th", { textContent: "interpretable" })]);
  const rows = sorted(table.units, state.sort).map((u) => {
    const box = element("input", { type: "checkbox", checked: chosen.has(u.unit),
      title: `${state.edit} unit ${u.unit}`, onclick: (e) => e.stopPropagation() });
    box.onchange = () => {
      if (box.checked) chosen.add(u.unit); else chosen.delete(u.unit);
      update({ units: [...chosen].sort((a, b) => a - b) });
    };
    const row = element("tr", { className: u.unit === state.unit ? "current" : "",
      onclick: () => update({ unit: u.unit }) }, [
      element("td", {}, [box]), element("td", { textContent: u.unit }),
      element("td", { textContent: u.label }), element("td", { textContent: fmt(u.iou) }),
      element("td", { textContent: fmt(u.iqr) }), element("td", { textContent: fmt(u.threshold) }),
      element("td", { textContent: u.interpretable ? "yes" : "" }),
    ]);
    row.dataset.unit = u.unit;
    return row;
  });
  return element("table", { className: "units" }, [element("thead", {}, [head]), element("tbody", {}, rows)]);
}

function figure(src, caption, className) {
  return element("figure", {}, [element("img", { src, alt: caption, className }),
    element("figcaption", { textContent: caption })]);
}

/** Apply the selected units' intervention to the chosen blend and show both outputs. */
async function outputs(box, ctx, layer, table) {
  const { state, run } = ctx;
  const version = run.checkpoints.find((c) => c.iteration === state.iteration).version;
  const plain = (b) => imageUrl(state, state.iteration, version, `output_${b}`);
  if (!state.units.length) {
    box.replaceChildren(element("p", { className: "note",
      textContent: `Tick units in the table to ${state.edit} them at ${layer} on blend ${state.index}.` }),
    element("div", { className: "outputs" }, ["a", "b"].map((b) => figure(plain(b), `output ${b.toUpperCase()}`, `before-${b}`))));
    return;
  }
  const edit = { layer, units: state.units, mode: state.edit, alpha: state.alpha };
  if (state.edit === "insert") {
    const values = Object.fromEntries(table.units.map((u) => [u.unit, u.value ?? 0]));
    edit.value = state.units.map((u) => values[u]);
  }
  const result = await call(`${interventionPath(state)}?stretch=${state.stretch}`, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(edit) });
  const figures = [];
  for (const b of ["a", "b"]) {
    const B = b.toUpperCase();
    const dpsnr = result.dpsnr_db ? ` · ΔPSNR ${fmt(result.dpsnr_db[b], 2)} dB` : "";
    figures.push(figure(result.before[`output_${b}`], `output ${B} before`, `before-${b}`),
      figure(result.after[`output_${b}`], `output ${B} after${dpsnr}`, `after-${b}`));
  }
  const removed = Object.entries(result.share_removed)
    .map(([c, v]) => `${c} ${v === null ? "–" : `${(100 * v).toFixed(1)} %`}`).join(", ");
  box.replaceChildren(
    element("p", { className: "note", textContent: `${state.edit} units ${state.units.join(", ")} of ` +
      `${layer} (α = ${state.alpha}) on blend ${state.index}. Share of each galaxy's flux removed from its branch: ${removed}` }),
    element("div", { className: "outputs" }, figures));
}

/** Render the Units view into `main`. */
export async function renderUnits(main, ctx) {
  const { state, progress, update } = ctx;
  const layers = await call(`${checkpointPath(state)}/layers`);
  if (!layers.length) {
    main.textContent = "This generator has no layers to dissect.";
    return;
  }
  const names = layers.map((l) => l.name);
  const layer = names.includes(state.layer) ? state.layer
    : (names.includes("trunk") ? "trunk" : names[0]);
  const picker = element("select", { id: "layer", onchange: (e) => update({ layer: e.target.value, unit: null, units: [] }) },
    layers.map((l) => new Option(`${l.name} (${l.units} units)`, l.name)));
  picker.value = layer;
  const mode = element("select", { id: "edit", onchange: (e) => update({ edit: e.target.value }) },
    ["ablate", "insert"].map((m) => new Option(m, m)));
  mode.value = state.edit;
  const alpha = element("input", { id: "alpha", type: "range", min: 0, max: 1, step: 0.05, value: state.alpha,
    onchange: (e) => update({ alpha: Number(e.target.value) }) });
  const clear = element("button", { type: "button", textContent: "Clear", onclick: () => update({ units: [] }) });
  const bar = element("div", { className: "units-bar" }, [
    element("label", {}, ["Layer ", picker]), element("label", {}, ["Edit ", mode]),
    element("label", {}, ["α ", alpha, element("span", { textContent: ` ${state.alpha}` })]), clear]);
  main.replaceChildren(bar);
  const table = await fetchTable(state, layer, progress);
  const info = element("p", { className: "note", textContent: `${table.units.length} units of ${layer}; ` +
    `thresholds from ${table.threshold_images} blends, IoU on ${table.dissection_images} others; ` +
    `concepts: ${table.concepts}. Click a unit for its gallery.` });
  const side = element("div", { className: "units-side" });
  if (state.unit !== null && state.unit < table.units.length) {
    const version = ctx.run.checkpoints.find((c) => c.iteration === state.iteration).version;
    const q = new URLSearchParams({ stretch: state.stretch, v: version });
    const u = table.units[state.unit];
    side.append(element("h3", { textContent: `unit ${u.unit}: ${u.label} (IoU ${fmt(u.iou)})` }),
      element("img", { className: "gallery", alt: `top images of unit ${u.unit}`,
        src: `${unitsPath(state, layer)}/${u.unit}.png?${q}` }));
  }
  const edits = element("div", { className: "units-outputs" });
  side.append(edits);
  main.append(info, element("div", { className: "units-layout" }, [
    element("div", { className: "units-table" }, [unitTable(table, state, update)]), side]));
  await outputs(edits, ctx, layer, table);
}
