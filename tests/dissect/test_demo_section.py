"""The demo's dissection section (quick)."""
from galaxai.viz.report import Report


def test_demo_section_adds_one_section_with_units_a_curve_and_an_lrp_map(tmp_path):
    from galaxai.dissect.workflow import demo_section

    report = Report("demo")
    demo_section(report, tmp_path, quick=True, seed=3, progress=False)
    html = report.write(tmp_path / "report").read_text()
    assert html.count("<h2") == 1 and "Dissection of the generator" in html
    assert "Generator LRP" in html and "random sets" in html
    assert "quick look, not a measurement" in html
    assert len(list((tmp_path / "report" / "figures").glob("fig-*.png"))) >= 2
