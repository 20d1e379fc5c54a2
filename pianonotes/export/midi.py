"""MIDI files that match the score: one piano track with the tracked tempo map, time and key
signature, and (``--note-length key``, the default) key-release note-offs with the sustain pedal as CC64,
or (``sounding``) note-offs where the notes stop sounding and no CC64. The track itself is written by
:func:`pianonotes.notes.midi_track_bytes`, the same writer as :func:`pianonotes.notes.midi_bytes`.

Note times stay exact in seconds (to a tick); the tempo map only decides where the bar lines fall,
so a sequencer shows the same bars, meter and key as the MusicXML of the same notes, with a time
signature event at each meter change of the beat grid (``BeatGrid.changes``). Before the
first bar line of the music (leading silence or a pickup) the file starts with a short bar of its
own time signature (e.g. 1/4 for a one-beat pickup), the way a MIDI file writes an anacrusis.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, Sequence

from pianonotes.notes import Note, PedalEvent, check_note_length, midi_track_bytes, with_note_length

if TYPE_CHECKING:  # pragma: no cover
    from pianonotes.export.score import ScorePlan

TICKS_PER_QUARTER = 480
_MAJOR_KEYS = {-7: "Cb", -6: "Gb", -5: "Db", -4: "Ab", -3: "Eb", -2: "Bb", -1: "F", 0: "C", 1: "G", 2: "D",
               3: "A", 4: "E", 5: "B", 6: "F#", 7: "C#"}
_MINOR_KEYS = {-7: "Abm", -6: "Ebm", -5: "Bbm", -4: "Fm", -3: "Cm", -2: "Gm", -1: "Dm", 0: "Am", 1: "Em",
               2: "Bm", 3: "F#m", 4: "C#m", 5: "G#m", 6: "D#m", 7: "A#m"}


def pedal_from_releases(notes: Sequence[Note], *, min_seconds: float = 0.01) -> list[PedalEvent]:
    """Sustain-pedal intervals implied by notes that sound past their key release (``key_offset``):
    the union of [release, sounding offset] over those notes. Empty when no note has a release."""
    spans = sorted((n.key_offset, n.offset) for n in notes
                   if n.key_offset is not None and n.offset - n.key_offset > min_seconds)
    out: list[list[float]] = []
    for a, b in spans:
        if out and a <= out[-1][1] + 1e-6:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [PedalEvent(a, b) for a, b in out]


def _key_name(k) -> str:
    sharps = max(-7, min(7, int(getattr(k, "sharps", 0))))
    return (_MINOR_KEYS if getattr(k, "mode", "major") == "minor" else _MAJOR_KEYS)[sharps]


def _meter_for(ql: Fraction) -> tuple[int, int]:
    """A time signature for a short bar of ``ql`` quarter notes (a multiple of a 16th)."""
    sixteenths = int(ql * 4)
    if sixteenths % 4 == 0:
        return sixteenths // 4, 4
    if sixteenths % 2 == 0:
        return sixteenths // 2, 8
    return sixteenths, 16


def score_midi_bytes(notes: Sequence[Note], plan: "ScorePlan", *, pedals: Sequence[PedalEvent] | None = None,
                     note_length: str = "key", program: int = 0) -> bytes:
    """A type-0 MIDI file (one Acoustic Grand Piano track named Piano) of ``notes`` with the tempo
    map, meter and key of ``plan`` (:func:`~pianonotes.export.score.plan_score`), written by the one
    MIDI writer (:func:`pianonotes.notes.midi_track_bytes`).

    ``note_length="key"``: note-offs at the key releases and ``pedals`` as CC64 (``pedals=None``: the
    pedal implied by the notes that sound past their release, :func:`pedal_from_releases`; without any,
    the note-offs are the offsets). ``"sounding"``: note-offs where each note stops sounding
    (:func:`pianonotes.notes.with_note_length`) and no CC64."""
    check_note_length(note_length)
    import mido
    import numpy as np

    tpq = TICKS_PER_QUARTER
    grid = plan.beats
    m = grid.meter
    beat_q = float(m.beat_ql)
    bar_q = float(m.bar_ql)
    times = grid.times

    # The first bar line at or after time 0, and the lead-in before it: a bar line of the opening
    # meter extended back before the grid, or one of the grid's own (meter changes included).
    q0 = float(grid.ql(0.0))
    q_d = math.ceil(q0 / bar_q - 1e-9) * bar_q
    if q_d > 0:
        later = [int(k) for k in grid.bar_starts() if k * beat_q >= q0 - 1e-9]
        q_d = later[0] * beat_q if later else q_d
    d_time = float(grid.seconds(q_d))
    lead_q = q_d - q0  # quarter notes from time 0 to that bar line
    spq0 = (times[1] - times[0]) / beat_q  # seconds per quarter of the first beat
    tempo_events: list[tuple[int, int]] = []  # (tick, microseconds per quarter)
    meter_events: list[tuple[int, tuple[int, int]]] = []
    if lead_q > 1e-6:
        lead16 = max(1, round(lead_q * 4))
        lead_ticks = lead16 * tpq // 4
        adj_ticks = tpq // 4  # the last 16th of the lead-in absorbs the rounding
        steady_ticks = lead_ticks - adj_ticks
        steady_s = steady_ticks / tpq * spq0
        if steady_ticks > 0:
            tempo_events.append((0, round(spq0 * 1e6)))
        adj_s = d_time - steady_s
        tempo_events.append((steady_ticks, max(1, round(adj_s / (adj_ticks / tpq) * 1e6))))
        meter_events.append((0, _meter_for(Fraction(lead16, 4))))
    else:
        lead_ticks = 0
    k_d = int(round(q_d / beat_q))  # beat index of that bar line
    # the meter there, then one time signature at each later meter change (its beat's tick: every
    # beat has the same length in quarter notes, grid.changes keeps the beat)
    m_d = grid.meter_at(max(k_d, 0))
    meter_events.append((lead_ticks, (m_d.numerator, m_d.denominator)))
    for k, mk in grid.changes:
        if k > k_d:
            meter_events.append((lead_ticks + round((k - k_d) * beat_q * tpq), (mk.numerator, mk.denominator)))
    for k in range(max(k_d, 0), len(times) - 1):
        spq = (times[k + 1] - times[k]) / beat_q
        tempo_events.append((lead_ticks + round((k - k_d) * beat_q * tpq), round(spq * 1e6)))

    # seconds -> ticks, consistent with the tempo events
    tick_pts = np.asarray([t for t, _ in tempo_events], dtype=float)
    sec_pts = np.zeros(len(tempo_events))
    for i in range(1, len(tempo_events)):
        sec_pts[i] = sec_pts[i - 1] + (tick_pts[i] - tick_pts[i - 1]) / tpq * tempo_events[i - 1][1] / 1e6

    def tick(t: float) -> int:
        i = max(0, int(np.searchsorted(sec_pts, t, side="right")) - 1)
        return int(round(tick_pts[i] + (t - sec_pts[i]) / (tempo_events[i][1] / 1e6) * tpq))

    meta = [(t, -1, mido.MetaMessage("set_tempo", tempo=min(us, 16_777_215))) for t, us in tempo_events]
    meta += [(t, -2, mido.MetaMessage("time_signature", numerator=num, denominator=den))
             for t, (num, den) in meter_events]
    meta.append((0, -3, mido.MetaMessage("key_signature", key=_key_name(plan.key))))
    if note_length == "sounding":  # the note-offs are where the sound stops: no pedal to apply again
        return midi_track_bytes(with_note_length(notes, pedals, "sounding"), tick=tick, meta=meta,
                                program=program, ticks_per_beat=tpq)
    if pedals is None:  # the pedal implied by the notes' own releases
        pedals = pedal_from_releases(notes)
        use_key_offsets = bool(pedals)
    else:
        use_key_offsets = True
    return midi_track_bytes(notes, tick=tick, pedals=pedals, use_key_offsets=use_key_offsets, meta=meta,
                            program=program, ticks_per_beat=tpq)
