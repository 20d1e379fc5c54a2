"""Notes (seconds) to a readable piano score (music21), and MusicXML files.

The score is built directly rather than through music21's generic MIDI import: a tracked beat grid
with meter and pickup (:mod:`pianonotes.export.beats`), onsets quantized to that grid (so the tempo
may follow rubato), a hand split that follows the music, chords of equal onsets, note values chosen for
readability, key-aware spelling, then ``makeNotation`` for measures, ties across barlines and beams.
Time zero of the score is the bar line at or before the first note; a pickup becomes a short measure 0.
"""

from __future__ import annotations

import math
import os
from collections import Counter
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Callable, Sequence

from pianonotes.constants import RHYTHM_GRIDS
from pianonotes.errors import PianonotesError
from pianonotes.export.beats import BeatGrid, estimate_beats, parse_meter
from pianonotes.export.keys import Key, estimate_key
from pianonotes.fileio import write_bytes_atomic
from pianonotes.notes import Note
from pianonotes.export.hands import split_hands

if TYPE_CHECKING:  # pragma: no cover
    from music21 import stream


# Hand split: default hand centres (MIDI) before any note is seen, and cost weights.


# ------------------------------------------------------------------------------------- quantization
# 16ths by default; 8th triplets, 16th triplets and 32nds in the beats whose onsets sit on them
# (measured: devtools/score_bench --grid; README "Scores").
DEFAULT_GRID: tuple[int, ...] = RHYTHM_GRIDS["fine"]


def _check_grid(grid: Sequence[int]) -> tuple[int, ...]:
    try:
        g = tuple(int(d) for d in grid)
    except (TypeError, ValueError):
        raise PianonotesError(f"grid {grid!r} must be divisions per quarter note, such as (4,) or (4, 3)")
    if not g or any(d < 1 or d > 32 for d in g):
        raise PianonotesError(
            f"grid {grid!r} must hold divisions per quarter note between 1 and 32, e.g. (4,)"
        )
    return g


# A division other than the first is used in a beat only when the onsets there lie within this share of
# its step of it, and in the piece only when at least this many beats, and this share of the beats
# with onsets, choose it (lone choices are timing noise or a beat-tracking slip, not a rhythm).
_TUPLET_TOLERANCE = 0.2
_TUPLET_MIN_BEATS = 3
_TUPLET_MIN_SHARE = 0.04
# Beats, meter and pickup are tracked from the notes the network gave an onset probability of at least
# this (a transcription's frame-rise notes, found under an unsure onset head, do not steer the bar
# lines; notes from a MIDI file have confidence 1).
BEAT_MIN_CONFIDENCE = 0.5


class _Quantizer:
    """Snap positions in beats to a grid; each beat uses one of the grid's divisions.

    The first division is the default. The others are tried in order (``(4, 3, 6, 8)``: 16ths, then
    8th triplets, 16th triplets, 32nds), and one replaces the beat's division so far only when the
    onsets there really sit on it: every onset within a fifth of its step (at most 0.08 beats) of it,
    at least one onset off the division so far, two onsets one step apart (the division is needed for
    a duration, not only for a shifted pair of 16ths), and half the total error of that division or
    less. A division chosen in fewer than 3 beats, or 4 % of the beats with onsets, is dropped.
    """

    def __init__(self, onsets_beats: Sequence[float], grid: tuple[int, ...]):
        self.grid = grid
        self.primary = grid[0]
        self.beat_div: dict[int, int] = {}
        if len(grid) > 1:
            by_beat: dict[int, list[float]] = {}
            half = 0.5 / max(grid)
            for x in onsets_beats:
                by_beat.setdefault(math.floor(x + half), []).append(x)
            for b, xs in by_beat.items():
                best = self.primary
                err_best = sum(abs(x - round(x * best) / best) for x in xs)
                for d in grid[1:]:
                    errs = [abs(x - round(x * d) / d) for x in xs]
                    off_best = any(Fraction(round(x * d), d) * best % 1 != 0 for x in xs)
                    steps = sorted({round(x * d) for x in xs})
                    one_step = any(v - u == 1 for u, v in zip(steps, steps[1:]))
                    if (off_best and one_step and max(errs) < min(0.08, _TUPLET_TOLERANCE / d)
                            and sum(errs) <= 0.5 * err_best):
                        best, err_best = d, sum(errs)
                if best != self.primary:
                    self.beat_div[b] = best
            uses = Counter(self.beat_div.values())
            need = max(_TUPLET_MIN_BEATS, _TUPLET_MIN_SHARE * len(by_beat))
            self.beat_div = {b: d for b, d in self.beat_div.items() if uses[d] >= need}

    def div_at(self, x: float) -> int:
        return self.beat_div.get(math.floor(x), self.primary)

    def onset(self, x: float) -> Fraction:
        half = 0.5 / max(self.grid)
        d = self.beat_div.get(math.floor(x + half), self.primary)
        return max(Fraction(0), Fraction(round(x * d), d))

    def offset(self, x: float) -> Fraction:
        d = self.div_at(x)
        return Fraction(round(x * d), d)

    def step(self, pos: Fraction) -> Fraction:
        return Fraction(1, self.div_at(float(pos)))


