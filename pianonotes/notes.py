"""Notes and note lists, to and from MIDI files (mido), with the sustain pedal.

A :class:`Note` has an onset and a *sounding* offset in seconds: the offset is extended while the
sustain pedal (CC64) is down, the MAESTRO / Onsets-and-Frames convention. The key-release time is kept
as ``key_offset``. :func:`with_note_length` chooses which of the two an output writes as the note's end
(``--note-length key|sounding``); :func:`midi_track_bytes` is the one MIDI writer.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

from pianonotes import constants
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
    velocity: int = constants.DEFAULT_VELOCITY
    key_offset: float | None = None
    confidence: float = 1.0

    def __post_init__(self) -> None:
        if not (constants.MIN_PITCH <= self.pitch <= constants.MAX_PITCH):
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


def _sustained_ends(key_notes: Sequence[tuple[float, float, int]], pedals: Sequence[PedalEvent]) -> list[float]:
    """The sounding end of each (onset, key_release, pitch), in the given order: a key released while
    the pedal is down sounds until the pedal is lifted, or until the same key is struck again."""
    pedals = sorted(pedals, key=lambda p: p.start)
    by_pitch: dict[int, list[int]] = {}
    for i in sorted(range(len(key_notes)), key=lambda i: key_notes[i]):
        by_pitch.setdefault(key_notes[i][2], []).append(i)
    ends = [0.0] * len(key_notes)
    for seq in by_pitch.values():
        for j, i in enumerate(seq):
            on, rel, _ = key_notes[i][:3]
            end = rel
            for p in pedals:
                if p.start <= rel < p.end:
                    end = max(end, p.end)
                    break
            if j + 1 < len(seq):  # a re-struck key cuts the sustained note
                end = min(end, max(key_notes[seq[j + 1]][0], rel))
            ends[i] = end
    return ends


def apply_sustain(
    key_notes: Sequence[tuple[float, float, int, int]], pedals: Sequence[PedalEvent]
) -> list[Note]:
    """Extend key-release offsets while the pedal is down.

    key_notes: (onset, key_release, pitch, velocity) tuples. A note whose key is released while the
    pedal is down sounds until the pedal is lifted, or until the same key is struck again.
    """
    key_notes = sorted(key_notes)
    out: list[Note] = []
    for (on, rel, pitch, vel), end in zip(key_notes, _sustained_ends(key_notes, pedals)):
        if end <= on:
            continue
        out.append(Note(on, end, pitch, max(1, min(127, vel)), key_offset=min(rel, end)))
    out.sort()
    return out


NOTE_LENGTHS = ("key", "sounding")
NOTE_LENGTH_HELP = ("What note ends mean in MIDI, CSV and JSON: 'key' (default) ends each note at its key "
                    "release and writes the sustain pedal as CC64 in the MIDI, so a DAW plays it back as "
                    "performed; 'sounding' ends each note when it stops sounding (key up and pedal up, or "
                    "the key struck again) and writes no CC64. Scores always use key releases. For a model "
                    "without key and pedal outputs (v1) both are the same.")


def check_note_length(note_length: str) -> str:
    """``note_length`` if it is one of :data:`NOTE_LENGTHS`, else a PianonotesError."""
    if note_length not in NOTE_LENGTHS:
        raise PianonotesError(f"unknown note length {note_length!r}; use key or sounding")
    return note_length


def rhythm_grid(rhythm: str) -> tuple[int, ...]:
    """The score grid of a ``--rhythm`` name (:data:`pianonotes.constants.RHYTHM_GRIDS`), else a
    PianonotesError."""
    try:
        return constants.RHYTHM_GRIDS[rhythm]
    except (KeyError, TypeError):
        raise PianonotesError(f"unknown rhythm {rhythm!r}; use {' or '.join(constants.RHYTHM_GRIDS)}") from None


def with_note_length(notes: Iterable[Note], pedals: Sequence[PedalEvent] | None, note_length: str) -> list[Note]:
    """The notes with ``offset`` set by the ``note_length`` convention, one for one, in the same order.

    ``"key"``: the offset is the key release (``Note.release``). ``"sounding"``: the key release extended
    by ``pedals`` (:func:`apply_sustain`'s rule: until the pedal is up, or the same key is struck again),
    with ``key_offset`` keeping the release; ``pedals=None`` means the notes already carry their sounding
    offsets (e.g. read from MIDI with the pedal applied), which are kept. Notes without a key release
    (``key_offset`` None: a v1 model) and no pedal are the same in both conventions.
    """
    check_note_length(note_length)
    notes = list(notes)
    if note_length == "key":
        return [dataclasses.replace(n, offset=n.release, key_offset=None) for n in notes]
    if pedals is None:
        return notes
    ends = _sustained_ends([(n.onset, n.release, n.pitch) for n in notes], pedals)
    return [dataclasses.replace(n, offset=max(end, n.release),
                                key_offset=n.release if end > n.release or n.key_offset is not None else None)
            for n, end in zip(notes, ends)]


SCORE_RELEASE_GAP = 0.15  # s: how much later the sounding end must be to replace the key-down head's release


def score_releases(notes: Iterable[Note], pedals: Sequence[PedalEvent] | None) -> list[Note]:
    """The notes with the key releases a score writes, one for one, in the same order.

    Where the decoded sustain pedal (``pedals``) is up when a note's key-down head says the key went up,
    the damper stops the string with the key, so the note's sounding end (``offset``, the frame head)
    is a second estimate of the same release. When it is later by more than :data:`SCORE_RELEASE_GAP`
    it is the one kept: the key-down head lets a long, decaying note go early (through audio, half
    notes at about half their value), while the few frames the two heads differ by on short notes are
    noise. Under the pedal the key-down head's release stands. ``pedals=None`` (notes read from a MIDI
    file, or a model without a pedal head): unchanged.
    """
    import bisect

    notes = list(notes)
    if pedals is None:
        return notes
    starts, ends = [], []  # the pedal's down intervals, merged where they overlap, in order
    for p in sorted(pedals, key=lambda p: p.start):
        if ends and p.start <= ends[-1]:
            ends[-1] = max(ends[-1], p.end)
        else:
            starts.append(p.start)
            ends.append(p.end)

    def pedal_down(t: float) -> bool:
        i = bisect.bisect_right(starts, t) - 1
        return i >= 0 and t < ends[i]

    return [dataclasses.replace(n, key_offset=n.offset)
            if n.key_offset is not None and n.offset - n.key_offset > SCORE_RELEASE_GAP
            and not pedal_down(n.key_offset) else n
            for n in notes]


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
            elif msg.type == "control_change" and msg.control == constants.SUSTAIN_CC:
                if msg.value >= constants.SUSTAIN_ON and pedal_down is None:
                    pedal_down = t
                elif msg.value < constants.SUSTAIN_ON and pedal_down is not None:
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
        n for n in key_notes if constants.MIN_PITCH <= n[2] <= constants.MAX_PITCH and n[1] > n[0]
    ]
    return apply_sustain(key_notes, pedals), pedals


def midi_track_bytes(
    notes: Iterable[Note],
    *,
    tick,
    pedals: Iterable[PedalEvent] = (),
    use_key_offsets: bool = False,
    meta: Iterable[tuple[int, int, object]] = (),
    program: int = 0,
    ticks_per_beat: int = 480,
) -> bytes:
    """The one MIDI writer: a type-0 file with one Acoustic Grand Piano track named Piano, as bytes.

    ``tick(seconds) -> int`` places every event (a constant tempo in :func:`midi_bytes`, the score's
    tempo map in :func:`pianonotes.export.midi.score_midi_bytes`). Note-offs are the key releases with
    ``use_key_offsets``, else the offsets; ``pedals`` become CC64 127/0. ``meta``: (tick, order, mido
    MetaMessage) with a negative order (tempo, meter, key), written before the notes of their tick. At
    one tick the order is meta, note-offs, pedal, note-ons.
    """
    import io

    import mido

    events: list[tuple[int, int, object]] = list(meta)
    for n in notes:
        end = n.release if use_key_offsets else n.offset
        on_t = tick(n.onset)
        off_t = max(on_t + 1, tick(end))
        events.append((on_t, 2, mido.Message("note_on", note=n.pitch, velocity=n.velocity)))
        events.append((off_t, 0, mido.Message("note_off", note=n.pitch, velocity=0)))
    for p in pedals:
        events.append((tick(p.start), 1, mido.Message("control_change", control=constants.SUSTAIN_CC, value=127)))
        events.append((tick(p.end), 1, mido.Message("control_change", control=constants.SUSTAIN_CC, value=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="Piano", time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    last = 0
    for t, _, msg in events:
        track.append(msg.copy(time=t - last))
        last = t
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def midi_bytes(
    notes: Iterable[Note],
    *,
    pedals: Iterable[PedalEvent] = (),
    program: int = 0,
    bpm: float = 120.0,
    use_key_offsets: bool = False,
) -> bytes:
    """A type-0 MIDI file (one Acoustic Grand Piano track) at a constant tempo, as bytes.

    With ``use_key_offsets`` the note-offs are the key releases and the pedal is written as CC64, so a
    synthesizer re-creates the sounding offsets; otherwise the sounding offsets are written directly.
    """
    import mido

    tpb = 480
    tempo = mido.bpm2tempo(bpm)
    ticks_per_s = tpb * 1e6 / tempo
    return midi_track_bytes(notes, tick=lambda t: round(t * ticks_per_s), pedals=pedals,
                            use_key_offsets=use_key_offsets, program=program, ticks_per_beat=tpb,
                            meta=[(0, -1, mido.MetaMessage("set_tempo", tempo=tempo))])


def write_midi(path: str | os.PathLike, notes: Iterable[Note], **kwargs) -> None:
    """Write notes to a MIDI file atomically (see :func:`midi_bytes` for options)."""
    from pianonotes.fileio import write_bytes_atomic

    write_bytes_atomic(path, midi_bytes(notes, **kwargs))
