"""The app's HTTP API through FastAPI's TestClient: every endpoint, caching and bad input."""
from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from galaxai.app.server import MAX_UPLOAD_BYTES, STATIC_DIR  # noqa: E402

from .conftest import ITERATIONS, SIZE  # noqa: E402

BASE = "/api/runs/run-1/checkpoints/{it}/images/blends/{i}"


def _png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def _d_and_g(app_data, iteration):
    from galaxai.train.checkpoints import load_discriminator, load_generator

    ck = app_data[0] / "checkpoints" / f"{iteration:09d}"
    return load_discriminator(ck)[0], load_generator(ck)[0]


def _store_blend(app_data, i):
    from galaxai.data.store import BlendStore

    return BlendStore(app_data[1], split="test").to_arrays(i + 1)


# ----------------------------------------------------------------------------- page and assets
def test_page_and_assets_are_local(client):
    page = client.get("/")
    assert page.status_code == 200 and 'type="module"' in page.text
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        # the SVG namespace is an identifier, not a download
        urls = re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text.replace("http://www.w3.org/2000/svg", ""))
        assert urls == [], f"{path.name} refers to {urls}"
        assert "@import" not in text and "@font-face" not in text
        assert client.get(f"/static/{path.name}").status_code == 200


def test_openapi_schema_lists_the_endpoints(client):
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/stats", "/api/images",
            "/api/options", "/api/uploads", "/api/state"} <= paths
    assert any(p.endswith("/maps/{method}.png") for p in paths)


# ----------------------------------------------------------------------------- listings
def test_runs_list_every_saved_checkpoint(client, app_data):
    runs = client.get("/api/runs").json()
    assert [r["id"] for r in runs] == ["run-1"]
    assert [c["iteration"] for c in runs[0]["checkpoints"]] == list(ITERATIONS)
    assert runs[0]["image_size"] == SIZE
    assert client.get("/api/runs/run-1").json() == runs[0]
    versions = {c["version"] for c in runs[0]["checkpoints"]}
    assert len(versions) == len(ITERATIONS)  # the weights differ at every checkpoint


def test_stats_are_the_lines_of_stats_jsonl(client, app_data):
    lines = [json.loads(x) for x in (app_data[0] / "stats.jsonl").read_text().splitlines()]
    assert client.get("/api/runs/run-1/stats").json()["records"] == lines


def test_images_and_options(client):
    sets = client.get("/api/images").json()
    assert sets == [{"id": "blends", "name": "blends", "n": 8, "has_truth": True,
                     "kinds": ["blend", "target_a", "target_b", "output_a", "output_b"]}]
    from galaxai.explain import METHODS
    from galaxai.workflows import COMPARED_METHODS

    options = client.get("/api/options").json()
    assert [m["key"] for m in options["methods"]] == list(COMPARED_METHODS)
    assert all(COMPARED_METHODS[m["key"]][1] in METHODS for m in options["methods"])
    assert options["polarities"] == ["auto", "positive", "negative", "signed"]


# ----------------------------------------------------------------------------- computations
def test_summary_is_d_on_each_image_and_psnr_of_the_outputs(client, app_data):
    D, G = _d_and_g(app_data, 6)
    arrays = _store_blend(app_data, 1)
    blend = torch.from_numpy(arrays["blend"][1:2])
    with torch.no_grad():
        a, b = ((x + 1) / 2 for x in G(blend))
        images = {"blend": blend, "target_a": torch.from_numpy(arrays["target_a"][1:2]),
                  "target_b": torch.from_numpy(arrays["target_b"][1:2]),
                  "output_a": a.clamp(0, 1), "output_b": b.clamp(0, 1)}
        expected = {k: torch.sigmoid(D(2 * v - 1)).item() for k, v in images.items()}
    got = client.get(BASE.format(it=6, i=1) + "/summary").json()
    assert got["p_real"] == pytest.approx(expected, abs=1e-5)
    for branch in "ab":
        mse = ((images[f"output_{branch}"] - images[f"target_{branch}"]) ** 2).mean().item()
        assert got["psnr_db"][branch] == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)