@dataclass
class _QNote:
    start: Fraction  # quarter-note beats from the first onset
    end: Fraction
    pitch: int
    velocity: int


def _quantize(notes: Sequence[Note], beats: BeatGrid, grid: tuple[int, ...]) -> tuple[list[_QNote], _Quantizer]:
    """Onsets and ends in quarter notes from the grid's first bar line, snapped to ``grid``. A note ends
    at its key release (``Note.release``: AudioNet v2's key-down output, a MIDI file's note-off), not
    where the pedal lets it ring: the score writes what the fingers hold."""
    on = beats.ql([n.onset for n in notes]) if notes else []
    off = beats.ql([max(n.release, n.onset + 0.01) for n in notes]) if notes else []
    q = _Quantizer([float(x) for x in on], grid)
    best: dict[tuple[Fraction, int], _QNote] = {}
    for n, x_on, x_off in zip(notes, on, off):
        start = q.onset(float(x_on))
        end = max(q.offset(float(x_off)), start + q.step(start))
        key = (start, n.pitch)
        old = best.get(key)
        if old is None:
            best[key] = _QNote(start, end, n.pitch, n.velocity)
        else:  # the same key twice at one grid point: one note
            old.end = max(old.end, end)
            old.velocity = max(old.velocity, n.velocity)
    return sorted(best.values(), key=lambda qn: (qn.start, qn.pitch)), q


# ----------------------------------------------------------------------------------------- spelling
_SHARP_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_FLAT_NAMES = ["C", "D-", "D", "E-", "E", "F", "G-", "G", "A-", "A", "B-", "B"]
_NEUTRAL_NAMES = ["C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B"]


def _spelling_table(k) -> list[str]:
    """Pitch-class → music21 name for key ``k``: the scale's own spelling (plus the raised leading
    tone in minor), other black keys with flats in flat keys and sharps in sharp keys."""
    if k.sharps > 0:
        table = list(_SHARP_NAMES)
    elif k.sharps < 0:
        table = list(_FLAT_NAMES)
    else:
        table = list(_NEUTRAL_NAMES)
    scale = list(k.pitches)
    if k.mode == "minor":
        scale.append(k.tonic.transpose("M7"))
    for p in scale:
        table[p.pitchClass] = p.name
    return table


def _pitch(midi: int, table: list[str]):
    from music21 import pitch

    p = pitch.Pitch(table[midi % 12])
    p.octave = 4
    p.octave += (midi - p.midi) // 12
    if p.midi != midi:  # cannot happen with the tables above; keep a safe fallback
        p = pitch.Pitch(midi=midi)
    return p


def _estimate_key(qnotes: Sequence[_QNote]) -> Key:
    """The key of quantized notes, each weighted by its length in quarter notes (at most 4): the summed
    correlation with four key profiles (:func:`pianonotes.export.keys.estimate_key`; the same key as
    music21's ``analyze`` with Krumhansl-Schmuckler, Aarden-Essen, Temperley-Kostka-Payne and
    Bellman-Budge, summed, without importing music21). One profile alone errs more often
    (Aarden-Essen reads a D-minor scale with C# as G minor)."""
    return estimate_key([qn.pitch for qn in qnotes], [min(float(qn.end - qn.start), 4.0) for qn in qnotes])


