// Deblend view: pick a blend of a set or upload one (FITS/PNG/JPEG); see the outputs, their PSNR
// where the truth is known, D's verdicts and its maps.
import { call } from "./api.js";
import { renderGrid } from "./explain.js";

/** Render the Deblend view; `onUpload(setId)` switches the state to an uploaded set. */
export async function renderDeblend(main, ctx, onUpload) {
  const pick = document.createElement("div");
  pick.className = "deblend-pick";
  const limit = (ctx.options.max_upload_bytes / 1048576).toFixed(0);
  pick.innerHTML = `<span>Blend ${ctx.state.index} of “${ctx.set.name}” (change it above), or</span>
    <label class="button">upload a blend (FITS, PNG, JPEG; ≤ ${limit} MiB)
    <input type="file" accept=".fits,.fit,.fts,.png,.jpg,.jpeg" hidden data-testid="upload"></label>`;
  pick.querySelector("input").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    try {
      const set = await call("/api/uploads", { method: "POST", body: form });
      onUpload(set.id);
    } catch (error) {
      document.getElementById("message").textContent = error.message;
    }
  });
  const grid = document.createElement("div");
  main.replaceChildren(pick, grid);
  const kinds = ["blend", ...ctx.set.kinds.filter((k) => k.startsWith("output")),
    ...ctx.set.kinds.filter((k) => k.startsWith("target"))];
  return renderGrid(grid, { ...ctx, kinds, methods: ctx.state.methods.slice(0, 2) });
}
