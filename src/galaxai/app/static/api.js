// The server's API: JSON calls with readable errors, and the URLs of images and maps.

/** GET or POST JSON; throws an Error carrying the server's "detail" message. */
export async function call(path, init = {}) {
  const response = await fetch(path, init);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${response.status}: ${detail || response.statusText}`);
  }
  return body;
}

/** Path of one checkpoint of the state's run. */
export function checkpointPath(state, iteration = state.iteration) {
  return `/api/runs/${encodeURIComponent(state.run)}/checkpoints/${iteration}`;
}

/** Base path of one image of one set at one checkpoint. */
function base(state, iteration, index = state.index) {
  return `${checkpointPath(state, iteration)}/images/${encodeURIComponent(state.images)}/${index}`;
}

/** Path of a layer's unit table on the state's image set (a unit's gallery is `/{unit}.png`). */
export function unitsPath(state, layer) {
  return `${checkpointPath(state)}/images/${encodeURIComponent(state.images)}` +
    `/layers/${encodeURIComponent(layer)}/units`;
}

/** Path that takes the intervention JSON for the state's blend. */
export function interventionPath(state) {
  return `${base(state, state.iteration)}/interventions`;
}

/** URL of an image PNG; `version` (the checkpoint's short hash) makes it immutable. */
export function imageUrl(state, iteration, version, kind) {
  const q = new URLSearchParams({ stretch: state.stretch, v: version });
  return `${base(state, iteration)}/${kind}.png?${q}`;
}

/** URL of a relevance-map PNG. */
export function mapUrl(state, iteration, version, kind, method) {
  const q = new URLSearchParams({ polarity: state.polarity, cmap: state.cmap, v: version });
  return `${base(state, iteration)}/${kind}/maps/${method}.png?${q}`;
}

/** D's p(real) per image and the outputs' PSNR. */
export function summary(state, iteration) {
  return call(`${base(state, iteration)}/summary`);
}
