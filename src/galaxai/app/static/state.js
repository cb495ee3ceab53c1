// The view state: one object, mirrored in the URL's query string (shareable) and exported or
// imported as JSON (the server's ViewState schema, POST /api/state checks an import).

/** @typedef {{view: string, run: string, iteration: (number|null), compare: (number|null),
 *   mode: string, images: string, index: number, methods: string[], polarity: string,
 *   stretch: string, cmap: string, smooth: boolean, layer: (string|null), unit: (number|null),
 *   sort: string, edit: string, units: number[], alpha: number}} ViewState */

// URL parameter <-> state field, and how a parameter is parsed.
const FIELDS = {
  view: ["view", String], run: ["run", String], it: ["iteration", Number],
  cmp: ["compare", Number], mode: ["mode", String], images: ["images", String],
  i: ["index", Number], methods: ["methods", (v) => v.split(",").filter(Boolean)],
  pol: ["polarity", String], stretch: ["stretch", String], cmap: ["cmap", String],
  smooth: ["smooth", (v) => v === "1"], layer: ["layer", String], unit: ["unit", Number],
  sort: ["sort", String], edit: ["edit", String], alpha: ["alpha", Number],
  sel: ["units", (v) => v.split(",").filter(Boolean).map(Number).filter((u) => u >= 0)],
};

/** Defaults filled in from the server's options and registered ids. */
export function defaults(options, runs, sets) {
  const run = runs[0];
  return {
    view: "explain", run: run.id, iteration: run.checkpoints.at(-1).iteration, compare: null,
    mode: "grid", images: sets[0].id, index: 0, methods: options.methods.map((m) => m.key),
    polarity: "auto", stretch: "asinh", cmap: "viridis", smooth: false,
    layer: null, unit: null, sort: "iou", edit: "ablate", units: [], alpha: 1,
  };
}

/** State from a query string, over the defaults; unknown parameters are ignored. */
export function fromQuery(search, base) {
  const state = { ...base };
  const params = new URLSearchParams(search);
  for (const [param, [field, parse]] of Object.entries(FIELDS)) {
    if (params.has(param)) {
      const value = parse(params.get(param));
      if (!(typeof value === "number" && Number.isNaN(value))) state[field] = value;
    }
  }
  return state;
}

/** The query string of a state (only what differs from the defaults is written). */
export function toQuery(state, base) {
  const params = new URLSearchParams();
  for (const [param, [field]] of Object.entries(FIELDS)) {
    const value = state[field];
    if (value === null || JSON.stringify(value) === JSON.stringify(base[field])) continue;
    params.set(param, Array.isArray(value) ? value.join(",") : typeof value === "boolean"
      ? (value ? "1" : "0") : String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** Offer the state as a JSON file download. */
export function exportJson(state) {
  const blob = new Blob([JSON.stringify(state, null, 2)], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `galaxai-view-${state.run}-${state.iteration}.json`;
  a.click();
  URL.revokeObjectURL(a.href);
}
