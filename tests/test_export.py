"""Figures and tables to take away: PNG/SVG through plotly's own export, and one self-contained HTML view."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from vlod_core import export
from vlod_core.figures import tokens

pytestmark = pytest.mark.slow  # drives Chromium through kaleido

ROWS = [
    {"token": t, "std_kl": 0.5, "lang_kl": 0.2, "vis_kl": 0.3, "vds": 0.1, "logratio": 0.1}
    | {"logratio_lang": 0.05, "logratio_vis": 0.05}
    for t in ("it", "is", "red")
]


def test_view_html_is_one_self_contained_page_of_figures_tables_and_images():
    table = pd.DataFrame(
        {"rule": ["standard", "vgs"], "accuracy": [0.61, 0.75], "image": ["data:image/png;base64,AAA", None]}
    )
    page = export.view_html(
        "Answers <and> tokens",
        [
            ("token strip", tokens.token_strip(ROWS)),
            ("numbers", table),
            ("the image", Image.new("RGB", (8, 8))),
            ("note", "a < b"),
        ],
        link="http://localhost:8501/?sample=3",
    )
    assert page.startswith("<!DOCTYPE html>") and "<title>Answers &lt;and&gt; tokens</title>" in page
    # plotly.js inline, once, and no script fetched from anywhere: the file works offline
    assert page.count("* plotly.js v") == 1 and "<script src" not in page and page.count("Plotly.newPlot") == 1
    assert "<td>vgs</td>" in page and "<td>0.75</td>" in page and '<img src="data:image/png;base64,AAA"' in page
    assert "a &lt; b" in page and 'href="http://localhost:8501/?sample=3"' in page
    assert '<img alt="the image" src="data:image/png;base64,' in page


def test_file_names_are_readable_and_safe():
    assert export.file_stem("vlod answers Token strip sample 3") == "vlod-answers-token-strip-sample-3"
    assert export.file_stem("../../etc/passwd") == "etc-passwd"
    assert export.file_stem("???") == "vlod"


@pytest.mark.skipif(export.find_browser() is None, reason="no Chrome or Chromium for kaleido")
def test_a_figure_exports_as_png_and_svg():
    fig = tokens.token_strip(ROWS)
    png, svg = export.figure_bytes(fig, "png", width=600), export.figure_bytes(fig, "svg", width=600)
    assert png.startswith(b"\x89PNG")
    image = Image.open(__import__("io").BytesIO(png))
    assert image.size == (1200, 2 * fig.layout.height)  # scale 2
    assert b"<svg" in svg[:400] and b"red" in svg
    with pytest.raises(ValueError, match="format"):
        export.figure_bytes(go.Figure(), "gif")


def test_no_browser_is_one_clear_sentence(monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chrome")
    assert export.find_browser() is None
    for call in (lambda: export.figure_bytes(go.Figure(), "png"), export.start_browser):
        with pytest.raises(export.ExportError, match="needs Chrome or Chromium"):
            call()
