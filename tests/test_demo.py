"""The quick demo runs end to end and its report shows every capability."""
import re

import pytest

from galaxai.api import DEFAULT_WEIGHTS
from galaxai.demo import run_demo

SECTIONS = ["Simulated galaxies", "Deblending: GAN vs classical", "discriminator call an image",
            "Training timeline", "Data audit", "zero-padded band", "Galaxy morphology",
            "size-only null", "Fig. 3 analogue", "Real galaxies: Hubble Deep Field",
            "Deblending real blends", "Polarized-LRP on real galaxies", "GAN realsky", "ROC AUC",
            "Paired differences", "own discriminator on the same real targets",
            "GAN Dissection and generator LRP", "Generator LRP",
            "Saliency-guided training (xAI-GAN) against baseline", "xAI-CycleGAN translation",
            "translated simulations"]


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="shipped weights missing")
def test_quick_demo_report(tmp_path):
    report = run_demo(tmp_path / "demo", quick=True)
    html = report.read_text()
    for title in SECTIONS:
        assert title in html, title
    figures = re.findall(r'src="(figures/[^"]+)"', html)
    assert len(figures) >= 8
    for rel in figures:
        assert (report.parent / rel).stat().st_size > 1000, rel
    # the audit section flags the paper's zero padding and passes noise padding
    assert re.search(r"zero \(paper\).*?PROBLEM", html, re.S)
    assert re.search(r"noise \(galaxai default\).*?clean", html, re.S)
    # the real-galaxy comparison lists the classical peers beside the GAN
    real = html[html.index("Deblending real blends"):]
    for peer in ("sep", "photutils", "copy", "half"):
        assert f">{peer}<" in real, peer
