"""Tests of galaxai.viz.report: valid, escaped, self-contained HTML with working figure links."""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from galaxai.viz.render import save_png
from galaxai.viz.report import Report


class _Collector(HTMLParser):
    """Collect tags, attributes and text with the standard-library HTML parser."""

    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _png_bytes(value):
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def report(tmp_path):
    fig = save_png(np.random.default_rng(0).random((8, 8, 3)), tmp_path / "src" / "panel.png")
    table = pd.DataFrame({"psnr_pooled_mean": [33.4712, 21.0], "n": [10, 10]},
                         index=pd.Index(["GAN", "copy <floor>"], name="method"))
    return (Report("Run <00012> & friends", subtitle="checkpoint 000100000")
            .add_section("Scores", "PSNR at data_range 1.\n\nSSIM at <both> ranges & labelled.")
            .add_table(table, "Methods & times")
            .add_table([{"bin": "(0, 10]", "psnr": float("nan")}, {"bin": "(10, 30]", "psnr": 30.0}])
            .add_section("Figures <img src=x onerror=alert(1)>")
            .add_figure(fig, 'Blend 17: "truths" | blend | outputs')
            .add_figure(_png_bytes(200), "from bytes")
            .add_note("BN in eval mode")
            .add_note("<script>alert('x')</script>", kind="warning"))


def test_report_is_valid_escaped_html_with_linked_figures(report, tmp_path):
    out = report.write(tmp_path / "report")
    assert out == tmp_path / "report" / "index.html"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    root = ET.fromstring(text.split("\n", 1)[1])  # well-formed (XHTML-compatible) markup
    assert root.tag == "html"
    parser = _Collector()
    parser.feed(text)
    body_text = "".join(parser.text)
    # sections, text and table content are present, with the text escaped
    assert [e.text for e in root.iter("h2")] == ["Scores", "Figures <img src=x onerror=alert(1)>"]
    assert "SSIM at <both> ranges & labelled." in body_text
    assert "&lt;both&gt; ranges &amp; labelled" in text
    assert "<script" not in text and "<img src=x" not in text
    assert "Run &lt;00012&gt; &amp; friends" in text
    cells = [td.text for td in root.iter("td")]
    assert "copy <floor>" in cells and "33.47" in cells and "–" in cells
    assert [th.text for th in root.iter("th")][:3] == ["method", "PSNR pooled mean (dB)", "n"]
    # figures: relative links to files that exist beside index.html, with the original bytes
    srcs = [a["src"] for tag, a in parser.attrs if tag == "img"]
    assert srcs == ["figures/fig-001.png", "figures/fig-002.png"]
    for src in srcs:
        assert (out.parent / src).is_file()
    assert (out.parent / srcs[0]).read_bytes() == (tmp_path / "src" / "panel.png").read_bytes()
    assert (out.parent / srcs[1]).read_bytes() == _png_bytes(200)
    # self-contained: no scripts, external stylesheets or remote resources
    assert "script" not in parser.tags and "link" not in parser.tags
    assert "http://" not in text and "https://" not in text
    assert [a.get("href") for tag, a in parser.attrs if tag == "a"] == ["#sec-1", "#sec-2"]


def test_rewrite_removes_stale_figures_only(report, tmp_path):
    out_dir = tmp_path / "report"
    report.write(out_dir)
    (out_dir / "figures" / "mine.txt").write_text("keep")
    Report("short").add_figure(_png_bytes(10)).write(out_dir)
    assert sorted(p.name for p in (out_dir / "figures").iterdir()) == ["fig-001.png", "mine.txt"]
    assert not [p for p in out_dir.rglob("*.tmp")]


def test_report_input_errors(tmp_path):
    r = Report("x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        r.add_figure(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="not a PNG"):
        r.add_figure(b"GIF89a")
    (tmp_path / "fake.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a valid PNG"):
        r.add_figure(tmp_path / "fake.png")
    with pytest.raises(ValueError, match="unsupported"):
        r.add_figure(tmp_path / "fig.svg")
    with pytest.raises(ValueError, match="kind"):
        r.add_note("x", kind="error")
    with pytest.raises(TypeError, match="DataFrame or a list of dicts"):
        r.add_table("a,b\n1,2")


def test_headers_are_human_and_bin_edges_rounded(tmp_path):
    from galaxai.viz.report import human_header

    assert human_header("psnr_a_mean") == "PSNR A mean (dB)"
    assert human_header("ssim_b_dr1_mean") == "SSIM B (data range 1) mean"
    assert human_header("real called real") == "real called real"
    bins = pd.cut(pd.Series([1.0, 7.0, 20.0]), [0.0, 6.1739999999999995, 12.401, 30.0])
    page = Report("bins").add_table(pd.DataFrame({"separation_bin": bins, "psnr_a_mean": [1.0, 2.0, 3.0]}))
    text = page.write(tmp_path).read_text()
    assert "(6.174, 12.401]" in text and "6.1739999999999995" not in text
    assert '<div class="table-wrap"><table>' in text and "overflow-x: auto" in text


def test_wide_tables_scroll_inside_their_box_in_chromium(tmp_path):
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    wide = pd.DataFrame({f"psnr_{b}_dr{k}_mean_{i}": [12.3456789] for b in "ab" for k in (1, 2)
                         for i in range(6)})
    out = Report("wide").add_table(wide, "a table far wider than the page").write(tmp_path)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(out.as_uri())
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        page_width = page.evaluate("document.documentElement.clientWidth")
        table_width = page.evaluate("document.querySelector('table').scrollWidth")
        boxes = page.eval_on_selector_all(".table-wrap", "els => els.map(e => e.getBoundingClientRect().right)")
        scroll = page.evaluate("document.documentElement.scrollWidth")
        browser.close()
    assert table_width > page_width  # the table is wider than the page ...
    assert scroll <= page_width and all(right <= page_width for right in boxes)  # ... but scrolls in its box
