"""Figures and tables to take away: a figure as PNG or SVG, and one self-contained HTML page of a view.

PNG and SVG are plotly's own static export (kaleido), which renders in a headless Chrome or Chromium on
this machine: `BROWSER_PATH` names it, else the usual install paths are searched (`/usr/bin/chromium` on
Debian and in CI). Each export starts a browser (~4 s) unless `start_browser()` has started kaleido's
persistent one, after which an export takes ~0.3 s; the app starts it once per server. Without a browser,
`ExportError` says so in one sentence. Nothing here keeps state: the persistent browser is kaleido's.

The HTML page embeds plotly.js once and every figure stays interactive; tables become HTML tables and
images data URIs, so the file opens anywhere without a network (a slide, a lab report).
"""

from __future__ import annotations

import atexit
import base64
import html
import io
import os
import shutil
import warnings
from datetime import datetime, timezone

import plotly.graph_objects as go
from PIL import Image

FORMATS = ("png", "svg")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class ExportError(RuntimeError):
    """A figure cannot be exported here; the message says why and what to do."""


def find_browser() -> str | None:
    """The Chrome/Chromium kaleido will drive: $BROWSER_PATH, else the first of BROWSERS on the PATH."""
    given = os.environ.get("BROWSER_PATH")
    if given:
        return given if os.path.isfile(given) else None
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _browser() -> str:
    browser = find_browser()
    if browser is None:
        raise ExportError("PNG and SVG export needs Chrome or Chromium on the server; set BROWSER_PATH to it")
    os.environ.setdefault("BROWSER_PATH", browser)  # where kaleido's choreographer looks first
    return browser


def start_browser() -> None:
    """Start kaleido's persistent browser for this process (call once; it is stopped at exit)."""
    _browser()
    try:
        import kaleido
    except ImportError:
        raise ExportError("PNG and SVG export needs the kaleido package (pip install -r requirements.txt)") from None
    kaleido.start_sync_server(silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)


def figure_bytes(fig: go.Figure, fmt: str, width: int | None = None, scale: float = 2.0) -> bytes:
    """The figure as PNG or SVG bytes, at its own height and `width` pixels (default 1000)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    _browser()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "kopts is ignored if using a server": the server is used on purpose
        try:
            return fig.to_image(format=fmt, width=width or 1000, height=fig.layout.height or 450, scale=scale)
        except Exception as error:  # a browser that dies or hangs: one sentence for the page
            raise ExportError(f"the figure could not be rendered ({type(error).__name__}: {error})") from None


def file_stem(text: str) -> str:
    """A readable, safe file name stem: 'vlod-token-strip-sample-3'."""
    cleaned = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in cleaned.split("-") if part)[:80] or "vlod"


def _image_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _cell(value) -> str:
    if isinstance(value, str) and value.startswith("data:image/"):
        return f'<img src="{value}" width="48" style="image-rendering:pixelated">'
    if isinstance(value, float):
        return "–" if value != value else f"{value:.4g}"
    return html.escape(str(value))


def _table_html(table) -> str:
    """A DataFrame as an HTML table; thumbnails given as data URIs become images."""
    shown = table.copy()
    for column in shown.columns:
        shown[column] = [_cell(v) for v in shown[column]]
    return shown.to_html(index=False, border=0, escape=False)


def view_html(title: str, parts: list[tuple[str, object]], link: str | None = None) -> str:
    """A self-contained HTML page of a view.

    `parts` are (heading, content) in page order; content is a plotly Figure, a table (anything with
    `to_html`, e.g. a pandas DataFrame), a PIL image, or text (escaped, shown as a paragraph).
    """
    body = []
    plotly_included = False
    for heading, content in parts:
        if heading:
            body.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(content, go.Figure):
            body.append(content.to_html(full_html=False, include_plotlyjs=not plotly_included))
            plotly_included = True
        elif isinstance(content, Image.Image):
            body.append(
                f'<img alt="{html.escape(heading)}" src="{_image_uri(content)}" style="image-rendering:pixelated;width:256px">'
            )
        elif hasattr(content, "to_html"):
            body.append(_table_html(content))
        else:
            body.append(f"<p>{html.escape(str(content))}</p>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    source = f' · <a href="{html.escape(link)}">the live view</a>' if link else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; font-size: 14px; margin: 0.5em 0 1.5em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
th {{ background: #f4f4f4; }}
h2 {{ margin-top: 1.6em; font-size: 1.2em; }}
footer {{ color: #777; font-size: 13px; margin-top: 3em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{chr(10).join(body)}
<footer>Exported from vlod on {stamp}{source}.</footer>
</body></html>
"""