def test_image_png_is_the_stretched_image(client, app_data):
    blend = np.moveaxis(_store_blend(app_data, 0)["blend"][0], 0, -1).astype(np.float64)
    linear = (blend - blend.min()) / (blend.max() - blend.min())
    got = _png(client.get(BASE.format(it=2, i=0) + "/blend.png", params={"stretch": "linear"}))
    assert got.shape == (SIZE, SIZE, 3)
    assert np.abs(got.astype(int) - np.round(linear * 255)).max() <= 1
    asinh = _png(client.get(BASE.format(it=2, i=0) + "/blend.png", params={"stretch": "asinh"}))
    assert not np.array_equal(asinh, got)


def test_outputs_change_with_the_checkpoint(client):
    first = _png(client.get(BASE.format(it=2, i=0) + "/output_a.png"))
    last = _png(client.get(BASE.format(it=8, i=0) + "/output_a.png"))
    assert not np.array_equal(first, last)


def test_polarity_auto_shows_the_evidence_for_ds_verdict(client, app_data):
    D, _ = _d_and_g(app_data, 8)
    target = torch.from_numpy(_store_blend(app_data, 0)["target_a"][:1])
    with torch.no_grad():
        verdict = "positive" if torch.sigmoid(D(2 * target - 1)).item() >= 0.5 else "negative"
    url = BASE.format(it=8, i=0) + "/target_a/maps/polarized_lrp.png"
    maps = {p: client.get(url, params={"polarity": p}).content for p in
            ("auto", "positive", "negative", "signed")}
    assert maps["auto"] == maps[verdict]
    assert maps["positive"] != maps["negative"]
    signed = _png(client.get(url, params={"polarity": "signed", "cmap": "bwr"}))
    # Polarized-LRP's forced verdict colours one side of the diverging map only: bwr's blue half
    # (blue >= red) for "generated", red half for "real"
    red, blue = signed[..., 0].astype(int), signed[..., 2].astype(int)
    assert np.all(blue >= red) if verdict == "negative" else np.all(red >= blue)


def test_every_method_gives_a_map_and_the_cache_serves_revisits(client, app_data, tmp_path):
    from fastapi.testclient import TestClient

    from galaxai.app import create_app

    options = client.get("/api/options").json()
    pngs = {}
    for method in (m["key"] for m in options["methods"]):
        pngs[method] = client.get(BASE.format(it=4, i=2) + f"/output_b/maps/{method}.png").content
        assert _png(client.get(BASE.format(it=4, i=2) + f"/output_b/maps/{method}.png")).shape == (SIZE, SIZE, 3)
    engine = client.app.state.engine
    assert engine.computed == len(pngs)
    # a new server on the same cache recomputes nothing, even for another colour map
    with TestClient(create_app([app_data[0]], [app_data[1]], engine.cache_dir)) as again:
        for method, png in pngs.items():
            assert again.get(BASE.format(it=4, i=2) + f"/output_b/maps/{method}.png").content == png
            again.get(BASE.format(it=4, i=2) + f"/output_b/maps/{method}.png", params={"cmap": "magma"})
        assert again.app.state.engine.computed == 0


def test_cache_files_are_never_unpickled(client):
    url = BASE.format(it=4, i=3) + "/target_b/maps/input_gradient.png"
    good = client.get(url).content
    engine = client.app.state.engine
    files = list(engine.cache_dir.rglob("*.npz"))
    assert len(files) == 1
    # replace the cached map with an object array (loading it would need pickle)
    np.savez(files[0], map=np.array([object()], dtype=object), p_real=np.float64(0.5))
    engine._pngs.clear()
    assert client.get(url).content == good  # recomputed, never unpickled
    with np.load(files[0], allow_pickle=False) as cached:
        assert cached["map"].dtype == np.float32


