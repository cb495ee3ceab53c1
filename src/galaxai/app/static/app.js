// Entry point: loads the registered runs, image sets and options, keeps the controls, the URL
// and the current view in step with one state object.
import { call } from "./api.js";
import { renderDeblend } from "./deblend.js";
import { Progress, renderExplain } from "./explain.js";
import { defaults, exportJson, fromQuery, toQuery } from "./state.js";
import { renderTraining } from "./training.js";
import { renderUnits } from "./units.js";

const $ = (id) => document.getElementById(id);
const VIEWS = { explain: renderExplain, deblend: renderDeblend, training: renderTraining, units: renderUnits };
let options, runs, sets, base, state, player = null, blinker = null;
const progress = new Progress($("progress"));

function fill(select, items) {
  select.replaceChildren(...items.map(([value, text]) => new Option(text, value)));
}

function current() {
  const run = runs.find((r) => r.id === state.run) ?? runs[0];
  const set = sets.find((s) => s.id === state.images) ?? sets[0];
  return { run, set };
}

/** Put the state into the controls (without triggering their handlers). */
function syncControls() {
  const { run, set } = current();
  fill($("run"), runs.map((r) => [r.id, r.name]));
  fill($("images"), sets.map((s) => [s.id, `${s.name} (${s.n})`]));
  const iterations = run.checkpoints.map((c) => [String(c.iteration), `iteration ${c.iteration}`]);
  fill($("iteration"), iterations);
  fill($("compare"), iterations);
  $("run").value = run.id;
  $("images").value = set.id;
  $("index").max = set.n - 1;
  $("index").value = state.index;
  const k = Math.max(0, run.checkpoints.findIndex((c) => c.iteration === state.iteration));
  $("checkpoint").max = run.checkpoints.length - 1;
  $("checkpoint").value = k;
  $("iteration").value = String(run.checkpoints[k].iteration);
  $("compare").value = String(state.compare ?? run.checkpoints[0].iteration);
  $("mode").value = state.mode;
  $("swipe").hidden = state.mode !== "swipe";
  for (const id of ["polarity", "stretch", "cmap"]) $(id).value = state[id];
  $("smooth").checked = state.smooth;
  for (const box of $("methods").querySelectorAll("input")) box.checked = state.methods.includes(box.value);
  document.body.classList.toggle("smooth", state.smooth);
  document.body.dataset.view = state.view;
  for (const a of $("views").querySelectorAll("a")) a.classList.toggle("active", a.dataset.view === state.view);
}

/** Apply a change, write it to the URL and redraw. */
async function update(change = {}) {
  state = { ...state, ...change };
  const { run, set } = current();
  state.run = run.id;
  state.images = set.id;
  state.index = Math.min(Math.max(0, state.index | 0), set.n - 1);
  if (!run.checkpoints.some((c) => c.iteration === state.iteration)) {
    state.iteration = run.checkpoints.at(-1).iteration;
  }
  if (state.mode !== "grid" && state.compare === null) state.compare = run.checkpoints[0].iteration;
  history.replaceState(null, "", location.pathname + toQuery(state, base));
  syncControls();
  $("message").textContent = "";
  const main = $("view");
  main.className = state.mode === "grid" ? "" : state.mode;
  clearInterval(blinker);
  if (state.mode === "blink") blinker = setInterval(() => main.classList.toggle("flip"), 700);
  try {
    await VIEWS[state.view](main, { state, run, set, options, progress, update },
      (setId) => { sets = null; reloadSets().then(() => update({ images: setId, index: 0 })); });
  } catch (error) {
    $("message").textContent = error.message;
  }
}

async function reloadSets() { sets = await call("/api/images"); }

function step(delta) {
  const { run } = current();
  const k = run.checkpoints.findIndex((c) => c.iteration === state.iteration);
  const next = run.checkpoints[(k + delta + run.checkpoints.length) % run.checkpoints.length];
  return update({ iteration: next.iteration });
}

function bind() {
  $("run").onchange = (e) => update({ run: e.target.value, iteration: null, compare: null });
  $("images").onchange = (e) => update({ images: e.target.value, index: 0 });
  $("index").onchange = (e) => update({ index: Number(e.target.value) });
  $("checkpoint").oninput = (e) => update({ iteration: current().run.checkpoints[Number(e.target.value)].iteration });
  $("iteration").onchange = (e) => update({ iteration: Number(e.target.value) });
  $("compare").onchange = (e) => update({ compare: Number(e.target.value) });
  $("mode").onchange = (e) => update({ mode: e.target.value });
  $("swipe").oninput = (e) => $("view").style.setProperty("--swipe", `${e.target.value}%`);
  for (const id of ["polarity", "stretch", "cmap"]) $(id).onchange = (e) => update({ [id]: e.target.value });
  $("smooth").onchange = (e) => update({ smooth: e.target.checked });
  $("methods").onchange = () => update({
    methods: [...$("methods").querySelectorAll("input:checked")].map((b) => b.value) });
  $("play").onclick = () => {
    if (player) { clearInterval(player); player = null; $("play").textContent = "Play"; return; }
    $("play").textContent = "Pause";
    player = setInterval(() => step(1), 1500);
  };
  for (const a of $("views").querySelectorAll("a")) {
    a.onclick = (e) => { e.preventDefault(); update({ view: a.dataset.view }); };
  }
  $("share").onclick = () => navigator.clipboard?.writeText(location.href);
  $("export").onclick = () => exportJson(state);
  $("import").onchange = async (e) => {
    try {
      const text = await e.target.files[0].text();
      const checked = await call("/api/state", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: text });
      await update(checked);
    } catch (error) {
      $("message").textContent = `import failed: ${error.message}`;
    }
  };
}

async function main() {
  [options, runs] = await Promise.all([call("/api/options"), call("/api/runs")]);
  await reloadSets();
  fill($("polarity"), options.polarities.map((p) => [p, p]));
  fill($("stretch"), options.stretches.map((s) => [s, s]));
  fill($("cmap"), [...options.sequential_cmaps, ...options.diverging_cmaps].map((c) => [c, c]));
  for (const m of options.methods) {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" value="${m.key}"> ${m.label}`;
    $("methods").append(label);
  }
  base = defaults(options, runs, sets);
  state = fromQuery(location.search, base);
  bind();
  await update();
}

main().catch((error) => { $("message").textContent = error.message; });
