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
from pianonotes.export.beats import BeatGrid, Meter, estimate_beats, parse_meter
from pianonotes.export.hands import split_hands
from pianonotes.export.score import (DEFAULT_GRID, ScorePlan, notes_to_score, plan_score, score_to_musicxml,
                                     write_musicxml)
from pianonotes.export.tempo import estimate_tempo
from pianonotes.notes import Note, PedalEvent, check_note_length, rhythm_grid, score_releases, with_note_length

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
    "DEFAULT_GRID",
    "FORMATS",
    "BeatGrid",
    "Meter",
    "ScorePlan",
    "estimate_beats",
    "parse_meter",
    "plan_score",
    "write_all",
    "Engraving",
    "engrave",
    "estimate_tempo",
    "notes_to_score",
    "page_path",
    "read_events",
    "rhythm_grid",
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
    time_signature: str | None = None,
    overwrite: bool = False,
    fmt: str | None = None,
    grid: Sequence[int] = DEFAULT_GRID,
    plan: ScorePlan | None = None,
    pedals: Sequence[PedalEvent] | None = None,
    note_length: str = "key",
    progress=None,
) -> list[Path]:
    """Write notes in the format named by ``path``'s extension (or ``fmt``, e.g. ``"pdf"``); see FORMATS.

    ``.mid``/``.midi``: one Acoustic Grand Piano track, note times kept in seconds, with the score's
    tempo map, time and key signature, and CC64 where the notes carry key releases
    (:func:`~pianonotes.export.midi.score_midi_bytes`). ``.musicxml``/``.xml``/``.mxl``: a grand-staff
    score (:func:`notes_to_score`; ``.mxl`` compressed). ``.pdf``/``.svg``/``.png``: that score
    engraved (:func:`engrave`; SVG and PNG write one file per page, ``name-2.svg`` ...).
    ``.csv``/``.json``: note events. ``bpm`` (quarter notes per minute) and ``time_signature`` override
    the tracked tempo and meter; ``plan`` (:func:`plan_score`) reuses one analysis for several files.
    An existing file is an error unless ``overwrite``. Returns the files written.

    ``note_length`` chooses what note ends mean in MIDI, CSV and JSON (``--note-length``): ``"key"``
    the key releases, with ``pedals`` (the decoded sustain pedal) as CC64 in the MIDI; ``"sounding"``
    the key releases extended by ``pedals`` (:func:`pianonotes.notes.with_note_length`), no CC64. CSV
    and JSON say which. ``pedals=None``: the notes' own offsets are the sounding ends and the MIDI's CC64
    is implied by them. Scores always use the key releases, where the pedal is up the later of the
    key-down head's and the sounding end (:func:`pianonotes.notes.score_releases`). ``progress(stage, fraction)``, if given,
    hears how far the writing has got, each stage from 0.0 to 1.0: "plan", "score" and "musicxml"
    (:func:`notes_to_score`, :func:`write_musicxml`), "midi", and for engraved scores "engrave" (the
    layout and each page rendered) and "pages" (each page file written; :func:`engrave`).
    """
    check_note_length(note_length)
    return _write_one(Path(path), list(notes), None, title=title, bpm=bpm, time_signature=time_signature,
                      overwrite=overwrite, fmt=fmt, grid=grid, plan=plan, pedals=pedals, note_length=note_length,
                      progress=progress)


def _write_one(path: Path, notes: list[Note], scored: list[Note] | None, *, title, bpm, time_signature, overwrite,
               fmt, grid, plan, pedals, note_length, progress) -> list[Path]:
    """:func:`write_notes` with the score's notes (:func:`score_releases`) made once by the caller (None:
    made here when a score needs them)."""
    ext = _extension(path, fmt)
    kind = FORMATS[ext]
    if not overwrite and path.exists():
        raise PianonotesError(f"{path} exists; pass --overwrite to replace it")
    if kind == "csv":
        return [write_csv(path, with_note_length(notes, pedals, note_length), overwrite=overwrite,
                          note_length=note_length)]
    if kind == "json":
        meta = {"title": title}
        if bpm is not None:
            meta["bpm"] = float(bpm)
        return [write_json(path, with_note_length(notes, pedals, note_length), meta=meta, overwrite=overwrite,
                           note_length=note_length)]
    if scored is None and (plan is None or kind != "midi"):
        scored = score_releases(notes, pedals)
    if plan is None:
        plan = plan_score(scored, bpm=bpm, time_signature=time_signature, grid=grid)
    if kind == "midi":
        from pianonotes.export.midi import score_midi_bytes
        from pianonotes.fileio import write_bytes_atomic

        if progress is not None:
            progress("midi", 0.0)
        write_bytes_atomic(path, score_midi_bytes(notes, plan, pedals=pedals, note_length=note_length),
                           overwrite=overwrite)
        if progress is not None:
            progress("midi", 1.0)
        return [path]
    if kind == "musicxml":
        write_musicxml(path, scored, title=title, compressed=(ext == ".mxl"), overwrite=overwrite, plan=plan,
                       progress=progress)
        return [path]
    # engraved
    sc = notes_to_score(scored, title=title, plan=plan, progress=progress)
    return engrave(score_to_musicxml(sc), path, overwrite=overwrite, fmt=ext, progress=progress).paths


def write_all(
    paths: Sequence[str | os.PathLike],
    notes: Sequence[Note],
    *,
    title: str,
    bpm: float | None = None,
    time_signature: str | None = None,
    overwrite: bool = False,
    grid: Sequence[int] = DEFAULT_GRID,
    pedals: Sequence[PedalEvent] | None = None,
    note_length: str = "key",
    progress=None,
) -> list[Path]:
    """Write the same notes to several files (formats by extension): beats, meter, pickup and key are
    estimated once, so the MIDI, MusicXML and engraved score agree. ``pedals`` and ``note_length``: as
    in :func:`write_notes`; ``progress(stage, fraction)`` hears the plan and each score being built.
    Returns the files written."""
    paths = [Path(p) for p in paths]
    check_note_length(note_length)
    notes = list(notes)
    plan = scored = None
    if any(FORMATS[_extension(p, None)] not in ("csv", "json") for p in paths):
        if progress is not None:
            progress("plan", 0.0)
        scored = score_releases(notes, pedals)
        plan = plan_score(scored, bpm=bpm, time_signature=time_signature, grid=grid)
        if progress is not None:
            progress("plan", 1.0)
    written: list[Path] = []
    for p in paths:
        written += _write_one(p, notes, scored, title=title, bpm=bpm, time_signature=time_signature,
                              overwrite=overwrite, fmt=None, grid=grid, plan=plan, pedals=pedals,
                              note_length=note_length, progress=progress)
    return written