# --------------------------------------------------------------------------------------------- score
def _check_time_signature(ts: str) -> tuple[int, int]:
    m = parse_meter(ts)
    return m.numerator, m.denominator


def _is_dyadic(x: Fraction) -> bool:
    d = x.denominator
    return d & (d - 1) == 0


def _split_at_beats(start: Fraction, end: Fraction) -> list[tuple[Fraction, Fraction]]:
    """Split a span at whole beats when an end is off the binary grid (a tuplet), so every piece has
    a duration MusicXML can write."""
    if _is_dyadic(start) and _is_dyadic(end):
        return [(start, end)]
    cuts = [start]
    b = math.floor(start) + 1
    while b < end:
        cuts.append(Fraction(b))
        b += 1
    cuts.append(end)
    return list(zip(cuts[:-1], cuts[1:]))


def _rest_spans(a: Fraction, b: Fraction, beat: Fraction, bar) -> list[tuple[Fraction, Fraction]]:
    """A rest from ``a`` to ``b`` (quarter notes from the first bar line) as readable pieces: up to the
    next beat, then whole beats, merged into one rest per whole bar and, in simple meters with an even
    number of beats, into half-bar rests on the bar's halves; no chain of short rests. ``bar``: the bar
    length, or a :class:`_Bars` when the meter changes."""
    bars = bar if isinstance(bar, _Bars) else None
    out: list[tuple[Fraction, Fraction]] = []
    pos = a
    while pos < b:
        if bars is not None:
            start, length = bars.bar_at(pos)
        else:
            start, length = pos - pos % bar, bar
        half = length / 2
        halves = length / beat == 4  # 4/4, 12/8: half-bar rests on beats 1 and 3
        if pos == start and pos + length <= b:
            nxt = pos + length
        elif halves and (pos - start) % half == 0 and pos + half <= b:
            nxt = pos + half
        else:
            nxt = min(b, (pos // beat + 1) * beat)
        out.append((pos, nxt))
        pos = nxt
    return out


class _Bars:
    """Bar lines of a score whose meter may change (quarter notes from the first bar line): the
    grid's stretches of one meter, the last one going on for ever."""

    def __init__(self, beats: BeatGrid):
        q = beats.beat_ql
        self.segments = [(k * q, m.bar_ql, m) for k, m in beats.meters()]

    def bar_at(self, pos: Fraction) -> tuple[Fraction, Fraction]:
        """(start, length) of the bar holding ``pos``."""
        seg = self.segments[0]
        for sg in self.segments:
            if pos >= sg[0]:
                seg = sg
        s0, length, _ = seg
        return s0 + ((pos - s0) // length) * length, length

    def line_at_or_after(self, pos: Fraction) -> Fraction:
        start, length = self.bar_at(pos)
        return start if start == pos else start + length

    def changes(self) -> list[tuple[Fraction, object]]:
        """(offset, Meter) of every time signature after the first."""
        return [(s0, m) for s0, _, m in self.segments[1:]]


def _fill_staff(staff, events: list[tuple], total: Fraction, table,
                *, beat: Fraction = Fraction(1), bar: Fraction = Fraction(4), lead: Fraction = Fraction(0)) -> None:
    """Notes, chords and rests of one staff (``events`` from :func:`_staff_events`: start, end,
    pitches, the pitches tied on into the next event); ``lead`` is the empty start of a pickup bar."""
    from music21 import chord, note, tie

    cursor = Fraction(0)

    def rest(a: Fraction, b: Fraction) -> None:
        if a < lead:  # the part of a pickup bar before the music: one rest, removed later
            r = note.Rest()
            r.quarterLength = min(b, lead) - a
            staff.coreInsert(a, r)
            a = min(b, lead)
        if b <= a:
            return
        for s0, e0 in _rest_spans(a, b, beat, bar):
            whole = (bar.bar_at(s0) if isinstance(bar, _Bars) else (s0 - s0 % bar, bar)) == (s0, e0 - s0)
            for s, e in _split_at_beats(s0, e0):
                r = note.Rest()
                r.quarterLength = e - s
                r.fullMeasure = whole  # said here: asking music21 would search the whole staff per rest
                staff.coreInsert(s, r)

    tied_in: frozenset = frozenset()  # pitches tied on from the previous event
    for start, end, pitches, tied_out in events:
        if start > cursor:
            rest(cursor, start)
            tied_in = frozenset()
        parts = _split_at_beats(start, end)
        for i, (s, e) in enumerate(parts):
            ps = [_pitch(m, table) for m in pitches]
            obj = note.Note(ps[0]) if len(ps) == 1 else chord.Chord(ps)
            obj.quarterLength = e - s
            for m, n in zip(pitches, [obj] if len(ps) == 1 else obj.notes):
                into = i > 0 or m in tied_in
                on = i < len(parts) - 1 or m in tied_out
                if into or on:
                    n.tie = tie.Tie("continue" if into and on else ("stop" if into else "start"))
            staff.coreInsert(s, obj)
        cursor = end
        tied_in = frozenset(tied_out)
    if total > cursor:
        rest(cursor, total)
    staff.coreElementsChanged()  # once: inserting one by one re-sorts the staff each time (quadratic)


def _staff_events(qnotes: list[_QNote], step_of, *, beat: Fraction | None = None,
                  total: Fraction | None = None) -> list[tuple[Fraction, Fraction, list[int], frozenset]]:
    """Group one staff's notes into chords, one per onset: ``(start, end, pitches, tied)``. A chord ends
    at the next onset in the staff or at its notes' latest end, whichever comes first, but lasts at
    least one grid step. A note that sounds on across the next onset (over at least half of the span to
    the onset after it: a soprano quarter against alto eighths) is carried into the next chord, tied
    (``tied``: the pitches that go on into the next chord), so it keeps its value.

    With ``beat`` (quarter notes per beat), the note values are then made readable: a rest shorter
    than a beat before the next chord (or the end, ``total``) is absorbed into the chord (played
    offsets are often early, especially under the pedal); a chord that stops short of the next beat by
    a quarter of a beat or less, and by no more than a third of its length (a half note held 90 %, a
    quarter held 75 %), reaches that beat; a chord shorter than the
    rest after it is lengthened to the next beat, so rests start on beats and never form chains of
    short values.
    """
    by_start: dict[Fraction, list[_QNote]] = {}
    for qn in qnotes:
        by_start.setdefault(qn.start, []).append(qn)
    starts = sorted(by_start)
    events: list[tuple[Fraction, Fraction, list[int], frozenset]] = []
    carried: dict[int, Fraction] = {}  # pitch -> end of a note that sounds on past this onset
    for i, s in enumerate(starts):
        group = by_start[s]
        fresh = {qn.pitch for qn in group}
        ends = {p: e for p, e in carried.items() if p not in fresh}
        for qn in group:
            ends[qn.pitch] = max(ends.get(qn.pitch, qn.end), qn.end)
        end = max(max(ends.values()), s + step_of(s))
        nxt = starts[i + 1] if i + 1 < len(starts) else total
        carried = {}
        if i + 1 < len(starts):
            end = min(end, nxt)
            after = starts[i + 2] if i + 2 < len(starts) else None
            struck = {qn.pitch for qn in by_start[nxt]}
            for p, e in ends.items():
                if e > nxt and p not in struck and (after is None or e - nxt >= (after - nxt) / 2):
                    carried[p] = e
        if not carried and beat is not None and nxt is not None and end < nxt:
            gap = nxt - end
            to_beat = (end // beat + 1) * beat - end if end % beat else Fraction(0)
            if gap < beat:
                end = nxt
            elif to_beat and (end - s < gap or (4 * to_beat <= beat and 3 * to_beat <= end - s)):
                end = min(nxt, end + to_beat)
        events.append((s, end, sorted(ends), frozenset(carried)))
    return events


def _voiced_measures(staff, v1, v2) -> None:
    """Fill ``staff`` (holding clef, key, time signatures, tempo marks) with measures of two voices:
    each voice is barred on its own with the staff's meter, then the measures are merged (music21's
    ``makeMeasures`` on a staff of voices re-sorts the whole staff for every measure: quadratic)."""
    import copy

    from music21 import stream

    meta = list(staff)
    done = []
    for vi, v in enumerate((v1, v2)):
        flat = stream.Stream()
        for el in meta:
            if vi == 0:
                flat.coreInsert(staff.elementOffset(el), el)
            elif "TimeSignature" in el.classes:
                flat.coreInsert(staff.elementOffset(el), copy.deepcopy(el))
        for el in v:
            flat.coreInsert(v.elementOffset(el), el)
        flat.coreElementsChanged()
        done.append(list(flat.makeMeasures(bestClef=False).getElementsByClass(stream.Measure)))
    for el in meta:
        staff.remove(el)
    for m1, m2 in zip(*done):
        made = []
        for m, vid in ((m1, "1"), (m2, "2")):
            voice = stream.Voice(id=vid)
            for el in list(m.notesAndRests):
                voice.coreInsert(m.elementOffset(el), el)
                m.remove(el)
            voice.coreElementsChanged()
            made.append(voice)
        for voice in made:
            m1.insert(0, voice)
        staff.coreInsert(m1.offset, m1)
    staff.coreElementsChanged()


def _voice_split(qnotes: list[_QNote], beat: Fraction) -> tuple[list[_QNote], list[_QNote]]:
    """(main, held): a note lasting at least a beat that sounds on across two or more later onsets of
    its hand, and is the lowest or highest note of its onset, is held (a second voice: a half note
    against running eighths), as long as it does not overlap the previous held note; the rest is the
    main voice."""
    by_start: dict[Fraction, list[_QNote]] = {}
    for qn in qnotes:
        by_start.setdefault(qn.start, []).append(qn)
    starts = sorted(by_start)
    held: list[_QNote] = []
    held_ids: set[int] = set()
    free_from = Fraction(-1)
    for i, s in enumerate(starts):
        group = by_start[s]
        if len(starts) <= i + 2 or s < free_from:
            continue
        edge = {min(qn.pitch for qn in group), max(qn.pitch for qn in group)}
        cands = [qn for qn in group if qn.pitch in edge and qn.end - qn.start >= beat and qn.end > starts[i + 2]]
        if not cands or len(cands) == len(group) and len(group) > 1:
            continue  # the whole chord held: one voice does
        qn = max(cands, key=lambda q: q.end)
        held.append(qn)
        held_ids.add(id(qn))
        free_from = qn.end
    main = [qn for qn in qnotes if id(qn) not in held_ids]
    return main, held


def _tempo_marks(beats: BeatGrid, bars: int) -> list[tuple[int, float]]:
    """(bar index, beats per minute) of the metronome marks: the tempo of the opening, and a new mark
    where the tempo of two bars running departs from the current mark by more than 15 % (the same way:
    a ritardando, an a tempo)."""
    import numpy as np

    bpm = beats.beat_bpm()
    starts = [int(k) for k in beats.bar_starts()]
    per_bar = [float(np.mean(bpm[a:b])) for a, b in zip(starts[:bars], starts[1:bars + 1]) if b <= len(bpm)]

    def changes(cur: float) -> list[tuple[int, float]]:
        marks = [(0, cur)]
        for k in range(1, len(per_bar) - 1):
            a, b = per_bar[k], per_bar[k + 1]
            if all(abs(x - cur) / cur > 0.15 for x in (a, b)) and (a - cur) * (b - cur) > 0:
                cur = (a + b) / 2
                marks.append((k, cur))
        return marks

    marks = changes(beats.bpm)
    for _ in range(2):  # the opening mark: the tempo up to the first change
        if len(marks) < 2:
            break
        first = max(0, int(round(beats.position(beats.first_onset))))
        end = starts[marks[1][0]]
        if end <= first:
            break
        marks = changes(round(60.0 * (end - first) / float(beats.times[end] - beats.times[first]), 2))
    return marks


def _make_pickup(staff, lead: Fraction) -> None:
    """Turn the first measure into a pickup (measure 0, implicit) starting ``lead`` quarter notes
    late: drop the rests before the music, move the rest forward, shift the later measures."""
    from music21 import stream

    measures = list(staff.getElementsByClass(stream.Measure))
    if not measures:
        return
    m0 = measures[0]
    for box in (m0, *m0.voices):
        for el in list(box.notesAndRests):
            if el.offset < lead:
                box.remove(el)
        for el in list(box.notesAndRests):
            box.setElementOffset(el, el.offset - float(lead))
    m0.paddingLeft = float(lead)
    m0.number = 0
    m0.showNumber = stream.enums.ShowNumber.NEVER  # MusicXML implicit="yes": a pickup, not a bar
    for m in measures[1:]:
        m.number -= 1
        staff.setElementOffset(m, staff.elementOffset(m) - float(lead))
    staff.coreElementsChanged()


@dataclass
class ScorePlan:
    """What a score and a MIDI file of the same notes share: the beat grid (meter, pickup, tempo map),
    the notes quantized to it (quarter notes from the first bar line) and the key
    (:class:`~pianonotes.export.keys.Key`; ``key.to_music21()`` for a music21 Key)."""

    beats: BeatGrid
    qnotes: list[_QNote]
    quant: _Quantizer
    key: Key

    @property
    def lead(self) -> Fraction:
        """Quarter notes of the first bar before the first note (0 without a pickup)."""
        first = min((qn.start for qn in self.qnotes), default=Fraction(0))
        bar = self.beats.meter.bar_ql
        return first % bar if first % bar else Fraction(0)


def _check_bpm(bpm) -> float | None:
    if bpm is None:
        return None
    if not (isinstance(bpm, (int, float)) and math.isfinite(bpm) and 10 <= bpm <= 400):
        raise PianonotesError(f"tempo {bpm!r} bpm is out of range; give a value between 10 and 400")
    return float(bpm)


def plan_score(
    notes: Sequence[Note],
    *,
    bpm: float | None = None,
    time_signature: str | None = None,
    grid: Sequence[int] = DEFAULT_GRID,
) -> ScorePlan:
    """Track beats, meter and pickup (:func:`~pianonotes.export.beats.estimate_beats`; ``bpm`` and
    ``time_signature`` override), quantize the notes to the beat grid and estimate the key."""
    meter_ = parse_meter(time_signature) if time_signature is not None else None
    g = _check_grid(grid)
    notes = list(notes)
    sure = [n for n in notes if n.confidence >= BEAT_MIN_CONFIDENCE]
    beats = estimate_beats(sure if len(sure) >= max(2, len(notes) // 2) else notes, bpm=_check_bpm(bpm), meter=meter_)
    qnotes, quant = _quantize(notes, beats, g)
    k = _estimate_key(qnotes) if qnotes else Key(0, "major")  # key from the pitches, weighted by duration
    return ScorePlan(beats, qnotes, quant, k)


def notes_to_score(
    notes: Sequence[Note],
    *,
    title: str,
    bpm: float | None = None,
    time_signature: str | None = None,
    grid: Sequence[int] = DEFAULT_GRID,
    plan: ScorePlan | None = None,
    progress: "Callable[[str, float], None] | None" = None,
    voices: bool = True,
) -> "stream.Score":
    """Build a piano grand-staff score from notes.

    Parameters
    ----------
    notes : the notes (seconds); may be empty (a score of rests).
    title : shown at the top of the score.
    bpm : quarter notes per minute, constant; ``None`` tracks the beats (the tempo may vary).
    time_signature : e.g. ``"4/4"``, ``"3/4"``, ``"6/8"``; ``None`` estimates the meter.
    grid : divisions of the quarter note that onsets and offsets snap to, the first one the default;
        ``(4,)`` is sixteenths only; the default :data:`DEFAULT_GRID` ``(4, 3, 6, 8)`` also writes
        eighth and sixteenth triplets and 32nds in the beats whose onsets really sit on them.
    plan : a :func:`plan_score` result for these notes (then bpm, time_signature and grid are unused).
    voices : a note held across later onsets of its hand (a half note against running eighths) gets
        a second voice in its staff (:func:`_voice_split`); False keeps one voice per staff.
    progress : called now and then as ``progress(stage, fraction)`` (stage ``"plan"``, then ``"score"``;
        fraction 0-1) so that a caller can show how far a long score has got.

    Returns a ``music21.stream.Score`` with two ``PartStaff`` (treble, bass) in a braced ``StaffGroup``
    (one MusicXML part with two staves, named Piano), metronome marks (the overall tempo, and new ones
    where the tempo changes for long), time and key signature, a pickup measure when the music starts
    before a downbeat, notes spelled for the key, readable note values, ties across barlines and beams.
    """
    from music21 import clef, duration, instrument, key, layout, metadata, meter, stream, tempo

    if plan is None:
        _report(progress, "plan", 0.0)
        plan = plan_score(notes, bpm=bpm, time_signature=time_signature, grid=grid)
        _report(progress, "plan", 1.0)
    _report(progress, "score", 0.0)
    beats, qnotes, quant, k = plan.beats, plan.qnotes, plan.quant, plan.key
    m = beats.meter
    beat, bar = m.beat_ql, m.bar_ql
    lead = plan.lead

    # Hand split over onset clusters.
    by_start: dict[Fraction, list[_QNote]] = {}
    for qn in qnotes:
        by_start.setdefault(qn.start, []).append(qn)
    starts = sorted(by_start)
    clusters = [sorted(by_start[s], key=lambda qn: qn.pitch) for s in starts]
    ks = split_hands([[qn.pitch for qn in c] for c in clusters])
    left = [qn for c, kk in zip(clusters, ks) for qn in c[:kk]]
    right = [qn for c, kk in zip(clusters, ks) for qn in c[kk:]]
    last = max([max(qn.end, qn.start + quant.step(qn.start)) for qn in qnotes], default=Fraction(0))
    bars = _Bars(beats)
    total = bars.line_at_or_after(max(last, Fraction(0)))
    if total < bar:
        total = bar
    staves = []
    for hand in (right, left):
        main, held = _voice_split(hand, beat) if voices else (hand, [])
        staves.append((_staff_events(main, quant.step, beat=beat, total=total),
                       _staff_events(held, quant.step, beat=beat, total=total) if held else []))
    right_events, left_events = staves[0][0] + staves[0][1], staves[1][0] + staves[1][1]

    m21_key = k.to_music21() if isinstance(k, Key) else k
    table = _spelling_table(m21_key)
    upper = stream.PartStaff(id="RH")
    lower = stream.PartStaff(id="LH")
    piano = instrument.Piano()
    upper.insert(0, piano)
    upper.partName, upper.partAbbreviation = "Piano", "Pno."
    starts = beats.bar_starts()
    for bar_index, bpm_ in _tempo_marks(beats, len(starts)):
        mm = tempo.MetronomeMark(number=int(round(bpm_)), referent=duration.Duration(float(beat)))
        mm.placement = "above"
        at = beat * int(starts[bar_index]) if bar_index < len(starts) else bar * bar_index
        upper.insert(float(max(at, lead)), mm)
    for staff, events, (main_events, held_events) in ((upper, right_events, staves[0]),
                                                      (lower, left_events, staves[1])):
        pitches = [p for _, _, ps, _ in events for p in ps]
        med = sorted(pitches)[len(pitches) // 2] if pitches else None
        if staff is upper:
            staff.insert(0, clef.BassClef() if med is not None and med < 55 else clef.TrebleClef())
        else:
            staff.insert(0, clef.TrebleClef() if med is not None and med >= 62 else clef.BassClef())
        staff.insert(0, key.Key(m21_key.tonic.name, m21_key.mode))
        staff.insert(0, meter.TimeSignature(str(m)))
        for at, mc in bars.changes():
            if at < total:
                staff.insert(float(at), meter.TimeSignature(str(mc)))
        bar_arg = bars if bars.changes() else bar
        if not held_events:
            _fill_staff(staff, main_events, total, table, beat=beat, bar=bar_arg, lead=lead)
            continue
        # two voices: the notes held across later onsets of the same hand, and the rest
        v1, v2 = stream.Voice(id="1"), stream.Voice(id="2")
        _fill_staff(v1, main_events, total, table, beat=beat, bar=bar_arg, lead=lead)
        _fill_staff(v2, held_events, total, table, beat=beat, bar=bar_arg, lead=lead)
        held_up = (sum(sum(ps) / len(ps) for _, _, ps, _ in held_events) / len(held_events)
                   > sum(sum(ps) / len(ps) for _, _, ps, _ in main_events) / max(1, len(main_events)))
        for v, up in ((v1, not held_up), (v2, held_up)):
            for el in v.notesAndRests:
                if el.isRest:
                    if v is v2:
                        el.style.hideObjectOnPrint = True  # the held voice's rests stay invisible
                else:
                    el.stemDirection = "up" if up else "down"
        _voiced_measures(staff, v1, v2)

    sc = stream.Score(id="pianonotes")
    sc.metadata = metadata.Metadata()
    sc.metadata.title = title
    sc.metadata.movementName = title
    sc.metadata.addContributor(metadata.Contributor(role="transcriber", name="pianonotes"))
    sc.insert(0, upper)
    sc.insert(0, lower)
    sc.insert(0, layout.StaffGroup([upper, lower], name="Piano", abbreviation="Pno.", symbol="brace"))
    for i, staff in enumerate((upper, lower)):
        staff.streamStatus.beams = True  # beamed below, measure by measure
        staff.makeNotation(inPlace=True)
        if lead:
            _make_pickup(staff, lead)
        # durations no single note value can write (e.g. 1.25 quarters) become tied notes
        staff.splitAtDurations(recurse=True)
        _report(progress, "score", 0.5 + 0.25 * i)
        _beam_measures(staff, progress, 0.5 + 0.25 * i)
    _report(progress, "score", 1.0)
    return sc


def _report(progress, stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, min(max(float(fraction), 0.0), 1.0))


def _beam_measures(staff, progress=None, base: float = 0.0) -> None:
    """Beams and stem directions, one measure at a time, each given the time signature and clef in
    force (music21's ``makeBeams`` on the staff searches the whole staff for them in every measure:
    quadratic in the length)."""
    from music21 import meter, stream
    from music21.stream import makeNotation as mn

    ts = cl = None
    measures = list(staff.getElementsByClass(stream.Measure))
    for j, m in enumerate(measures):
        ts = m.timeSignature or ts
        cl = m.clef or cl
        temps = []
        if m.timeSignature is None and ts is not None:
            m.timeSignature = meter.TimeSignature(ts.ratioString)
            temps.append(m.timeSignature)
        if m.clef is None and cl is not None:
            m.clef = type(cl)()
            temps.append(m.clef)
        try:
            mn.makeBeams(m, inPlace=True)
        except meter.MeterException:  # a bar music21 cannot beam stays unbeamed
            pass
        for el in temps:
            m.remove(el)
        if progress is not None and j % 50 == 0:
            _report(progress, "score", base + 0.25 * j / max(1, len(measures)))
    staff.streamStatus.beams = True


# -------------------------------------------------------------------------------------------- output
def score_to_musicxml(score: "stream.Score") -> bytes:
    """Uncompressed MusicXML (UTF-8 bytes) for a score from :func:`notes_to_score`."""
    from music21.musicxml import m21ToXml

    exporter = m21ToXml.GeneralObjectExporter(score)
    exporter.makeNotation = False  # notes_to_score already did it; skipping saves a deep copy pass
    return exporter.parse()


_MXL_CONTAINER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<container><rootfiles><rootfile full-path="score.musicxml" '
    'media-type="application/vnd.recordare.musicxml+xml"/></rootfiles></container>\n'
)


def mxl_bytes(musicxml: bytes) -> bytes:
    """Compressed MusicXML (.mxl): a zip holding the score and ``META-INF/container.xml``."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/vnd.recordare.musicxml", compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/container.xml", _MXL_CONTAINER, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("score.musicxml", musicxml, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def write_musicxml(
    path: str | os.PathLike,
    notes: Sequence[Note],
    *,
    title: str,
    bpm: float | None = None,
    time_signature: str | None = None,
    grid: Sequence[int] = DEFAULT_GRID,
    compressed: bool | None = None,
    overwrite: bool = True,
    plan: ScorePlan | None = None,
    progress: "Callable[[str, float], None] | None" = None,
) -> None:
    """Write notes as MusicXML atomically: ``.mxl`` (or ``compressed=True``) is compressed, anything
    else (``.musicxml``, ``.xml``) plain. Options as :func:`notes_to_score`; ``progress`` also hears
    stage ``"musicxml"`` (0 before writing the XML, 1 after)."""
    sc = notes_to_score(notes, title=title, bpm=bpm, time_signature=time_signature, grid=grid, plan=plan,
                        progress=progress)
    _report(progress, "musicxml", 0.0)
    data = score_to_musicxml(sc)
    _report(progress, "musicxml", 1.0)
    if compressed is None:
        compressed = str(path).lower().endswith(".mxl")
    write_bytes_atomic(path, mxl_bytes(data) if compressed else data, overwrite=overwrite)
