// Explain view: images (blend, truths, outputs) × methods at the slider's checkpoint, with
// D's p(real) per image and blink/swipe comparison against a second checkpoint.
import { imageUrl, mapUrl, summary } from "./api.js";

const KIND_LABELS = {
  blend: "blend", target_a: "truth A", target_b: "truth B", output_a: "output A", output_b: "output B",
};

/** Counts the PNGs of the view still loading, shown as a progress bar (maps compute on first use). */
export class Progress {
  constructor(element) { this.element = element; this.total = 0; this.done = 0; }
  reset() { this.total = 0; this.done = 0; this.show(); }
  track(img) {
    this.total += 1;
    const finish = () => { this.done += 1; this.show(); };
    img.addEventListener("load", finish, { once: true });
    img.addEventListener("error", finish, { once: true });
    this.show();
  }
  /** Show a computation on the server (`done` of `total`) with its own text. */
  status(text, done, total) {
    const bar = this.element.querySelector("progress");
    bar.max = Math.max(total, 1);
    bar.value = done;
    this.element.querySelector("span").textContent = text;
    this.element.classList.remove("done");
  }
  show() {
    const bar = this.element.querySelector("progress");
    bar.max = Math.max(this.total, 1);
    bar.value = this.done;
    this.element.querySelector("span").textContent =
      this.done < this.total ? `computing maps and images: ${this.done} / ${this.total}` : "";
    this.element.classList.toggle("done", this.done >= this.total);
  }
}

function cell(srcA, srcB, progress, alt) {
  const div = document.createElement("div");
  div.className = "cell";
  for (const [cls, src] of [["a", srcA], ["b", srcB]]) {
    if (!src) continue;
    const img = document.createElement("img");
    img.className = cls;
    img.alt = alt;
    img.loading = "lazy";
    progress.track(img);
    img.src = src;
    div.append(img);
  }
  return div;
}

/**
 * Render a grid of `kinds` × (image + `methods`) into `main`.
 * @param {object} ctx  {state, run, set, options, progress, kinds, methods}
 */
export async function renderGrid(main, ctx) {
  const { state, run, progress } = ctx;
  const checkpoint = run.checkpoints.find((c) => c.iteration === state.iteration) ?? run.checkpoints.at(-1);
  const other = state.mode !== "grid"
    ? run.checkpoints.find((c) => c.iteration === state.compare) : undefined;
  const labels = Object.fromEntries(ctx.options.methods.map((m) => [m.key, m.label]));
  progress.reset();
  const table = document.createElement("table");
  table.className = "grid";
  table.dataset.testid = "grid";
  const head = table.createTHead().insertRow();
  head.append(document.createElement("th"));
  for (const title of ["image", ...ctx.methods.map((m) => labels[m])]) {
    const th = document.createElement("th");
    th.textContent = title;
    head.append(th);
  }
  const body = table.createTBody();
  const rows = {};
  for (const kind of ctx.kinds) {
    const row = body.insertRow();
    const th = document.createElement("th");
    th.className = "row";
    th.innerHTML = `${KIND_LABELS[kind]}<span class="p" data-kind="${kind}">p(real) …</span>`;
    row.append(th);
    const url = (c) => imageUrl(state, c.iteration, c.version, kind);
    row.insertCell().append(cell(url(checkpoint), other && url(other), progress, KIND_LABELS[kind]));
    for (const method of ctx.methods) {
      const murl = (c) => mapUrl(state, c.iteration, c.version, kind, method);
      row.insertCell().append(cell(murl(checkpoint), other && murl(other), progress,
        `${labels[method]} map of ${KIND_LABELS[kind]}`));
    }
    rows[kind] = th;
  }
  main.replaceChildren();
  if (other) {
    const note = document.createElement("p");
    note.className = "compare-label";
    note.textContent = state.mode === "blink"
      ? `blinking between iteration ${checkpoint.iteration} and ${other.iteration}`
      : `left: iteration ${checkpoint.iteration}, right of the line: iteration ${other.iteration}`;
    main.append(note);
  }
  main.append(table);
  const verdicts = await summary(state, checkpoint.iteration);
  for (const [kind, th] of Object.entries(rows)) {
    const p = verdicts.p_real[kind];
    let text = p === undefined ? "" : `p(real) ${p.toFixed(3)}`;
    const branch = kind.startsWith("output_") && verdicts.psnr_db ? verdicts.psnr_db[kind.at(-1)] : undefined;
    if (branch !== undefined) text += ` · PSNR ${branch.toFixed(1)} dB`;
    th.querySelector(".p").textContent = text;
  }
  return verdicts;
}

/** The Explain view: every image kind of the set × the chosen methods. */
export function renderExplain(main, ctx) {
  return renderGrid(main, { ...ctx, kinds: ctx.set.kinds, methods: ctx.state.methods });
}
