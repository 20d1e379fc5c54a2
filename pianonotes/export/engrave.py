"""Engrave MusicXML as sheet music: SVG with verovio, PNG and PDF from those SVGs with cairosvg.

Pages: verovio lays the score out on A4 pages.

* ``.svg``: one file per page, ``out.svg``, ``out-2.svg``, ``out-3.svg``, ...
* ``.png``: the same naming, one image per page (150 dpi, white background).
* ``.pdf``: one PDF holding every page (cairosvg's ``svg2pdf`` draws each page's SVG as a one-page PDF;
  pypdf joins them; no MuseScore is needed).

PNG and PDF need the ``cairosvg`` package (the ``render`` extra) and the system cairo library (Debian
``libcairo2``). MuseScore 3 (``mscore3 -o out.pdf in.musicxml``) gives another, slower route to PDF
but is not required.

Verovio writes text-embedded SMuFL glyphs (the note in the metronome mark) in its Leipzig font as a
CSS web font, which cairo cannot use: it would draw a box. :func:`render_svg_pages` therefore replaces
those glyphs with the Unicode note symbols (♩, ♪) in DejaVu Sans, in every output format.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from pianonotes.errors import PianonotesError
from pianonotes.fileio import atomic_path, write_bytes_atomic

ENGRAVE_EXTENSIONS = (".svg", ".png", ".pdf")
PNG_DPI = 150
_MM_PER_INCH = 25.4

# Verovio page geometry is in tenths of a millimetre: an A4 page.
VEROVIO_OPTIONS = {
    "pageWidth": 2100,
    "pageHeight": 2970,
    "pageMarginLeft": 100,
    "pageMarginRight": 100,
    "pageMarginTop": 80,
    "pageMarginBottom": 80,
    "scale": 70,
    "scaleToPageSize": True,
    "adjustPageHeight": False,
    "breaks": "auto",
    "header": "auto",
    "footer": "none",
}

# SMuFL metronome glyphs (Leipzig, private-use code points) to Unicode symbols a system font has.
_SMUFL_TEXT = {"\ueca5": "\u2669", "\ueca7": "\u266a", "\uecb7": ".", " ": "", "\u2009": "", "\u200a": "",
               "\u00a0": ""}  # a dotted note: note, space, dot
_SMUFL_TSPAN = re.compile(
    r'<tspan font-family="Leipzig" font-size="([0-9.]+)px">([^<]*)</tspan>'
)
_TEXT_FONT = "DejaVu Sans"


@dataclass(frozen=True)
class Engraving:
    """What :func:`engrave` wrote: the page files in order, and verovio's warnings (e.g. open ties)."""

    paths: list[Path]
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 (verovio logs there, not to Python)."""
    import sys

    lines: list[str] = []
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            lines.extend(line.strip() for line in text.splitlines() if line.strip())


def _unzip_mxl(data: bytes, name: str) -> str:
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            root = None
            if "META-INF/container.xml" in names:
                m = re.search(rb'full-path="([^"]+)"', z.read("META-INF/container.xml"))
                if m:
                    root = m.group(1).decode("utf-8")
            if root is None:
                root = next(
                    (n for n in names if not n.startswith("META-INF") and n.endswith((".xml", ".musicxml"))),
                    None,
                )
            if root is None or root not in names:
                raise PianonotesError(f"{name} holds no MusicXML score; is it a valid .mxl file?")
            return z.read(root).decode("utf-8")
    except zipfile.BadZipFile as exc:
        raise PianonotesError(f"{name} is not a valid compressed MusicXML (.mxl) file: {exc}") from exc


def _musicxml_text(src: str | bytes | os.PathLike) -> str:
    """MusicXML text from a path (``.musicxml``, ``.xml``, ``.mxl``), a string or bytes."""
    if isinstance(src, bytes):
        return _unzip_mxl(src, "the data") if src[:2] == b"PK" else src.decode("utf-8")
    if isinstance(src, str) and src.lstrip().startswith("<"):
        return src
    path = Path(src)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise PianonotesError(f"MusicXML file {path} not found") from exc
    except OSError as exc:
        raise PianonotesError(f"cannot read {path}: {exc.strerror}") from exc
    if data[:2] == b"PK":
        return _unzip_mxl(data, str(path))
    return data.decode("utf-8", "replace")


def _fix_smufl_text(svg: str) -> str:
    """Replace metronome-mark glyphs set in the Leipzig web font by Unicode symbols in a system font."""

    def repl(m: re.Match) -> str:
        chars = html.unescape(m.group(2))
        if not chars or any(c not in _SMUFL_TEXT for c in chars):
            return m.group(0)
        size = float(m.group(1)) * 0.62
        text = "".join(_SMUFL_TEXT[c] for c in chars)
        return f'<tspan font-family="{_TEXT_FONT}" font-size="{size:.0f}px">{html.escape(text)}</tspan>'

    return _SMUFL_TSPAN.sub(repl, svg)


Progress = Callable[[str, float], None]

# Share of the "engrave" stage taken by verovio's layout (loadData); the rest is rendering the pages.
_LAYOUT_SHARE = 0.5


def _report(progress: Progress | None, stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, min(max(float(fraction), 0.0), 1.0))


def render_svg_pages(musicxml: str | bytes | os.PathLike, *,
                     progress: Progress | None = None) -> tuple[list[str], list[str]]:
    """Lay out MusicXML with verovio. Returns (one SVG string per page, verovio's warning lines).

    ``progress(stage, fraction)``, if given, hears stage ``"engrave"``: 0.0 before the layout, then
    after the layout and after each page is rendered, ending at 1.0."""
    import verovio

    text = _musicxml_text(musicxml)
    verovio.enableLog(verovio.LOG_WARNING)
    tk = verovio.toolkit()
    tk.setOptions(dict(VEROVIO_OPTIONS))
    _report(progress, "engrave", 0.0)
    with _stderr_captured() as log:
        ok = tk.loadData(text)
        pages = []
        if ok:
            n = tk.getPageCount()
            _report(progress, "engrave", _LAYOUT_SHARE)
            for i in range(1, n + 1):
                pages.append(tk.renderToSVG(i))
                _report(progress, "engrave", _LAYOUT_SHARE + (1 - _LAYOUT_SHARE) * i / n)
    warnings = [re.sub(r"^\[(Warning|Error)\]\s*", "", line) for line in log]
    if not ok or not pages:
        detail = "; ".join(warnings) or "no pages"
        raise PianonotesError(f"verovio could not engrave the MusicXML ({detail}); is it a valid score?")
    return [_fix_smufl_text(p) for p in pages], warnings


def page_path(out_path: str | os.PathLike, page: int) -> Path:
    """File for page ``page`` (1-based): ``out.svg``, then ``out-2.svg``, ``out-3.svg``, ..."""
    out = Path(out_path)
    return out if page == 1 else out.with_name(f"{out.stem}-{page}{out.suffix}")


def _svg_dpi() -> float:
    # With scaleToPageSize the SVG keeps the page size: one user unit is a tenth of a millimetre.
    return 10 * _MM_PER_INCH


def _cairosvg():
    try:
        import cairosvg
    except (ImportError, OSError) as exc:  # OSError: the cairo system library is missing
        raise PianonotesError(
            f"PNG and PDF output need cairosvg and the cairo library ({exc}); "
            "pip install cairosvg (and apt-get install libcairo2), or write .svg or .musicxml"
        ) from exc
    return cairosvg


def _write_pdf(pages: list[str], path: Path, *, overwrite: bool, progress: Progress | None = None) -> None:
    """All pages in one PDF: cairosvg's ``svg2pdf`` draws each SVG page as a one-page PDF, pypdf joins them."""
    import io

    cairosvg = _cairosvg()
    try:
        from pypdf import PdfReader, PdfWriter
    except ImportError as exc:
        raise PianonotesError(f"PDF output needs pypdf ({exc}); pip install pypdf, or write .svg or .png") from exc
    with atomic_path(path, overwrite=overwrite) as tmp:  # refuses an existing file before any drawing
        writer = PdfWriter()
        for i, svg in enumerate(pages, 1):
            one = cairosvg.svg2pdf(bytestring=svg.encode("utf-8"), dpi=_svg_dpi())
            writer.append(PdfReader(io.BytesIO(one)))
            _report(progress, "pages", i / len(pages))
        with open(tmp, "wb") as f:
            writer.write(f)


def engrave(
    musicxml_path_or_string: str | bytes | os.PathLike,
    out_path: str | os.PathLike,
    *,
    overwrite: bool = True,
    fmt: str | None = None,
    progress: Progress | None = None,
) -> Engraving:
    """Engrave MusicXML (a path, or the document as a string or bytes) to ``.svg``, ``.png`` or ``.pdf``.

    The format comes from ``out_path``'s extension, or ``fmt`` (``"svg"``, ``"png"``, ``"pdf"``). See the
    module docstring for multi-page naming. With ``overwrite=False`` an existing output file (any page)
    is an error and nothing is written. Writes are atomic per file. Returns the files written and
    verovio's warnings (a clean score has none). ``progress(stage, fraction)``, if given, hears the
    layout (stage ``"engrave"``, :func:`render_svg_pages`) and then the page files being written (stage
    ``"pages"``: 0.0, then after each page, ending at 1.0).
    """
    out = Path(out_path)
    kind = (fmt or out.suffix).lower().lstrip(".")
    if f".{kind}" not in ENGRAVE_EXTENSIONS:
        raise PianonotesError(
            f"cannot engrave to {out.name!r}; use one of {', '.join(ENGRAVE_EXTENSIONS)}"
        )
    pages, warnings = render_svg_pages(musicxml_path_or_string, progress=progress)
    if kind == "pdf":
        _report(progress, "pages", 0.0)
        _write_pdf(pages, out, overwrite=overwrite, progress=progress)
        return Engraving([out], warnings)
    paths = [page_path(out, i + 1) for i in range(len(pages))]
    if not overwrite:
        for p in paths:
            if p.exists():
                raise PianonotesError(f"{p} exists; pass --overwrite to replace it")
    _report(progress, "pages", 0.0)
    if kind == "svg":
        for i, (p, svg) in enumerate(zip(paths, pages), 1):
            write_bytes_atomic(p, svg.encode("utf-8"), overwrite=overwrite)
            _report(progress, "pages", i / len(pages))
    else:
        cairosvg = _cairosvg()
        width = round(VEROVIO_OPTIONS["pageWidth"] / 10 / _MM_PER_INCH * PNG_DPI)
        for i, (p, svg) in enumerate(zip(paths, pages), 1):
            png = cairosvg.svg2png(
                bytestring=svg.encode("utf-8"), output_width=width, background_color="white"
            )
            write_bytes_atomic(p, png, overwrite=overwrite)
            _report(progress, "pages", i / len(pages))
    return Engraving(paths, warnings)
