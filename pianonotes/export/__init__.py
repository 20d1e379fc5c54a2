"""Writing notes out: MIDI, MusicXML, engraved scores (PDF/SVG/PNG), CSV/JSON events, piano rolls.

Importing this package is cheap: music21, verovio, cairosvg and matplotlib are imported inside the
functions that need them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from pianonotes.errors import PianonotesError
from pianonotes.export.engrave import Engraving, engrave, page_path, render_svg_pages
from pianonotes.export.events import read_events, write_csv, write_json
from pianonotes.export.roll import write_piano_roll
from pianonotes.export.score import (
    estimate_tempo,
    notes_to_score,
    score_to_musicxml,
    split_hands,
    write_musicxml,
)
from pianonotes.notes import Note

# File extension -> writer kind. ".png" is the engraved score; the piano roll is write_piano_roll.
FORMATS: dict[str, str] = {
    ".mid": "midi",
    ".midi": "midi",
    ".musicxml": "musicxml",
    ".xml": "musicxml",
    ".mxl": "musicxml",
    ".pdf": "engraved",
    ".svg": "engraved",
    ".png": "engraved",
    ".csv": "csv",
    ".json": "json",
}

__all__ = [
    "FORMATS",
    "Engraving",
    "engrave",
    "estimate_tempo",
    "notes_to_score",
    "page_path",
    "read_events",
    "render_svg_pages",
    "score_to_musicxml",
    "split_hands",
    "write_csv",
    "write_json",
    "write_musicxml",
    "write_notes",
    "write_piano_roll",
]


def _extension(path: Path, fmt: str | None) -> str:
    ext = ("." + fmt.lower().lstrip(".")) if fmt else path.suffix.lower()
    if ext not in FORMATS:
        what = f"format {fmt!r}" if fmt else (f"extension {path.suffix!r}" if path.suffix else "no extension")
        raise PianonotesError(
            f"cannot write {path.name!r}: {what} is not supported; use one of {', '.join(FORMATS)}"
        )
    return ext


def write_notes(
    path: str | os.PathLike,
    notes: Sequence[Note],
    *,
    title: str,
    bpm: float | None = None,
    time_signature: str = "4/4",
    overwrite: bool = False,
    fmt: str | None = None,
    grid: Sequence[int] = (4,),
) -> list[Path]:
    """Write notes in the format named by ``path``'s extension (or ``fmt``, e.g. ``"pdf"``); see FORMATS.

    ``.mid``/``.midi``: one Acoustic Grand Piano track, note times kept in seconds, tempo ``bpm`` (or the
    estimated one) in the header. ``.musicxml``/``.xml``/``.mxl``: a grand-staff score
    (:func:`notes_to_score`; ``.mxl`` compressed). ``.pdf``/``.svg``/``.png``: that score engraved
    (:func:`engrave`; SVG and PNG write one file per page, ``name-2.svg`` ...). ``.csv``/``.json``: note
    events. An existing file is an error unless ``overwrite``. Returns the files written.
    """
    path = Path(path)
    ext = _extension(path, fmt)
    kind = FORMATS[ext]
    if not overwrite and path.exists():
        raise PianonotesError(f"{path} exists; pass --overwrite to replace it")
    notes = list(notes)
    if kind == "midi":
        from pianonotes.fileio import write_bytes_atomic
        from pianonotes.notes import midi_bytes

        tempo = float(bpm) if bpm is not None else estimate_tempo(notes)
        write_bytes_atomic(path, midi_bytes(notes, bpm=tempo), overwrite=overwrite)
        return [path]
    if kind == "csv":
        return [write_csv(path, notes, overwrite=overwrite)]
    if kind == "json":
        meta = {"title": title}
        if bpm is not None:
            meta["bpm"] = float(bpm)
        return [write_json(path, notes, meta=meta, overwrite=overwrite)]
    if kind == "musicxml":
        write_musicxml(
            path, notes, title=title, bpm=bpm, time_signature=time_signature, grid=grid,
            compressed=(ext == ".mxl"), overwrite=overwrite,
        )
        return [path]
    # engraved
    sc = notes_to_score(notes, title=title, bpm=bpm, time_signature=time_signature, grid=grid)
    return engrave(score_to_musicxml(sc), path, overwrite=overwrite, fmt=ext).paths
