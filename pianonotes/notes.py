"""Notes and note lists, to and from MIDI files (mido), with the sustain pedal.

A :class:`Note` has an onset and a *sounding* offset in seconds: the offset is extended while the
sustain pedal (CC64) is down, the MAESTRO / Onsets-and-Frames convention. The key-release time is kept
as ``key_offset``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

from pianonotes import constants as C
from pianonotes.errors import PianonotesError

_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def pitch_name(pitch: int) -> str:
    """MIDI pitch to a name such as ``C4`` (middle C, 60) or ``A0`` (21)."""
    return f"{_NAMES[pitch % 12]}{pitch // 12 - 1}"


@dataclasses.dataclass(frozen=True, order=True)
class Note:
    """One piano note.

    onset, offset: seconds; ``offset`` is when the note stops sounding (pedal included).
    pitch: MIDI number 21 (A0) to 108 (C8). velocity: 1-127.
    key_offset: seconds the key was released (``None`` means the same as ``offset``).
    confidence: the model's onset probability for transcribed notes, else 1.0.
    """

    onset: float
    offset: float
    pitch: int
    velocity: int = C.DEFAULT_VELOCITY
    key_offset: float | None = None
    confidence: float = 1.0

    def __post_init__(self) -> None:
        if not (C.MIN_PITCH <= self.pitch <= C.MAX_PITCH):
            raise PianonotesError(f"pitch {self.pitch} is outside the piano (21-108)")
        if not (1 <= self.velocity <= 127):
            raise PianonotesError(f"velocity {self.velocity} is outside 1-127")
        if not self.offset > self.onset:
            raise PianonotesError(f"note at {self.onset:.3f}s ends at {self.offset:.3f}s, not after it")

    @property
    def duration(self) -> float:
        return self.offset - self.onset

    @property
    def release(self) -> float:
        """Key-release time (seconds)."""
        return self.offset if self.key_offset is None else self.key_offset

    @property
    def name(self) -> str:
        return pitch_name(self.pitch)

    def shifted(self, seconds: float) -> "Note":
        return dataclasses.replace(
            self,
            onset=self.onset + seconds,
            offset=self.offset + seconds,
            key_offset=None if self.key_offset is None else self.key_offset + seconds,
        )


@dataclasses.dataclass(frozen=True)
class PedalEvent:
    """Sustain pedal interval in seconds."""

    start: float
    end: float


def apply_sustain(
    key_notes: Sequence[tuple[float, float, int, int]], pedals: Sequence[PedalEvent]
) -> list[Note]:
    """Extend key-release offsets while the pedal is down.

    key_notes: (onset, key_release, pitch, velocity) tuples. A note whose key is released while the
    pedal is down sounds until the pedal is lifted, or until the same key is struck again.
    """
    pedals = sorted(pedals, key=lambda p: p.start)
    by_pitch: dict[int, list[tuple[float, float, int, int]]] = {}
    for n in sorted(key_notes):
        by_pitch.setdefault(n[2], []).append(n)
    out: list[Note] = []
    for pitch, seq in by_pitch.items():
        for i, (on, rel, _, vel) in enumerate(seq):
            end = rel
            for p in pedals:
                if p.start <= rel < p.end:
                    end = max(end, p.end)
                    break
            if i + 1 < len(seq):  # a re-struck key cuts the sustained note
                end = min(end, max(seq[i + 1][0], rel))
            if end <= on:
                continue
            out.append(Note(on, end, pitch, max(1, min(127, vel)), key_offset=min(rel, end)))
    out.sort()
    return out


def _midi_events(path: str | os.PathLike):
    import mido

    try:
        mid = mido.MidiFile(os.fspath(path))
    except FileNotFoundError as exc:
        raise PianonotesError(f"MIDI file {path} not found") from exc
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise PianonotesError(f"cannot read MIDI file {path}: {exc}; is it a valid .mid file?") from exc
    return mid


def read_midi(path: str | os.PathLike, *, sustain: bool = True) -> list[Note]:
    """Read every note of a MIDI file (all tracks and channels merged, as one piano).

    With ``sustain`` the pedal (CC64 on any channel) extends offsets; ``key_offset`` keeps the release.
    Notes outside the piano range are dropped.
    """
    notes, pedals = read_midi_with_pedal(path)
    if not sustain:
        return sorted(Note(n.onset, n.release, n.pitch, n.velocity) for n in notes)
    return notes


def read_midi_with_pedal(path: str | os.PathLike) -> tuple[list[Note], list[PedalEvent]]:
    mid = _midi_events(path)
    t = 0.0
    active: dict[int, list[tuple[float, int]]] = {}
    key_notes: list[tuple[float, float, int, int]] = []
    pedals: list[PedalEvent] = []
    pedal_down: float | None = None
    try:
        for msg in mid:
            t += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                stack = active.setdefault(msg.note, [])
                if stack:  # re-struck without release: end the previous one here
                    on, vel = stack.pop(0)
                    key_notes.append((on, t, msg.note, vel))
                stack.append((t, msg.velocity))
            elif msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0):
                stack = active.get(msg.note)
                if stack:
                    on, vel = stack.pop(0)
                    key_notes.append((on, t, msg.note, vel))
            elif msg.type == "control_change" and msg.control == C.SUSTAIN_CC:
                if msg.value >= C.SUSTAIN_ON and pedal_down is None:
                    pedal_down = t
                elif msg.value < C.SUSTAIN_ON and pedal_down is not None:
                    if t > pedal_down:
                        pedals.append(PedalEvent(pedal_down, t))
                    pedal_down = None
    except (ValueError, KeyError, EOFError) as exc:
        raise PianonotesError(f"cannot read MIDI file {path}: {exc}") from exc
    for pitch, stack in active.items():
        for on, vel in stack:
            key_notes.append((on, max(t, on + 0.1), pitch, vel))
    if pedal_down is not None and t > pedal_down:
        pedals.append(PedalEvent(pedal_down, t))
    key_notes = [
        n for n in key_notes if C.MIN_PITCH <= n[2] <= C.MAX_PITCH and n[1] > n[0]
    ]
    return apply_sustain(key_notes, pedals), pedals


def midi_bytes(
    notes: Iterable[Note],
    *,
    pedals: Iterable[PedalEvent] = (),
    program: int = 0,
    bpm: float = 120.0,
    use_key_offsets: bool = False,
) -> bytes:
    """A type-0 MIDI file (one Acoustic Grand Piano track) as bytes.

    With ``use_key_offsets`` the note-offs are the key releases and the pedal is written as CC64, so a
    synthesizer re-creates the sounding offsets; otherwise the sounding offsets are written directly.
    """
    import io

    import mido

    tpb = 480
    tempo = mido.bpm2tempo(bpm)
    ticks_per_s = tpb * 1e6 / tempo
    events: list[tuple[int, int, mido.Message]] = []  # (tick, order, msg); offs before ons at a tick
    for n in notes:
        end = n.release if use_key_offsets else n.offset
        on_t = round(n.onset * ticks_per_s)
        off_t = max(on_t + 1, round(end * ticks_per_s))
        events.append((on_t, 2, mido.Message("note_on", note=n.pitch, velocity=n.velocity)))
        events.append((off_t, 0, mido.Message("note_off", note=n.pitch, velocity=0)))
    for p in pedals:
        events.append((round(p.start * ticks_per_s), 1, mido.Message("control_change", control=64, value=127)))
        events.append((round(p.end * ticks_per_s), 1, mido.Message("control_change", control=64, value=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    track.append(mido.MetaMessage("track_name", name="Piano", time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    last = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid = mido.MidiFile(type=0, ticks_per_beat=tpb)
    mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def write_midi(path: str | os.PathLike, notes: Iterable[Note], **kwargs) -> None:
    """Write notes to a MIDI file atomically (see :func:`midi_bytes` for options)."""
    from pianonotes.fileio import write_bytes_atomic

    write_bytes_atomic(path, midi_bytes(notes, **kwargs))
