"""Note names in the live view spelled like the score; progress and bounded time for long scores."""

from __future__ import annotations

import random
import time

import pytest

from pianonotes.cli.liveview import KeyTracker, spelling_table
from pianonotes.notes import Note

from conftest import assert_musescore_opens
from devtools.score_bench import notated


@pytest.mark.parametrize("mode", ["major", "minor"])
def test_live_spelling_table_is_the_scores(mode):
    from music21 import key

    from pianonotes.export.score import _spelling_table

    tonics = {"major": ["C", "D-", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B"],
              "minor": ["C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B"]}[mode]
    for pc, name in enumerate(tonics):
        k = key.Key(name if mode == "major" else name.lower(), mode)
        want = [n.replace("-", "b") for n in _spelling_table(k)]
        assert spelling_table(pc, mode) == want, (name, mode)


def test_key_tracker_spells_b_flat_in_f_major():
    kt = KeyTracker()
    assert kt.name(70) == "A#4"  # nothing heard yet: sharps
    scale = [65, 67, 69, 70, 72, 74, 76, 77, 72, 69, 65, 70, 65, 60, 65]  # F major, with its B-flat
    kt.update([Note(i * 0.5, i * 0.5 + 0.45, p, 80) for i, p in enumerate(scale)])
    assert kt.key() == (5, "major")
    assert kt.name(70) == "Bb4" and kt.name(58) == "Bb3"
    kt.update([Note(0.1, 0.2, 61, 80)])  # an older note is not counted twice
    assert kt.count == len(scale)
    e = KeyTracker()
    for p in [64, 66, 68, 69, 71, 73, 75, 76, 71, 64, 68, 71, 64]:  # E major: D#, not Eb
        e.add(p)
    assert e.key() == (4, "major") and e.name(63) == "D#4"


def test_live_view_sounding_line_uses_the_key():
    from pianonotes.live.session import Snapshot
    from pianonotes.cli.liveview import LiveView

    recent = tuple(Note(i * 0.3, i * 0.3 + 0.25, p, 80)
                   for i, p in enumerate([65, 67, 69, 70, 72, 74, 76, 77, 72, 69, 65, 70, 65, 60]))
    snap = Snapshot(elapsed=5.0, active=((70, 4.8, 0.9),), recent=recent)
    view = LiveView(title="t")
    view.keys.update(snap.recent)
    text = view._sounding(snap, 120)
    assert "Bb4" in text.plain and "A#" not in text.plain


def _long_piece(minutes: float, seed: int = 0) -> list[Note]:
    rng = random.Random(seed)
    spq = 0.6
    out, q = [], 0.0
    while 0.5 + q * spq < minutes * 60:
        s = 0.5 + q * spq
        bar = int(q // 4)
        if q % 4 == 0:
            out.append(Note(s, s + 4 * spq * 0.9, 36 + (bar % 5) * 2, 70))
        elif q % 1 == 0:
            out += [Note(s, s + spq * 0.8, p + bar % 3, 60) for p in (52, 55, 60)]
        out.append(Note(s + rng.gauss(0, 0.01), s + 0.27, 67 + rng.randint(-5, 9), rng.randint(60, 90)))
        q += 0.5
    return sorted(out)


def test_score_progress_is_reported_and_time_grows_about_linearly():
    from pianonotes.export import notes_to_score, plan_score

    seen = []
    took = {}
    for minutes in (1.5, 6.0):
        notes = _long_piece(minutes)
        plan = plan_score(notes)
        t = time.perf_counter()
        sink = seen if minutes == 6.0 else []
        notes_to_score(notes, title="long", plan=plan, progress=lambda stage, f, sink=sink: sink.append((stage, f)))
        took[minutes] = time.perf_counter() - t
    fr = [f for st, f in seen if st == "score"]
    assert fr[0] == 0.0 and fr[-1] == 1.0 and fr == sorted(fr) and len(fr) >= 5
    # four times the music: well under the 16 times a quadratic build would take
    assert took[6.0] < 8 * took[1.5] + 1.0, took


def test_write_musicxml_reports_every_stage(tmp_path):
    from pianonotes.export.score import write_musicxml

    seen = []
    write_musicxml(tmp_path / "a.musicxml", _long_piece(0.5), title="a", progress=lambda s, f: seen.append((s, f)))
    stages = [s for s, _ in seen]
    assert stages[0] == "plan" and "score" in stages and stages[-1] == "musicxml"
    assert seen[-1] == ("musicxml", 1.0) and (tmp_path / "a.musicxml").stat().st_size > 1000


def test_write_all_passes_progress_on(tmp_path):
    from pianonotes.export import write_all

    seen = []
    write_all([tmp_path / "a.mid", tmp_path / "a.musicxml"], _long_piece(0.3), title="a",
              progress=lambda s, f: seen.append((s, f)))
    assert seen[0] == ("plan", 0.0) and ("plan", 1.0) in seen and seen[-1] == ("musicxml", 1.0)


def test_a_held_half_note_against_running_eighths_gets_its_own_voice(tmp_path):
    """Right hand: a half note E4 held under running eighths G4..; the score keeps the half note a
    half note in a second voice instead of cutting it at the next eighth."""
    from music21 import stream

    from pianonotes.export import notes_to_score, write_notes

    spq = 0.6
    notes = []
    for bar in range(6):
        t0 = 0.5 + bar * 4 * spq
        for h in (0, 2):  # two held half notes per bar
            notes.append(Note(t0 + h * spq, t0 + (h + 2) * spq - 0.03, 64, 70))
        for k in range(8):
            notes.append(Note(t0 + k * spq / 2, t0 + (k + 1) * spq / 2 - 0.03, 67 + (k % 4) * 2, 80))
        notes.append(Note(t0, t0 + 4 * spq - 0.05, 36 + bar % 3, 70))  # left hand whole notes
    notes.sort()
    sc = notes_to_score(notes, title="voices", time_signature="4/4", bpm=100)
    rh = sc.parts[0]
    ms = list(rh.getElementsByClass(stream.Measure))
    assert all(m.hasVoices() for m in ms)
    for m in ms:
        vals = sorted({float(n.quarterLength) for v in m.voices for n in v.notes if 64 in [p.midi for p in n.pitches]})
        assert vals == [2.0], (m.number, vals)
        assert sum(float(n.quarterLength) for v in m.voices for n in v.notes) == 4 * 2 * 0.5 + 2 * 2
    one = notes_to_score(notes, title="one", time_signature="4/4", bpm=100, voices=False)
    assert not any(m.hasVoices() for m in one.parts[0].getElementsByClass(stream.Measure))
    out = write_notes(tmp_path / "v.svg", notes, title="voices", time_signature="4/4", bpm=100)
    assert out and out[0].stat().st_size > 1000


def _soprano_over_alto(beats: int, per_bar: int, tunes: int, spq: float = 0.6) -> list[Note]:
    """Soprano quarters (C5, D5, ... ``tunes`` pitches in turn) over alto eighths E4 F4 on every beat,
    and a left-hand bass held for each bar of ``per_bar`` beats."""
    notes = []
    for q in range(beats):
        t = 0.5 + q * spq
        notes.append(Note(t, t + 0.9 * spq, 72 + (q % tunes) * 2, 80))
        notes.append(Note(t, t + 0.45 * spq, 64, 70))
        notes.append(Note(t + 0.5 * spq, t + 0.95 * spq, 65, 70))
        if q % per_bar == 0:
            notes.append(Note(t, t + per_bar * spq - 0.05, 36, 70))
    return notes


def test_a_quarter_held_against_moving_eighths_keeps_its_value():
    """Right hand: soprano quarters C5 over alto eighths E4 F4 (one later onset only, so no second
    voice); the soprano is tied from the first chord into the second, a quarter note in all, and
    the alto keeps its eighths. Before, every chord ended at the next onset: the soprano was an
    eighth followed by nothing."""
    from music21 import converter

    from pianonotes.export import notes_to_score, score_to_musicxml

    notes = _soprano_over_alto(beats=16, per_bar=4, tunes=2)
    sc = converter.parse(score_to_musicxml(notes_to_score(notes, title="ties", time_signature="4/4", bpm=100)),
                         format="musicxml")
    rows = [(o, v, m) for o, v, m, staff in notated(sc, with_staff=True) if staff == 0]  # ties followed
    soprano = [v for o, v, m in rows if m in (72, 74)]
    alto = [v for o, v, m in rows if m in (64, 65)]
    assert soprano == [1.0] * 16
    assert alto == [0.5] * 32


def test_chord_ties_engrave_without_warnings(tmp_path):
    """The per-note ties inside chords (a soprano tied over a moving alto) are valid MusicXML: verovio
    renders them without a warning and MuseScore 3 (when installed) opens the file without an error."""
    import shutil

    from pianonotes.export import notes_to_score, render_svg_pages, score_to_musicxml

    notes = _soprano_over_alto(beats=12, per_bar=3, tunes=3)
    xml = score_to_musicxml(notes_to_score(notes, title="ties", time_signature="3/4", bpm=100))
    assert xml.count(b'<tied type="start"') >= 12 and xml.count(b'<tied type="stop"') >= 12
    pages, warnings = render_svg_pages(xml)
    assert pages and warnings == []
    if shutil.which("mscore3") is not None:
        src = tmp_path / "ties.musicxml"
        src.write_bytes(xml)
        assert_musescore_opens(src, tmp_path)


def test_a_half_note_played_short_before_a_rest_is_a_half_note():
    """A half note held 90 % (1.8 quarters: 1.75 on the 16th grid) and then a beat of rest is a half
    note and a quarter rest, not a double-dotted quarter, a 16th rest and a quarter rest."""
    from music21 import stream

    from pianonotes.export import notes_to_score

    spq = 0.6
    notes = []
    for bar in range(4):
        t = 0.5 + bar * 4 * spq
        notes.append(Note(t, t + 1.8 * spq, 67, 80))  # beats 1-2, then a rest on beat 3
        notes.append(Note(t + 3 * spq, t + 3.9 * spq, 69, 80))  # a quarter on beat 4
        notes.append(Note(t, t + 1.8 * spq, 48, 70))
    sc = notes_to_score(notes, title="short", time_signature="4/4", bpm=100)
    for m in sc.parts[0].getElementsByClass(stream.Measure):
        vals = [(float(x.offset), float(x.quarterLength), x.isRest) for x in m.notesAndRests]
        assert vals == [(0.0, 2.0, False), (2.0, 1.0, True), (3.0, 1.0, False)], vals


def test_a_lone_melody_stays_in_one_staff():
    """A fiddle tune of lone notes around G4-C5 (D4 to E5) is one hand: the hand split's beam search
    alone would deal it out to both staves (two hand centres fit a line closer than one)."""
    from pianonotes.export.hands import split_hands

    rng = random.Random(4)
    line = [[rng.choice([62, 64, 66, 67, 69, 71, 72, 74, 76])] for _ in range(200)]
    assert split_hands(line) == [0] * 200
    low = [[c[0] - 24] for c in line]  # the same line two octaves down: the left hand
    assert split_hands(low) == [1] * 200
    # a fiddle tune's occasional double stops (one cluster in 15 of two notes, as in the score bench's
    # Belle of Claremont Hornpipe) keep it in one staff: split, each staff filled its notes out to eighths
    stops = [c + [c[0] - 5] if i % 15 == 7 else c for i, c in enumerate(line)]
    assert sum(len(c) == 2 for c in stops) / len(stops) > 0.05
    assert split_hands(stops) == [0] * 200
    # chords are still split between the hands
    assert split_hands([[43, 67, 71, 74]] * 4) == [1] * 4
