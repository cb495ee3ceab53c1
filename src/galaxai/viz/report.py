"""A static, self-contained HTML report: sections, figures, tables and notes in one page.

The report is the default artefact of a run (``runs/<id>/report/index.html``): a single
``index.html`` with inline CSS (no JavaScript, CDN, web fonts or network access) and its figures
copied beside it into ``figures/``, linked relatively, so the directory can be zipped, mailed or
served as it is. All text is HTML-escaped. The page is written as well-formed XHTML-compatible
HTML5, and every file is written atomically (:mod:`galaxai._atomic`).

Example
-------
>>> report = Report("Deblender run 00012")                      # doctest: +SKIP
>>> report.add_section("Scores", "Mean PSNR over 10 000 test blends.")
>>> report.add_table(compare_methods(...), "PSNR in dB, data_range 1")
>>> report.add_figure("figures/panel.png", "Blend 17: truths, blend, outputs")
>>> report.write("runs/00012-paper-deblender/report")
"""
from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import galaxai
from galaxai._atomic import atomic_write_bytes, atomic_write_text

__all__ = ["Report", "human_header"]

_FIGURE_TYPES = {".png": b"\x89PNG\r\n\x1a\n", ".gif": b"GIF8", ".jpg": b"\xff\xd8", ".jpeg": b"\xff\xd8"}
_NOTE_KINDS = ("note", "warning")
_FIGURE_NAME = re.compile(r"^fig-\d{3}\.(png|gif|jpg|jpeg)$")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0; color: #1d1d1f; background: #fff; line-height: 1.5; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 3em; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
nav ol { padding-left: 1.4em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #eee; }
figcaption, caption { font-size: 0.9em; color: #555; text-align: left; padding: 0.3em 0; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.9em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f6; }
td.text, th.text { text-align: left; }
.note { border-left: 4px solid #4a7bd0; background: #f3f6fc; padding: 0.5em 1em; margin: 1em 0; }
.warning { border-left-color: #d08a1c; background: #fdf6ea; }
footer { margin-top: 3em; font-size: 0.8em; color: #888; }
"""


@dataclass(frozen=True)
class _Block:
    kind: str          # "section" | "text" | "figure" | "table" | "note"
    payload: Any


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _paragraphs(text: str) -> str:
    """Escaped text; blank lines separate paragraphs, single newlines become line breaks."""
    parts = [p.strip() for p in re.split(r"\n\s*\n", str(text)) if p.strip()]
    return "\n".join("<p>" + "<br />".join(_esc(line) for line in p.splitlines()) + "</p>" for p in parts)


#: Words of machine column names (``psnr_a_mean``) as people write them; units in brackets.
_WORDS = {"psnr": "PSNR", "ssim": "SSIM", "a": "A", "b": "B", "dr1": "(data range 1)", "dr2": "(data range 2)", "diff": "difference",
          "rmse": "RMSE", "val": "validation",
          "std": "s.d.", "sd": "s.d.", "se": "s.e.", "n": "n", "px": "(px)", "auc": "AUC",
          "aopc": "AOPC", "ci": "CI", "lo": "low", "hi": "high", "p": "p"}
_UNITS = {"PSNR": "dB"}
_FLOAT = re.compile(r"-?\d+\.\d{4,}(?:e[-+]?\d+)?")


def human_header(name: str) -> str:
    """A table header for a column name: ``psnr_a_mean`` → ``PSNR A mean (dB)``.

    Names that already contain a space are taken as written by a person and kept.
    """
    if " " in name or "_" not in name:
        return name
    words = [_WORDS.get(w.lower(), w) for w in name.split("_") if w]
    units = [f"({_UNITS[w]})" for w in words if w in _UNITS]
    return " ".join(words + units)


def _short_floats(text: str) -> str:
    """Float noise in labels rounded to 4 significant digits: ``(6.1739999999999995, 12.401]``."""
    return _FLOAT.sub(lambda m: f"{float(m.group()):.4g}", text)


def _cell(value: Any, float_format: str) -> tuple[str, bool]:
    """Formatted, escaped cell text and whether it is numeric (right-aligned)."""
    if isinstance(value, pd.Interval):
        return _esc(_short_floats(str(value))), False
    if isinstance(value, bool) or value is None:
        return _esc(value), False
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return _esc(int(value)), True
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f"):
        value = float(value)
        if math.isnan(value):
            return "–", True
        return _esc(float_format.format(value) if math.isfinite(value) else value), True
    return _esc(_short_floats(str(value))), False


def _td(text: str, numeric: bool) -> str:
    return f"<td>{text}</td>" if numeric else f'<td class="text">{text}</td>'


class Report:
    """A static HTML report built block by block, then written with :meth:`write`.

    Content is captured when it is added (figure files are read at once), so later changes to
    the inputs do not alter the report.

    Parameters
    ----------
    title : str
        Page title and top heading.
    subtitle : str, optional
        A line of text under the title (e.g. the run directory and checkpoint).
    """

    def __init__(self, title: str, subtitle: str | None = None) -> None:
        self.title = str(title)
        self.subtitle = subtitle
        self._blocks: list[_Block] = []

    def add_section(self, title: str, text: str = "") -> Report:
        """Start a new section (listed in the table of contents); ``text`` is its introduction.

        Blank lines in ``text`` separate paragraphs. Returns ``self`` for chaining.
        """
        self._blocks.append(_Block("section", str(title)))
        if str(text).strip():
            self._blocks.append(_Block("text", str(text)))
        return self

    def add_text(self, text: str) -> Report:
        """Add paragraphs of plain text to the current section."""
        self._blocks.append(_Block("text", str(text)))
        return self

    def add_figure(self, figure: str | os.PathLike | bytes, caption: str = "", *, alt: str | None = None) -> Report:
        """Add a figure from a PNG/GIF/JPEG file path or from PNG bytes.

        Parameters
        ----------
        figure : path-like or bytes
            An image file (``.png``, ``.gif``, ``.jpg``, ``.jpeg``) or the bytes of a PNG.
        caption : str, optional
        alt : str, optional
            Alternative text; defaults to the caption.
        """
        if isinstance(figure, (bytes, bytearray)):
            data, suffix = bytes(figure), ".png"
            if not data.startswith(_FIGURE_TYPES[".png"]):
                raise ValueError("figure bytes are not a PNG; pass PNG bytes or a path to an image file")
        else:
            path = Path(figure)
            suffix = path.suffix.lower()
            if suffix not in _FIGURE_TYPES:
                raise ValueError(f"figure {path}: unsupported type {suffix!r}; use one of "
                                 f"{sorted(_FIGURE_TYPES)}")
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise FileNotFoundError(f"figure file {path} does not exist; write it before "
                                        "adding it to the report") from None
            if not data.startswith(_FIGURE_TYPES[suffix]):
                raise ValueError(f"figure {path} is not a valid {suffix[1:].upper()} file")
        self._blocks.append(_Block("figure", (data, suffix, str(caption), caption if alt is None else alt)))
        return self

    def add_table(
        self,
        table: pd.DataFrame | Sequence[Mapping[str, Any]],
        caption: str = "",
        *,
        float_format: str = "{:.4g}",
    ) -> Report:
        """Add a table from a DataFrame or a list of dicts (one dict per row).

        A DataFrame's index is shown as the first column unless it is the default
        ``0 .. n-1`` range. Floats use ``float_format``; NaN shows as a dash.
        """
        if isinstance(table, pd.DataFrame):
            frame = table
        elif isinstance(table, Sequence) and all(isinstance(r, Mapping) for r in table):
            frame = pd.DataFrame(list(table))
        else:
            raise TypeError("add_table takes a pandas DataFrame or a list of dicts, "
                            f"got {type(table).__name__}")
        show_index = not (isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
                          and frame.index.step == 1 and frame.index.name is None)
        if show_index:
            frame = frame.reset_index()
        header = [human_header(str(c)) for c in frame.columns]
        rows = [[_cell(v, float_format) for v in row] for row in frame.itertuples(index=False, name=None)]
        self._blocks.append(_Block("table", (header, rows, str(caption))))
        return self

    def add_note(self, text: str, *, kind: str = "note") -> Report:
        """Add a highlighted note (``kind="note"``) or warning (``kind="warning"``)."""
        if kind not in _NOTE_KINDS:
            raise ValueError(f"kind must be one of {_NOTE_KINDS}, got {kind!r}")
        self._blocks.append(_Block("note", (str(text), kind)))
        return self

    def _render(self, figure_names: list[str]) -> str:
        sections = [b.payload for b in self._blocks if b.kind == "section"]
        out = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8" />',
            '<meta name="viewport" content="width=device-width, initial-scale=1" />',
            f'<meta name="generator" content="galaxai {_esc(galaxai.__version__)}" />',
            f"<title>{_esc(self.title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            "<main>",
            f"<h1>{_esc(self.title)}</h1>",
        ]
        if self.subtitle:
            out.append(f'<p class="subtitle">{_esc(self.subtitle)}</p>')
        if len(sections) > 1:
            items = "".join(f'<li><a href="#sec-{i}">{_esc(t)}</a></li>'
                            for i, t in enumerate(sections, start=1))
            out.append(f"<nav><ol>{items}</ol></nav>")
        n_section, n_figure = 0, 0
        for block in self._blocks:
            if block.kind == "section":
                n_section += 1
                out.append(f'<h2 id="sec-{n_section}">{_esc(block.payload)}</h2>')
            elif block.kind == "text":
                out.append(_paragraphs(block.payload))
            elif block.kind == "figure":
                _, _, caption, alt = block.payload
                name = figure_names[n_figure]
                n_figure += 1
                cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
                out.append(f'<figure><img src="figures/{_esc(name)}" alt="{_esc(alt)}" />{cap}</figure>')
            elif block.kind == "table":
                header, rows, caption = block.payload
                cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
                head = "".join(f"<th>{_esc(h)}</th>" for h in header)
                body = "".join("<tr>" + "".join(_td(text, numeric) for text, numeric in row) + "</tr>"
                               for row in rows)
                out.append(f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
                           f"<tbody>{body}</tbody></table></div>")
            else:
                text, kind = block.payload
                cls = "note" if kind == "note" else "note warning"
                out.append(f'<div class="{cls}"><strong>{kind.capitalize()}:</strong> {_esc(text)}</div>')
        out += [f"<footer>Generated by galaxai {_esc(galaxai.__version__)}.</footer>",
                "</main>", "</body>", "</html>", ""]
        return "\n".join(out)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write ``out_dir/index.html`` and ``out_dir/figures/fig-NNN.<ext>``; return the HTML path.

        Figures left in ``figures/`` by an earlier write of a longer report (same naming scheme)
        are removed; other files in ``out_dir`` are not touched.
        """
        out_dir = Path(out_dir)
        fig_dir = out_dir / "figures"
        names = []
        for block in self._blocks:
            if block.kind == "figure":
                data, suffix, _, _ = block.payload
                name = f"fig-{len(names) + 1:03d}{suffix}"
                atomic_write_bytes(fig_dir / name, data)
                names.append(name)
        if fig_dir.is_dir():
            for stale in fig_dir.iterdir():
                if _FIGURE_NAME.match(stale.name) and stale.name not in names:
                    stale.unlink()
        return atomic_write_text(out_dir / "index.html", self._render(names))
