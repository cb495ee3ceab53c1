"""The Units view's endpoints: layers, unit tables (cached), galleries and interventions."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from .conftest import SIZE  # noqa: E402

CK = "/api/runs/run-1/checkpoints/8"
UNITS = CK + "/images/blends/layers/{layer}/units"
EDIT = CK + "/images/blends/{i}/interventions"


def _data_png(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_layers_are_the_generators_named_layers(client, app_data):
    from galaxai.dissect import deblender_layers
    from galaxai.train.checkpoints import load_generator

    G = load_generator(app_data[0] / "checkpoints" / f"{8:09d}")[0]
    layers = client.get(CK + "/layers").json()
    assert [x["name"] for x in layers] == list(deblender_layers(G))
    assert {"head", "trunk", "root.0", "branch1.0", "branch2.0"} <= {x["name"] for x in layers}
    assert all(x["units"] == G.config.g_filters for x in layers)
    assert client.get("/api/runs/run-1/checkpoints/3/layers").status_code == 404


def test_unit_table_is_dissect_units_on_the_two_halves_and_cached(client, app_data, monkeypatch):
    from fastapi.testclient import TestClient

    from galaxai.app import create_app

    table = client.get(UNITS.format(layer="trunk"))
    assert table.status_code == 200, table.text
    got = table.json()
    assert got["concepts"] == "flux: targets"  # the test store keeps no component truth
    assert got["threshold_images"] == 4 and got["dissection_images"] == 4
    assert [u["unit"] for u in got["units"]] == list(range(len(got["units"])))
    names = {"galaxy_A", "galaxy_B", "overlap", "background", "companion", "core", "outskirts"}
    assert {u["label"] for u in got["units"]} <= names
    assert all(u["iou"] is None or 0 <= u["iou"] <= 1 for u in got["units"])
    engine = client.app.state.engine
    assert len(list((engine.cache_dir / "units").rglob("*.json"))) == 1
    assert engine.progress == {"task": None, "done": 0, "total": 0}
    assert client.get("/api/progress").json() == {"task": None, "done": 0, "total": 0}
    # a new server on the same cache reads the table instead of dissecting again
    def no_dissection(*args, **kwargs):
        raise AssertionError("dissected again")

    monkeypatch.setattr("galaxai.app.units.dissect_units", no_dissection)
    with TestClient(create_app([app_data[0]], [app_data[1]], engine.cache_dir)) as again:
        assert again.get(UNITS.format(layer="trunk")).json() == got


@pytest.mark.parametrize("url, status", [
    (UNITS.format(layer="nope"), 404),
    (UNITS.format(layer="%2e%2e"), 422),
    (UNITS.format(layer="root.0").replace("blends", "other"), 404),
    (UNITS.format(layer="root.0") + "/9999.png", 404),
    (UNITS.format(layer="root.0") + "/0.png?kind=mask", 422),
])
def test_unit_endpoints_refuse_unknown_ids(client, url, status):
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_gallery_outlines_the_top_images(client):
    got = client.get(UNITS.format(layer="root.0") + "/0.png")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    tiles = np.asarray(Image.open(io.BytesIO(got.content)).convert("RGB"))
    assert tiles.shape == (SIZE + 2, 4 * (SIZE + 1) + 1, 3)  # the 4 dissected blends in a row
    assert got.headers["etag"]
    again = client.get(UNITS.format(layer="root.0") + "/0.png",
                       headers={"If-None-Match": got.headers["etag"]})
    assert again.status_code == 304
    other = client.get(UNITS.format(layer="root.0") + "/0.png", params={"kind": "output_a"})
    assert other.status_code == 200 and other.content != got.content


def test_ablation_with_alpha_zero_changes_nothing(client):
    plain = {b: np.asarray(Image.open(io.BytesIO(client.get(
        CK + f"/images/blends/2/output_{b}.png").content)).convert("RGB")) for b in "ab"}
    got = client.post(EDIT.format(i=2), json={"layer": "root.0", "units": [0, 1, 2], "alpha": 0})
    assert got.status_code == 200, got.text
    result = got.json()
    for b in "ab":
        assert np.array_equal(_data_png(result["after"][f"output_{b}"]), plain[b])
        assert np.array_equal(_data_png(result["before"][f"output_{b}"]), plain[b])
    assert result["dpsnr_db"] == {"a": 0.0, "b": 0.0}
    # None: the branch has no flux of that galaxy to remove (a barely trained generator)
    assert set(result["share_removed"]) == {"galaxy_A", "galaxy_B"}
    assert all(v in (0.0, None) for v in result["share_removed"].values())
    assert result["interventions"] == [{"layer": "root.0", "units": [0, 1, 2], "mode": "ablate",
                                        "alpha": 0.0, "value": None, "mask": None}]


def test_ablating_every_trunk_unit_changes_the_outputs(client, app_data):
    from galaxai.dissect import Intervention, intervene
    from galaxai.train.checkpoints import load_generator

    layers = dict((x["name"], x["units"]) for x in client.get(CK + "/layers").json())
    units = list(range(layers["trunk"]))
    result = client.post(EDIT.format(i=1), json={"layer": "trunk", "units": units}).json()
    assert not np.array_equal(_data_png(result["after"]["output_a"]),
                              _data_png(result["before"]["output_a"]))
    assert set(result["dpsnr_db"]) == {"a", "b"} and set(result["leak"]) == {"b_into_a", "a_into_b"}
    # the after image is the library's intervention on the same blend
    from galaxai.data.store import BlendStore

    blend = torch.from_numpy(BlendStore(app_data[1], split="test").to_arrays(2)["blend"][1:2])
    G = load_generator(app_data[0] / "checkpoints" / f"{8:09d}")[0]
    with torch.no_grad(), intervene(G, Intervention("trunk", tuple(units))):
        a = ((G(blend)[0] + 1) / 2).clamp(0, 1)[0].numpy()
    from galaxai.viz.render import stretch_image, to_uint8

    assert np.array_equal(_data_png(result["after"]["output_a"]),
                          to_uint8(stretch_image(np.moveaxis(a, 0, -1), "asinh")))
    # insertion at the unit's 0.99 level, a region mask and a list of interventions work too
    value = client.get(UNITS.format(layer="trunk")).json()["units"][0]["value"]
    both = client.post(EDIT.format(i=1), json=[
        {"layer": "trunk", "units": [0], "mode": "insert", "value": value},
        {"layer": "root.0", "units": [1], "alpha": 0.5, "mask": [[1, 0], [0, 1]]}])
    assert both.status_code == 200, both.text
    assert len(both.json()["interventions"]) == 2


@pytest.mark.parametrize("body, words", [
    ({"layer": "nope", "units": [0]}, "no layer 'nope'"),
    ({"layer": "root.0", "units": [9999]}, "units 0 to"),
    ({"layer": "root.0", "units": [-1]}, "greater than or equal"),
    ({"layer": "root.0", "units": []}, "at least 1"),
    ({"layer": "root.0", "units": [0], "mode": "erase"}, "ablate"),
    ({"layer": "root.0", "units": [0], "alpha": 2}, "less than or equal"),
    ({"layer": "root.0", "units": [0], "mode": "insert"}, "needs value"),
    ({"layer": "root.0", "units": [0], "value": 1.0}, "omit value"),
    ({"layer": "root.0", "units": [0, 1], "alpha": [0.5]}, "one per unit"),
    ({"layer": "root.0", "units": [0], "path": "/etc"}, "Extra inputs"),
    ({"layer": "root.0", "units": [0], "mask": [[0.5, 2.0]]}, "less than or equal"),
    ({"units": [0]}, "layer"),
    ([], "at least 1"),
])
def test_bad_interventions_are_422_with_a_message(client, body, words):
    response = client.post(EDIT.format(i=0), json=body)
    assert response.status_code == 422, response.text
    assert words in str(response.json()["detail"])


def test_intervention_on_unknown_ids_and_malformed_json(client):
    body = {"layer": "root.0", "units": [0]}
    assert client.post(EDIT.format(i=99), json=body).status_code == 404
    assert client.post(EDIT.replace("8", "3").format(i=0), json=body).status_code == 404
    malformed = client.post(EDIT.format(i=0), content=b"{layer: root.0",
                            headers={"Content-Type": "application/json"})
    assert malformed.status_code == 422 and "JSON" in str(malformed.json()["detail"])


def test_units_view_state_is_checked(client):
    state = {"view": "units", "run": "run-1", "images": "blends", "layer": "root.0", "unit": 3,
             "units": [1, 3], "edit": "insert", "alpha": 0.5, "sort": "label"}
    assert client.post("/api/state", json=state).status_code == 200
    assert client.post("/api/state", json={**state, "layer": "../x"}).status_code == 422
    assert client.post("/api/state", json={**state, "alpha": 3}).status_code == 422


def test_a_store_with_component_truth_is_dissected_on_truth_concepts(app_data, tmp_path):
    """A simulated store keeps component truth: the set carries it (resized to the model's size)."""
    from fastapi.testclient import TestClient

    from galaxai.app import create_app
    from galaxai.data.blend import BlendConfig
    from galaxai.data.simulate import SimConfig
    from galaxai.data.store import BlendStore, build_store
    from galaxai.dissect import store_concepts

    store = build_store(tmp_path / "truth", 6, seed=5, sim_config=SimConfig.preset("tiny"),
                        blend_config=BlendConfig.preset("paper", out_size=2 * SIZE), chunk=6,
                        test_fraction=1.0)
    with TestClient(create_app([app_data[0]], [store], tmp_path / "cache")) as client:
        images = client.app.state.engine.registry.image_set("truth")
        full = BlendStore(store, split="test", components=True)
        concepts = store_concepts(full)[1]
        assert images.concepts.names == concepts.names and "A.disk" in concepts.names
        assert images.concepts.masks.shape == (6, len(concepts.names), SIZE, SIZE)
        # nearest-level agreement with the full-resolution masks, pooled 2×2
        pooled = concepts.masks.reshape(6, -1, SIZE, 2, SIZE, 2).mean(axis=(3, 5)) >= 0.5
        assert (images.concepts.masks == pooled).mean() > 0.97
        x_b = full.catalogue["x_b"].to_numpy()
        np.testing.assert_allclose(images.centre_b[:, 0], (x_b + 0.5) / 2 - 0.5)
        table = client.get(CK + "/images/truth/layers/root.0/units").json()
        assert table["concepts"] == "truth" and table["dissection_images"] == 3
        assert {u["label"] for u in table["units"]} <= set(concepts.names)
        edit = client.post(CK + "/images/truth/0/interventions",
                           json={"layer": "root.0", "units": [0, 1]}).json()
        assert set(edit["share_removed"]) == {"galaxy_A", "galaxy_B"}


def test_uploads_use_the_flux_segmenter_on_the_blend(client):
    rgb = np.random.default_rng(1).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    upload = client.post("/api/uploads", files={"file": ("b.png", buf.getvalue(), "image/png")}).json()
    table = client.get(CK + f"/images/{upload['id']}/layers/root.0/units")
    assert table.status_code == 422 and "at least 2" in table.json()["detail"]
    assert client.get(CK + f"/images/{upload['id']}/layers/root.0/units/0.png").status_code == 422
    edit = client.post(CK + f"/images/{upload['id']}/0/interventions",
                       json={"layer": "root.0", "units": [0]})
    assert edit.status_code == 200, edit.text
    result = edit.json()
    assert result["concepts"] == "flux: blend" and list(result["share_removed"]) == ["source"]
    assert result["dpsnr_db"] is None and result["leak"] is None


def test_progress_counts_the_images_through_the_generator(client, monkeypatch):
    from galaxai.app import units as module

    engine, real, seen = client.app.state.engine, module.dissect_units, []

    def watched(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.append(dict(engine.progress))
        return result

    monkeypatch.setattr(module, "dissect_units", watched)
    assert client.get(UNITS.format(layer="head")).status_code == 200
    # quantiles and tables on 4 blends, IoU on the other 4; then the insertion values (4 more)
    assert seen == [{"task": "dissecting head", "done": 12, "total": 16}]
    assert client.get("/api/progress").json()["task"] is None
