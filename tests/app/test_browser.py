"""The page in Debian's Chromium (Playwright, no browser download): load, slide, toggle, URL.

Skipped when playwright or /usr/bin/chromium is missing (``.ci/run`` installs chromium).
Screenshots of each view go to ``$GALAXAI_SCREENSHOTS`` (default: the test's temporary folder).
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(app_data, tmp_path_factory):
    from galaxai.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app([app_data[0]], [app_data[1]], tmp_path_factory.mktemp("cache"))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()


def _loaded(page):
    page.wait_for_function("document.getElementById('progress').classList.contains('done')"
                           " && document.querySelectorAll('table.grid img').length > 0", timeout=60_000)


def _map_srcs(page):
    return page.eval_on_selector_all("table.grid td img.a", "els => els.map(e => e.src)")


def test_load_slide_toggle_and_screenshots(page, server, tmp_path):
    shots = Path(os.environ.get("GALAXAI_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.goto(server + "/?methods=polarized_lrp,lrp_zplus,input_gradient")
    _loaded(page)
    assert page.locator("#message").inner_text() == ""
    assert page.eval_on_selector_all("table.grid img", "els => els.every(e => e.naturalWidth > 0)")
    before, url_before = _map_srcs(page), page.url
    page.screenshot(path=str(shots / "app_explain.png"), full_page=True)
    # slide to the first checkpoint: every image and map URL and the page URL change
    page.eval_on_selector("#checkpoint", "e => { e.value = 0; e.dispatchEvent(new Event('input')) }")
    _loaded(page)
    assert "it=2" in page.url and page.url != url_before
    after = _map_srcs(page)
    assert all(a != b for a, b in zip(before, after))
    # toggle polarity
    page.select_option("#polarity", "signed")
    _loaded(page)
    assert "pol=signed" in page.url
    assert all("polarity=signed" in s for s in _map_srcs(page) if "/maps/" in s)
    # the URL alone restores the view
    page.goto(page.url)
    _loaded(page)
    assert page.input_value("#polarity") == "signed" and page.input_value("#iteration") == "2"
    page.click("a[data-view=deblend]")
    _loaded(page)
    assert "view=deblend" in page.url
    page.screenshot(path=str(shots / "app_deblend.png"), full_page=True)
    page.click("a[data-view=training]")
    page.wait_for_selector(".chart line.mark", state="attached")
    assert page.locator(".chart").count() >= 2
    page.screenshot(path=str(shots / "app_training.png"), full_page=True)


def test_units_table_gallery_and_ablation(page, server, tmp_path):
    shots = Path(os.environ.get("GALAXAI_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.goto(server + "/?view=units&layer=trunk&sort=unit")
    page.wait_for_selector("table.units tbody tr", timeout=60_000)
    assert page.locator("#message").inner_text() == ""
    assert page.locator("table.units tbody tr").count() == int(
        page.eval_on_selector("#layer", "e => e.selectedOptions[0].text.match(/\\((\\d+) units/)[1]"))
    # click a unit: its gallery, and the URL says which
    page.click("table.units tbody tr[data-unit='1']")
    page.wait_for_function("document.querySelector('img.gallery')?.naturalWidth > 0", timeout=60_000)
    assert "unit=1" in page.url
    # ablate every unit of the layer: the after image differs from the before image
    page.check("#all-units")
    page.wait_for_selector("img.after-a", timeout=60_000)
    assert "sel=0%2C1" in page.url or "sel=0,1" in page.url
    srcs = page.eval_on_selector_all(".outputs img", "els => Object.fromEntries(els.map(e => [e.className, e.src]))")
    assert srcs["after-a"] != srcs["before-a"] and srcs["after-a"].startswith("data:image/png")
    assert "ΔPSNR" in page.locator(".outputs").inner_text()
    page.wait_for_function("[...document.querySelectorAll('.units-side img')].every(e => e.complete && e.naturalWidth > 0)")
    page.screenshot(path=str(shots / "app_units.png"), full_page=True)
    # α = 0 leaves the outputs as they were
    page.eval_on_selector("#alpha", "e => { e.value = 0; e.dispatchEvent(new Event('change')) }")
    page.wait_for_function("location.search.includes('alpha=0')")
    page.wait_for_function("document.querySelector('img.after-a')?.src === document.querySelector('img.before-a')?.src",
                           timeout=60_000)
