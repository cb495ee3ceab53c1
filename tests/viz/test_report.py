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
    assert [th.text for th in root.iter("th")][:3] == ["method", "psnr_pooled_mean", "n"]
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
