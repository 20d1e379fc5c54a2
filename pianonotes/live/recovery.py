"""Rebuilding a take from its journal after a crash (``pianonotes recover``)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.live.journal import AUDIO_FORMAT, read_journal_audio, take_audio_path
from pianonotes.notes import Note


@dataclasses.dataclass
class RecoveredTake:
    folder: Path
    notes: list[Note]
    seconds: float
    method: str  # "audio" (re-transcribed) or "journal" (note events)
    outputs: list[str]  # outputs the take had asked for
    record: str | None
    pedals: list | None = None  # the sustain pedal when re-transcribed (None: from the note journal)


def take_meta(folder: str | os.PathLike) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / "take.json"
    if not path.exists():
        raise PianonotesError(f"{folder} is not a pianonotes take folder (no take.json)")
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise PianonotesError(f"{path} is corrupt: {exc}") from exc
    if not isinstance(meta, dict):
        raise PianonotesError(f"{path} is corrupt: not a JSON object")
    from pianonotes.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    sr = meta.get("sample_rate", constants.SAMPLE_RATE)
    if isinstance(sr, bool) or not isinstance(sr, (int, float)) or not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise PianonotesError(f"{path} is corrupt: sample_rate is {sr!r} (the rate of the take's journal audio: "
                              f"the model's, {constants.SAMPLE_RATE} Hz, or the device's with --record); correct it and run "
                              "pianonotes recover again")
    fmt = meta.get("audio_format", AUDIO_FORMAT)  # absent in takes journaled before pianonotes-take-v2
    if fmt != AUDIO_FORMAT:
        raise PianonotesError(f"{path} names audio_format {fmt!r}; this pianonotes reads {AUDIO_FORMAT!r} journal "
                              "audio (raw float32, little-endian, mono): recover it with the pianonotes that "
                              "recorded it")
    return meta


def journal_notes(folder: str | os.PathLike, *, end: float | None = None) -> list[Note]:
    """Notes from ``events.jsonl``: finished notes, plus notes still sounding at the end of the journal
    (closed at ``end`` seconds). A line cut by a crash is skipped."""
    path = Path(folder) / "events.jsonl"
    done: list[Note] = []
    open_: dict[int, tuple[float, float]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "on":
                open_[int(ev["pitch"])] = (float(ev["onset"]), float(ev.get("confidence", 1.0)))
            elif ev.get("event") == "note":
                n = Note(float(ev["onset"]), float(ev["offset"]), int(ev["pitch"]), int(ev["velocity"]),
                         confidence=float(ev.get("confidence", 1.0)))
                done.append(n)
                if int(ev["pitch"]) in open_ and abs(open_[int(ev["pitch"])][0] - n.onset) < 1e-3:
                    del open_[int(ev["pitch"])]
    if end is not None:
        for pitch, (onset, conf) in open_.items():
            if end > onset:
                done.append(Note(onset, end, pitch, constants.DEFAULT_VELOCITY, confidence=conf))
    return sorted(done)


def recover(folder: str | os.PathLike, *, model: str | os.PathLike | None = None, method: str = "auto",
            device: str = "cpu", onset_threshold: float | None = None, frame_threshold: float | None = None,
            min_note_seconds: float | None = None, rise_onset: float | None = None,
            ghost_onset: float | None = None) -> RecoveredTake:
    """Rebuild a take's notes from its journal (the thresholds: None keeps the take's).

    ``method``: ``"audio"`` re-transcribes the journal audio (``audio.f32``, or an old take's ``audio.wav``)
    with the take's model (or ``model``): the same notes the live take would have given for that audio;
    ``"journal"`` reads the note events; ``"auto"`` tries the audio first and falls back to the events (no
    audio, or no model). Thresholds not given are the ones the take used.
    """
    folder = Path(folder)
    meta = take_meta(folder)
    sr = int(meta.get("sample_rate", constants.SAMPLE_RATE))
    audio = read_journal_audio(take_audio_path(folder))
    seconds = len(audio) / sr
    notes: list[Note] | None = None
    pedals = None
    used = "journal"
    if method not in ("auto", "audio", "journal"):
        raise PianonotesError(f"unknown recovery method '{method}'; use auto, audio or journal")
    if method in ("auto", "audio") and len(audio):
        try:
            from pianonotes.decode import DecodeOptions
            from pianonotes.transcribe import Transcriber

            options = DecodeOptions.for_model(
                meta["decode"], onset_threshold=onset_threshold, frame_threshold=frame_threshold,
                min_note_seconds=min_note_seconds, rise_onset=rise_onset, ghost_onset=ghost_onset
            ) if meta.get("decode") else None
            tr = Transcriber.from_checkpoint(model if model is not None else meta.get("model"), device=device,
                                             options=options, overrides=dict(
                                                 onset_threshold=onset_threshold, frame_threshold=frame_threshold,
                                                 min_note_seconds=min_note_seconds, rise_onset=rise_onset,
                                                 ghost_onset=ghost_onset))
            eng = tr.engine()
            if eng.sample_rate != sr:
                from pianonotes.audio import resample

                audio = resample(audio, sr, eng.sample_rate)
            notes = []
            step = eng.sample_rate * 30
            for i in range(0, len(audio), step):
                notes += eng.push(audio[i: i + step]).notes
            notes = sorted(notes + eng.finish().notes)
            pedals = list(eng.decoder.pedals)
            used = "audio"
        except PianonotesError:
            if method == "audio":
                raise
            notes = None
    if notes is None:
        notes = journal_notes(folder, end=seconds if seconds else None)
    return RecoveredTake(folder, notes, seconds, used, list(meta.get("outputs") or []), meta.get("record"), pedals)


def mark_recovered(folder: str | os.PathLike, outputs: Sequence[str | os.PathLike]) -> str | None:
    """Note in take.json that the take was recovered (so it may be pruned). Returns a one-line warning
    when that fails (the disk is still full, say): the outputs are written, the take stays in the cache."""
    from pianonotes.fileio import write_text_atomic

    folder = Path(folder)
    meta = take_meta(folder)
    meta.update(status="recovered", recovered_to=[str(p) for p in outputs])
    try:
        write_text_atomic(folder / "take.json", json.dumps(meta, indent=2, sort_keys=True))
    except PianonotesError as exc:
        return f"{exc}; the take is not marked as recovered, so it stays in {folder.parent}"
    return None