def test_etag_and_immutable_urls(client):
    run = client.get("/api/runs/run-1").json()
    version = run["checkpoints"][0]["version"]
    url = BASE.format(it=2, i=0) + "/target_a/maps/lrp_epsilon.png"
    first = client.get(url, params={"v": version})
    assert "immutable" in first.headers["cache-control"] and first.headers["etag"]
    again = client.get(url, params={"v": version}, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    stale = client.get(url, params={"v": "0" * 12})
    assert stale.headers["cache-control"] == "no-cache"
    other = client.get(url, params={"cmap": "magma"})
    assert other.headers["etag"] != first.headers["etag"]


# ----------------------------------------------------------------------------- uploads and state
def _png_upload(size: int, seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_a_png_then_deblend_and_explain_it(client):
    created = client.post("/api/uploads", files={"file": ("my blend.png", _png_upload(48), "image/png")})
    assert created.status_code == 201, created.text
    info = created.json()
    assert info["has_truth"] is False and info["kinds"] == ["blend", "output_a", "output_b"]
    assert info["id"] in [s["id"] for s in client.get("/api/images").json()]
    base = f"/api/runs/run-1/checkpoints/8/images/{info['id']}/0"
    summary = client.get(base + "/summary").json()
    assert summary["psnr_db"] is None and set(summary["p_real"]) == set(info["kinds"])
    assert _png(client.get(base + "/blend.png")).shape == (SIZE, SIZE, 3)  # resized to the model
    assert client.get(base + "/output_a/maps/polarized_lrp.png").status_code == 200
    missing = client.get(base + "/target_a.png")
    assert missing.status_code == 404 and "no target_a" in missing.json()["detail"]


@pytest.mark.parametrize("name, data, status, words", [
    ("big.png", b"\x89PNG" + b"0" * (MAX_UPLOAD_BYTES + 70_000), 413, "too large"),
    ("blend.exe", b"MZ", 415, "upload a"),
    ("broken.png", b"not a png at all", 422, "broken.png"),
    ("broken.fits", b"SIMPLE  =    T" + b" " * 100, 422, "broken.fits"),
    ("wide.png", None, 422, "square"),
    ("empty.jpg", b"", 422, "empty"),
])
def test_bad_uploads_are_refused_with_a_message(client, name, data, status, words):
    if data is None:
        buf = io.BytesIO()
        Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(buf, format="PNG")
        data = buf.getvalue()
    response = client.post("/api/uploads", files={"file": (name, data, "application/octet-stream")})
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_state_import_is_checked(client):
    state = {"view": "training", "run": "run-1", "iteration": 4, "images": "blends", "index": 3,
             "polarity": "signed"}
    checked = client.post("/api/state", json=state)
    assert checked.status_code == 200 and checked.json()["iteration"] == 4
    assert checked.json()["methods"][0] == "polarized_lrp"  # defaults filled in
    malformed = client.post("/api/state", content=b"{not json", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 422 and "JSON" in json.dumps(malformed.json())
    for bad, status in [({**state, "run": "other"}, 404), ({**state, "iteration": 5}, 404),
                        ({**state, "index": 99}, 404), ({**state, "polarity": "up"}, 422),
                        ({**state, "path": "/etc"}, 422), ({**state, "run": "../x"}, 422)]:
        response = client.post("/api/state", json=bad)
        assert response.status_code == status, (bad, response.text)
        assert response.json()["detail"]


# ----------------------------------------------------------------------------- unknown ids, traversal
@pytest.mark.parametrize("url, status", [
    ("/api/runs/nope", 404),
    ("/api/runs/nope/stats", 404),
    ("/api/runs/run-1/checkpoints/3/images/blends/0/summary", 404),
    ("/api/runs/run-1/checkpoints/2/images/nope/0/blend.png", 404),
    ("/api/runs/run-1/checkpoints/2/images/blends/8/blend.png", 404),
    ("/api/runs/run-1/checkpoints/2/images/blends/0/mask.png", 422),
    ("/api/runs/run-1/checkpoints/2/images/blends/0/blend/maps/deeplift.png", 422),
    ("/api/runs/run-1/checkpoints/2/images/blends/0/blend.png?stretch=log", 422),
    ("/api/runs/run-1/checkpoints/-2/images/blends/0/blend.png", 422),
    ("/api/runs/..%2f..%2fetc/stats", 404),
    ("/api/runs/%2e%2e/stats", 422),
    ("/static/../server.py", 404),
    ("/static/..%2fserver.py", 404),
    ("/static/%2e%2e/%2e%2e/app/server.py", 404),
])
def test_unknown_ids_and_traversal_are_4xx_with_a_message(client, url, status):
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_unknown_run_message_lists_the_registered(client):
    assert "registered: run-1" in client.get("/api/runs/nope").json()["detail"]
    detail = client.get("/api/runs/run-1/checkpoints/3/images/blends/0/summary").json()["detail"]
    assert "saved: 2, 4, 6, 8" in detail


def test_cli_refuses_a_folder_without_checkpoints(tmp_path):
    from click.testing import CliRunner

    from galaxai.cli import main

    result = CliRunner().invoke(main, ["app", str(tmp_path)])
    assert result.exit_code == 2
    assert "has no finished checkpoint" in result.output and str(tmp_path) in result.output
