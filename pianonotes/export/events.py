"""Note events as CSV or JSON tables, and reading them back.

Columns: ``onset``, ``offset`` (seconds, 4 decimals: 0.1 ms), ``pitch`` (MIDI 21-108), ``name`` (e.g.
``C#4``; ignored when reading), ``velocity`` (1-127), ``confidence`` (0-1, 3 decimals). Rows are sorted
by onset, then pitch. ``offset`` is the note's end as the notes give it; :func:`pianonotes.export.write_notes`
passes them with the ``--note-length`` convention applied (``key``: the key release; ``sounding``: until
the key and the sustain pedal are up) and says which: a last column ``note_length`` in the CSV, a
top-level ``"note_length"`` in the JSON (both absent when the writer is not told; ignored when reading).

JSON layout::

    {"format": "pianonotes-events", "version": 1, "note_length": "key", "meta": {...},
     "notes": [
       {"onset": 0.5, "offset": 1.0, "pitch": 60, "name": "C4", "velocity": 80, "confidence": 1.0},
       ...]}
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

from pianonotes.errors import PianonotesError
from pianonotes.fileio import write_text_atomic
from pianonotes.notes import Note, check_note_length, pitch_name

COLUMNS = ("onset", "offset", "pitch", "name", "velocity", "confidence")
JSON_FORMAT = "pianonotes-events"
JSON_VERSION = 1


def _row(n: Note) -> dict[str, Any]:
    onset = round(n.onset, 4)
    offset = max(round(n.offset, 4), round(onset + 0.0001, 4))  # stays after the onset when read back
    return {
        "onset": onset,
        "offset": offset,
        "pitch": n.pitch,
        "name": pitch_name(n.pitch),
        "velocity": n.velocity,
        "confidence": round(float(n.confidence), 3),
    }


def _rows(notes: Iterable[Note]) -> list[dict[str, Any]]:
    return [_row(n) for n in sorted(notes, key=lambda n: (n.onset, n.pitch, n.offset))]


def write_csv(path: str | os.PathLike, notes: Iterable[Note], *, overwrite: bool = True,
              note_length: str | None = None) -> Path:
    """Write note events as CSV (header row, then one note per row), atomically. ``note_length``
    ("key" or "sounding": what ``offset`` means) adds a ``note_length`` column saying so on every row."""
    if note_length is not None:
        check_note_length(note_length)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS + (("note_length",) if note_length else ()))
    for r in _rows(notes):
        w.writerow([
            f"{r['onset']:.4f}", f"{r['offset']:.4f}", r["pitch"], r["name"], r["velocity"],
            f"{r['confidence']:.3f}", *((note_length,) if note_length else ()),
        ])
    return write_text_atomic(path, buf.getvalue(), overwrite=overwrite)


def write_json(
    path: str | os.PathLike,
    notes: Iterable[Note],
    *,
    meta: dict | None = None,
    overwrite: bool = True,
    note_length: str | None = None,
) -> Path:
    """Write note events as JSON (one note per line), with an optional ``meta`` dict, atomically.
    ``note_length`` ("key" or "sounding": what ``offset`` means) is written as a top-level field."""
    head_dict: dict[str, Any] = {"format": JSON_FORMAT, "version": JSON_VERSION}
    if note_length is not None:
        head_dict["note_length"] = check_note_length(note_length)
    try:
        head = json.dumps({**head_dict, "meta": dict(meta or {})})
    except (TypeError, ValueError) as exc:
        raise PianonotesError(
            f"meta cannot be written as JSON: {exc}; use plain numbers and strings"
        ) from exc
    rows = [json.dumps(r) for r in _rows(notes)]
    body = ",\n  ".join(rows)
    text = head[:-1] + (', "notes": [\n  ' + body + "\n]}\n" if rows else ', "notes": []}\n')
    return write_text_atomic(path, text, overwrite=overwrite)


def _note_from(rec: dict, where: str) -> Note:
    try:
        onset = float(rec["onset"])
        offset = float(rec["offset"])
        pitch = int(rec["pitch"])
        vel = rec.get("velocity")
        velocity = 80 if vel in (None, "") else int(vel)
        conf = rec.get("confidence")
        confidence = 1.0 if conf in (None, "") else float(conf)
    except KeyError as exc:
        raise PianonotesError(
            f"{where}: missing column {exc.args[0]!r}; need onset, offset and pitch"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise PianonotesError(
            f"{where}: {exc}; onset/offset must be seconds and pitch a MIDI number"
        ) from exc
    if not (math.isfinite(onset) and math.isfinite(offset)):
        raise PianonotesError(f"{where}: onset and offset must be finite numbers of seconds")
    try:
        return Note(onset, offset, pitch, velocity, confidence=confidence)
    except PianonotesError as exc:
        raise PianonotesError(f"{where}: {exc}") from exc


def read_events(path: str | os.PathLike) -> list[Note]:
    """Read notes back from a CSV or JSON file written by :func:`write_csv` / :func:`write_json`.

    The format comes from the extension (``.csv``, ``.json``), else from the content. JSON may also be a
    bare list of note objects. Returns the notes sorted.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PianonotesError(f"events file {path} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PianonotesError(f"cannot read {path}: {exc}") from exc
    suffix = path.suffix.lower()
    is_json = suffix == ".json" or (suffix != ".csv" and text.lstrip()[:1] in ("{", "["))
    notes: list[Note] = []
    if is_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PianonotesError(f"{path} is not valid JSON: {exc}") from exc
        items = data.get("notes") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise PianonotesError(f"{path} holds no 'notes' list; is it a pianonotes events file?")
        for i, rec in enumerate(items):
            if not isinstance(rec, dict):
                raise PianonotesError(f"{path}: note {i} is not an object")
            notes.append(_note_from(rec, f"{path}: note {i}"))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or not {"onset", "offset", "pitch"} <= set(reader.fieldnames):
            raise PianonotesError(f"{path} has no onset, offset and pitch columns; is it a pianonotes CSV?")
        for rec in reader:
            notes.append(_note_from(rec, f"{path}: line {reader.line_num}"))
    notes.sort()
    return notes
