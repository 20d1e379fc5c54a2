"""Export: MusicXML scores, engraving, MIDI, CSV/JSON events, piano roll, format dispatch."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import zipfile
from fractions import Fraction

import pytest

from pianonotes.errors import PianonotesError
from pianonotes.export import FORMATS, engrave, estimate_tempo, notes_to_score, read_events, render_svg_pages, score_to_musicxml, split_hands, write_csv, write_json, write_musicxml, write_notes, write_piano_roll
from pianonotes.notes import Note, read_midi

from conftest import assert_musescore_opens, four_then_three

BPM = 100.0

# (beat, length in beats, MIDI pitch). C major: a right-hand melody that dips below middle C (B3, A3
# in bar 3) over a low bass line, a close left-hand chord, a note tied over the bar line at beat 7.5,
# and a final two-hand chord spanning three octaves.
C_MAJOR = [
    (0, 1, 64), (1, 1, 67), (2, 1, 72), (3, 1, 71), (0, 2, 36), (2, 2, 43),
    (4, 1, 69), (5, .5, 67), (5.5, .5, 65), (6, 1, 64), (7.5, 1, 62),
    (4, 1, 41), (5, 2, 48), (5, 2, 52), (5, 2, 55), (7, 1, 43),
    (8.5, .5, 59), (9, 1, 57), (10, 1, 59), (11, 1, 60), (8, 1, 33), (9, 1, 40), (10, 1, 41), (11, 1, 43),
    (12, 4, 36), (12, 4, 48), (12, 4, 64), (12, 4, 67), (12, 4, 72),
]
# F major with B-flat throughout and a chromatic D-flat passing note.
F_MAJOR = [
    (0, 1, 65), (1, 1, 69), (2, 1, 72), (3, 1, 70), (0, 2, 41), (2, 2, 48),
    (4, 1, 69), (5, 1, 67), (6, 1, 65), (7, 1, 64), (4, 2, 46), (6, 2, 48),
    (8, .5, 62), (8.5, .5, 61), (9, 1, 62), (10, 1, 70), (11, 1, 69), (8, 2, 46), (10, 2, 48),
    (12, 4, 41), (12, 4, 53), (12, 4, 65), (12, 4, 69), (12, 4, 72),
]


def humanize(events, *, bpm=BPM, jitter=0.015, seed=1, start=0.5):
    """Notes from (beat, beats, pitch) with onset/offset jitter of up to ``jitter`` seconds."""
    rng = random.Random(seed)
    b = 60.0 / bpm
    out = []
    for beat, dur, pitch in events:
        on = start + beat * b + rng.uniform(-jitter, jitter)
        off = start + (beat + dur) * b - 0.03 + rng.uniform(-jitter, jitter)
        out.append(Note(on, off, pitch, velocity=rng.randint(60, 90), confidence=rng.uniform(0.5, 1)))
    return sorted(out)


def long_piece(bars=75, seed=3):
    """About 3 minutes at 100 bpm, 900 notes: eighth-note melody over a quarter-note bass."""
    rng = random.Random(seed)
    scale = [60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79]
    ev, i = [], 5
    for bar in range(bars):
        for k in range(8):
            i = max(0, min(len(scale) - 1, i + rng.choice([-2, -1, -1, 1, 1, 2])))
            ev.append((bar * 4 + k * 0.5, 0.5, scale[i]))
        root = rng.choice([36, 41, 43, 45])
        ev.append((bar * 4, 1, root))
        for k in (1, 2, 3):
            ev.append((bar * 4 + k, 1, root + rng.choice([7, 12])))
    return humanize(ev, seed=seed)


def parsed_notes(path_or_data):
    """{(staff index, beat offset, midi)} of every sounding note start in a MusicXML file, plus the
    parsed score. Tie continuations are skipped."""
    from music21 import converter

    sc = converter.parse(path_or_data, format="musicxml") if isinstance(path_or_data, bytes) else (
        converter.parse(str(path_or_data)))
    out = set()
    for si, part in enumerate(sc.parts):
        for el in part.flatten().notes:
            for n in getattr(el, "notes", None) or [el]:
                if n.tie is not None and n.tie.type in ("stop", "continue"):
                    continue
                out.add((si, Fraction(el.offset).limit_denominator(96), n.pitch.midi))
    return out, sc


# ------------------------------------------------------------------------------------------- scores
@pytest.fixture(scope="module")
def c_major_xml(tmp_path_factory):
    path = tmp_path_factory.mktemp("score") / "c.musicxml"
    write_musicxml(path, humanize(C_MAJOR), title="C major test")  # tempo estimated
    return path


def test_musicxml_round_trip_gives_pitches_and_beats(c_major_xml, tmp_path):
    got, _ = parsed_notes(c_major_xml)
    want = {(Fraction(b).limit_denominator(96), p) for b, _, p in C_MAJOR}
    assert {(b, p) for _, b, p in got} == want
    # the compressed form holds the same score
    mxl = tmp_path / "c.mxl"
    write_musicxml(mxl, humanize(C_MAJOR), title="C major test", bpm=BPM)
    assert zipfile.is_zipfile(mxl)
    got_mxl, _ = parsed_notes(mxl)
    assert got_mxl == got


def test_grand_staff_tempo_meter_title(c_major_xml):
    xml = c_major_xml.read_text()
    assert xml.count("<score-part ") == 1  # one piano part ...
    assert "<staves>2</staves>" in xml  # ... with two staves
    assert "<sign>G</sign>" in xml and "<sign>F</sign>" in xml
    assert "<per-minute>100</per-minute>" in xml  # estimated tempo as a metronome mark
    assert "<beats>4</beats>" in xml and "<beat-type>4</beat-type>" in xml
    assert "<work-title>C major test</work-title>" in xml
    _, sc = parsed_notes(c_major_xml)
    assert len(sc.parts) == 2
    assert "Music21" not in xml  # no made-up composer


def test_hand_split_follows_the_music(c_major_xml):
    got, _ = parsed_notes(c_major_xml)
    melody = {(Fraction(b).limit_denominator(96), p) for b, _, p in C_MAJOR if p >= 57}
    bass = {(Fraction(b).limit_denominator(96), p) for b, _, p in C_MAJOR if p <= 55}
    assert any(p < 60 for _, p in melody)  # a fixed middle-C split would put these in the bass
    assert {(b, p) for s, b, p in got if s == 0} == melody
    assert {(b, p) for s, b, p in got if s == 1} == bass


def test_split_hands_units():
    # a three-octave chord is shared; a close triad stays in one hand; a lone low note goes left
    assert split_hands([[36, 48, 64, 67, 72]]) == [2]
    assert split_hands([[48, 52, 55], [67]]) == [3, 0]
    assert split_hands([[40]]) == [1]
    # a melody walking down below middle C stays in the right hand
    assert split_hands([[36, 67], [65], [62], [59], [57], [38, 59]]) == [1, 0, 0, 0, 0, 1]


def test_flats_in_flat_key_and_sharps_in_sharp_key():
    xml = score_to_musicxml(notes_to_score(humanize(F_MAJOR), title="F", bpm=BPM)).decode()
    assert "<fifths>-1</fifths>" in xml
    _, sc = parsed_notes(xml.encode())
    names = {p.name for p in sc.pitches}
    assert {"B-", "D-"} <= names and not any("#" in n for n in names)
    d_major = [(i, 1, p) for i, p in enumerate([62, 64, 66, 67, 69, 71, 73, 74, 73, 71, 69, 68, 69, 66, 62])]
    d_major += [(i * 2, 2, p) for i, p in enumerate([50, 45, 47, 43, 45, 45, 50, 50])]
    xml = score_to_musicxml(notes_to_score(humanize(d_major), title="D", bpm=BPM)).decode()
    assert "<fifths>2</fifths>" in xml
    _, sc = parsed_notes(xml.encode())
    names = {p.name for p in sc.pitches}
    assert {"F#", "C#", "G#"} <= names and not any("-" in n for n in names)
    assert "<accidental>natural</accidental>" not in xml  # no natural signs from Note(int)
    # minor: the raised leading tone is a sharp even in a flat key (D minor: C#, B-flat)
    melody = [62, 64, 65, 67, 69, 70, 73, 74, 73, 69, 70, 67, 65, 64, 61, 62]
    d_minor = [(i, 1, p) for i, p in enumerate(melody)]
    d_minor += [(i * 2, 2, p) for i, p in enumerate([50, 45, 46, 43, 45, 45, 46, 50])]
    xml = score_to_musicxml(notes_to_score(humanize(d_minor), title="Dm", bpm=BPM)).decode()
    assert "<fifths>-1</fifths>" in xml and "<mode>minor</mode>" in xml
    _, sc = parsed_notes(xml.encode())
    names = {p.name for p in sc.pitches}
    assert {"B-", "C#"} <= names and "D-" not in names


def test_tie_across_barline(c_major_xml):
    from music21 import converter

    sc = converter.parse(str(c_major_xml))
    upper = sc.parts[0]
    d4 = [n for n in upper.recurse().notes if n.isNote and n.pitch.midi == 62]
    ties = [(n.getContextByClass("Measure").number, n.tie.type if n.tie else None) for n in d4]
    assert ties == [(2, "start"), (3, "stop")]


def test_rests_and_triplets_only_when_there():
    from music21 import note

    triplets = [(b + k / 3, 1 / 3, 72 + k) for b in range(4) for k in range(3)]
    triplets += [(b, 1, 48) for b in range(4)]
    straight = [(k / 4, 0.25, 60 + k % 5) for k in range(32)]

    def lengths(events, grid):
        sc = notes_to_score(humanize(events, jitter=0.012), title="t", bpm=BPM, grid=grid)
        return {Fraction(n.quarterLength).limit_denominator(96) for n in sc.parts[0].recurse().notes}

    assert lengths(triplets, (4, 3)) == {Fraction(1, 3)}
    assert Fraction(1, 3) not in lengths(triplets, (4,))
    assert lengths(straight, (4, 3)) == {Fraction(1, 4)}
    # a short staccato note leaves a rest behind it
    sc = notes_to_score([Note(0.0, 0.1, 72), Note(1.2, 1.5, 72), Note(2.4, 2.7, 72), Note(3.6, 3.9, 72)],
                        title="r", bpm=BPM)
    assert any(isinstance(x, note.Rest) for x in sc.parts[0].recurse().notesAndRests)


def test_odd_durations_become_tied_notes():
    from music21 import converter

    # (the last note was a 16th before 2.25 beats of rest; a lone short note before a longer rest is now
    # written up to the next beat, see test_note_values_are_readable, so it is an eighth here)
    events = [(0, 1.25, 72), (1.25, 0.75, 74), (2, 1, 76), (3, 2.5, 77), (5.5, 0.5, 79), (0, 4, 48),
              (4, 2.5, 43)]
    xml = score_to_musicxml(notes_to_score(humanize(events), title="odd", bpm=BPM))
    sc = converter.parse(xml, format="musicxml")
    spans = []  # (staff, onset, total tied length, midi)
    for si, part in enumerate(sc.parts):
        for n in part.flatten().notes:
            if n.tie is not None and n.tie.type in ("stop", "continue"):
                spans[-1][2] += Fraction(n.quarterLength)
            else:
                spans.append([si, Fraction(n.offset), Fraction(n.quarterLength), n.pitch.midi])
    assert sorted((b, d, p) for _, b, d, p in spans) == sorted(
        (Fraction(b), Fraction(d), p) for b, d, p in events)


def test_empty_notes_give_a_valid_score(tmp_path):
    path = tmp_path / "empty.musicxml"
    write_notes(path, [], title="Silence")
    got, sc = parsed_notes(path)
    assert got == set()
    assert len(sc.parts) == 2
    assert all(len(p.recurse().getElementsByClass("Rest")) >= 1 for p in sc.parts)


def test_bad_options_are_errors():
    with pytest.raises(PianonotesError, match="time signature"):
        notes_to_score(humanize(C_MAJOR), title="x", time_signature="4-4")
    with pytest.raises(PianonotesError, match="grid"):
        notes_to_score(humanize(C_MAJOR), title="x", grid=(0,))
    xml = score_to_musicxml(notes_to_score(humanize(C_MAJOR), title="x", bpm=BPM, time_signature="3/4"))
    assert b"<beats>3</beats>" in xml


# -------------------------------------------------------------------------------------------- tempo
@pytest.mark.parametrize("bpm", [72.0, 100.0, 140.0])
def test_estimate_tempo_steady_pattern(bpm):
    ev = [(b, 1, 43 + (b % 4)) for b in range(64)] + [(k / 2, 0.5, 67 + (k % 5)) for k in range(128)]
    est = estimate_tempo(humanize(ev, bpm=bpm, jitter=0.015, seed=7))
    assert abs(est - bpm) / bpm < 0.05


def test_estimate_tempo_needs_notes():
    assert estimate_tempo([]) == 120.0
    assert estimate_tempo(humanize([(0, 1, 60), (1, 1, 62), (2, 1, 64)])) == 120.0


def test_long_piece_engraves_to_pages(tmp_path):
    # its speed (about 1 s on an idle machine) belongs to `make bench`, not to a timed test
    notes = long_piece()
    assert len(notes) == 900 and notes[-1].offset > 175
    sc = notes_to_score(notes, title="Long")
    xml = score_to_musicxml(sc)
    assert b"<per-minute>100</per-minute>" in xml
    res = engrave(xml, tmp_path / "long.svg")
    assert res.warnings == []
    assert len(res.paths) >= 2 and res.paths[1].name == "long-2.svg"
    assert all(p.read_bytes().lstrip().startswith(b"<svg") for p in res.paths)
    pdf = engrave(xml, tmp_path / "long.pdf")
    data = pdf.paths[0].read_bytes()
    assert data.startswith(b"%PDF") and pdf.paths == [tmp_path / "long.pdf"]
    assert f"/Count {len(res.paths)}".encode() in data  # every page in one PDF


# ------------------------------------------------------------------------------------------ engrave
@pytest.mark.parametrize(
    "ext, magic", [(".svg", b"<svg"), (".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF-")]
)
def test_engraving_writes_the_right_file_type(tmp_path, ext, magic):
    paths = write_notes(tmp_path / f"score{ext}", humanize(C_MAJOR), title="C", bpm=BPM)
    assert paths == [tmp_path / f"score{ext}"]
    data = paths[0].read_bytes()
    assert data.lstrip().startswith(magic) and len(data) > 5000


def _svg_page(text: str) -> str:
    """An A4 page as verovio sizes it (tenths of a millimetre) with one line of text."""
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="2100px" height="2970px" viewBox="0 0 2100 2970">'
            f'<text x="200" y="300" font-family="DejaVu Sans" font-size="80">{text}</text></svg>')


def test_pdf_joins_the_pages_in_order_on_a4(tmp_path):
    """cairosvg draws each page, pypdf joins them: every page, in order, A4 (595 x 842 pt)."""
    from pypdf import PdfReader

    from pianonotes.export.engrave import _write_pdf

    seen = []
    _write_pdf([_svg_page(f"page{i}") for i in (1, 2, 3)], tmp_path / "s.pdf", overwrite=True,
               progress=lambda stage, f: seen.append((stage, round(f, 3))))
    reader = PdfReader(tmp_path / "s.pdf")
    assert [p.extract_text().strip() for p in reader.pages] == ["page1", "page2", "page3"]
    for page in reader.pages:
        assert abs(float(page.mediabox.width) - 595.3) < 0.5 and abs(float(page.mediabox.height) - 841.9) < 0.5
    assert seen == [("pages", 0.333), ("pages", 0.667), ("pages", 1.0)]
    assert [p.name for p in tmp_path.iterdir()] == ["s.pdf"]


def test_pdf_write_is_atomic(tmp_path, monkeypatch):
    """A page that fails to draw leaves the old PDF as it was and no part file; without overwrite an existing
    PDF is refused before any page is drawn."""
    import cairosvg

    from pianonotes.export.engrave import _write_pdf

    out = tmp_path / "s.pdf"
    out.write_bytes(b"old")
    real, drawn = cairosvg.svg2pdf, []

    def svg2pdf(*args, **kwargs):
        drawn.append(1)
        if len(drawn) == 2:
            raise ValueError("broken page")
        return real(*args, **kwargs)

    monkeypatch.setattr(cairosvg, "svg2pdf", svg2pdf)
    with pytest.raises(ValueError, match="broken page"):
        _write_pdf([_svg_page("a"), _svg_page("b")], out, overwrite=True)
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["s.pdf"]
    drawn.clear()
    with pytest.raises(PianonotesError, match="exists; pass --overwrite"):
        _write_pdf([_svg_page("a")], out, overwrite=False)
    assert drawn == [] and out.read_bytes() == b"old"


def test_engraving_is_clean_and_metronome_glyph_is_drawable(c_major_xml):
    pages, warnings = render_svg_pages(c_major_xml)
    assert warnings == []  # e.g. "There are 1 ties left open" would be a failure
    assert len(pages) == 1
    # the metronome note is a Unicode quarter note in a system font, not a Leipzig web-font glyph
    assert "\u2669" in pages[0] and "\ueca5" not in pages[0]


def test_fine_grid_only_where_the_music_has_it(tmp_path):
    """The default grid writes 16th triplets, 32nds and dotted-16th + 32nd pairs in the beats that hold
    them, keeps jittered straight 16ths and 8ths as they are, and engraves (verovio, MuseScore 3) cleanly."""
    from pianonotes.export import DEFAULT_GRID

    sixteenth_triplets = [(b + k / 6, 1 / 6, 72 + k % 4) for b in range(4) for k in range(6)]
    thirty_seconds = [(b + k / 8, 1 / 8, 72 + k % 5) for b in range(4) for k in range(8)]
    dotted = [(b + h + k, d, 74 - k * 8 * d) for b in range(4) for h in (0, .5) for k, d in ((0, 3 / 8), (3 / 8, 1 / 8))]
    dotted = [(b, d, int(p)) for b, d, p in dotted]
    straight = [(k / 4, 0.25, 60 + k % 5) for k in range(32)]
    eighths = [(k / 2, 0.5, 64 + k % 3) for k in range(16)]
    bass = [(b, 1, 48) for b in range(4)]

    def values(events, grid=DEFAULT_GRID, jitter=0.004):
        sc = notes_to_score(humanize(events + bass, jitter=jitter), title="t", bpm=BPM, grid=grid)
        return {Fraction(n.quarterLength).limit_denominator(96) for n in sc.parts[0].recurse().notes}, sc

    assert values(sixteenth_triplets)[0] == {Fraction(1, 6)}
    assert values(thirty_seconds)[0] == {Fraction(1, 8)}
    assert values(dotted)[0] == {Fraction(3, 8), Fraction(1, 8)}
    assert Fraction(1, 6) not in values(sixteenth_triplets, grid=(4,))[0]  # 16ths only: no tuplets
    for _ in range(3):  # played straight music, timing noise of +-15 ms at 100 bpm, stays straight
        assert values(straight, jitter=0.015)[0] == {Fraction(1, 4)}
        assert values(eighths, jitter=0.015)[0] == {Fraction(1, 2)}
    xml = score_to_musicxml(values(sixteenth_triplets + [(b + 4, d, p) for b, d, p in dotted])[1])
    pages, warnings = render_svg_pages(xml)
    assert pages and warnings == []
    if shutil.which("mscore3"):
        src = tmp_path / "fine.musicxml"
        src.write_bytes(xml)
        assert_musescore_opens(src, tmp_path)


def test_verovio_warnings_are_reported():
    xml = score_to_musicxml(notes_to_score(humanize(C_MAJOR), title="C", bpm=BPM)).decode()
    i = xml.index("</type>") + len("</type>")
    broken = xml[:i] + '<notations><tied type="start"/></notations>' + xml[i:]
    _, warnings = render_svg_pages(broken)
    assert any("tie" in w.lower() for w in warnings)


@pytest.mark.skipif(shutil.which("mscore3") is None, reason="MuseScore 3 (mscore3) is not installed")
def test_musescore_reads_our_musicxml(c_major_xml, tmp_path):
    assert_musescore_opens(c_major_xml, tmp_path)


# ------------------------------------------------------------------------------------- midi / events
def _four_then_three(bars4=8, bars3=8, spq=0.6, start=0.7):
    """Notes of ``bars4`` bars of 4/4 then ``bars3`` of 3/4 at a steady 100 bpm: a bass held for each bar,
    chords on the other beats, a melody opening each bar with a half note. Returns (notes, seconds(q))."""
    rng = random.Random(0)
    ev = four_then_three(bars4, bars3)
    notes = [Note(start + a * spq + rng.uniform(-0.01, 0.01), start + (a + d * 0.9) * spq, p, rng.randint(62, 84))
             for a, d, p in ev]
    return sorted(notes), (lambda q: start + q * spq)


def _midi_time_signatures(path):
    """(seconds through the tempo map, tick, numerator, denominator) of each time signature."""
    import mido

    mid = mido.MidiFile(str(path))
    out, t, tick = [], 0.0, 0
    tempo = 500000
    for msg in mid.tracks[0]:
        t += mido.tick2second(msg.time, mid.ticks_per_beat, tempo)
        tick += msg.time
        if msg.type == "set_tempo":
            tempo = msg.tempo
        elif msg.type == "time_signature":
            out.append((t, tick, msg.numerator, msg.denominator))
    return out, mid.ticks_per_beat


def test_midi_writes_each_meter_change_where_the_score_has_it(tmp_path):
    """8 bars of 4/4 then 8 of 3/4: the MIDI has 4/4 at the first bar line and 3/4 at bar 9 (32 quarters
    later, at that beat's time), and the MusicXML of the same plan puts its 3/4 on the same bar."""
    from music21 import converter, stream

    from pianonotes.export import plan_score, write_all

    notes, sec = _four_then_three()
    plan = plan_score(notes)
    assert [(k, str(m)) for k, m in plan.beats.changes] == [(32, "3/4")]
    mid, xml = tmp_path / "change.mid", tmp_path / "change.musicxml"
    write_all([mid, xml], notes, title="change")
    sigs, tpq = _midi_time_signatures(mid)
    bars = [s for s in sigs if s[0] > 0.5]  # after the lead-in bar (its own short signature at 0)
    assert [(n, d) for _, _, n, d in bars] == [(4, 4), (3, 4)], sigs
    assert abs(bars[0][0] - sec(0)) < 0.03 and abs(bars[1][0] - sec(32)) < 0.03, sigs
    assert bars[1][1] - bars[0][1] == 32 * tpq
    assert all(s[0] < 0.5 for s in sigs[:-2]) and len(sigs) <= 3
    # the MusicXML agrees: 4/4 on bar 1, 3/4 on bar 9, which starts 32 quarter notes in
    sc = converter.parse(str(xml))
    ms = list(sc.parts[0].getElementsByClass(stream.Measure))
    marks = [(m.number, m.timeSignature.ratioString, float(m.offset)) for m in ms if m.timeSignature is not None]
    first = marks[0][2]
    assert [(n, r, o - first) for n, r, o in marks] == [(1, "4/4", 0.0), (9, "3/4", 32.0)]
    # a given meter: no change, one 4/4 after the lead-in
    one = tmp_path / "one.mid"
    write_notes(one, notes, title="one", time_signature="4/4")
    assert [(n, d) for t, _, n, d in _midi_time_signatures(one)[0] if t > 0.5] == [(4, 4)]


def test_midi_round_trip_mido_and_pretty_midi(tmp_path):
    import mido
    import pretty_midi

    notes = humanize(C_MAJOR)
    path = tmp_path / "c.mid"
    assert write_notes(path, notes, title="C", bpm=BPM) == [path]
    mid = mido.MidiFile(str(path))
    assert mid.type == 0 and len(mid.tracks) == 1
    back = read_midi(path, sustain=False)
    assert [n.pitch for n in back] == [n.pitch for n in notes]
    assert max(abs(a.onset - b.onset) + abs(a.offset - b.offset) for a, b in zip(back, notes)) < 0.002

    pm = pretty_midi.PrettyMIDI(str(path))
    assert len(pm.instruments) == 1
    inst = pm.instruments[0]
    assert inst.program == 0 and not inst.is_drum  # Acoustic Grand Piano
    assert abs(pm.get_tempo_changes()[1][0] - BPM) < 0.01
    pn = sorted(inst.notes, key=lambda n: (n.start, n.pitch))
    assert [(n.pitch, n.velocity) for n in pn] == [(n.pitch, n.velocity) for n in notes]
    assert all(abs(p.start - n.onset) < 0.002 and abs(p.end - n.offset) < 0.002 for p, n in zip(pn, notes))


@pytest.mark.parametrize("writer", ["csv", "json"])
def test_events_round_trip(tmp_path, writer):
    notes = humanize(C_MAJOR)
    path = tmp_path / f"e.{writer}"
    if writer == "csv":
        write_csv(path, notes)
        assert path.read_text().splitlines()[0] == "onset,offset,pitch,name,velocity,confidence"
    else:
        write_json(path, notes, meta={"title": "C", "bpm": BPM})
    back = read_events(path)
    assert len(back) == len(notes)
    for a, b in zip(back, notes):
        assert (a.pitch, a.velocity) == (b.pitch, b.velocity)
        assert abs(a.onset - b.onset) <= 5e-5 and abs(a.offset - b.offset) <= 5e-5
        assert abs(a.confidence - b.confidence) <= 5e-4
    text = path.read_text()
    assert "C5" in text and "E4" in text  # note names via pitch_name
    if writer == "json":
        import json

        assert json.loads(text)["meta"] == {"title": "C", "bpm": BPM}


def test_event_names_and_bad_files(tmp_path):
    path = tmp_path / "x.csv"
    write_csv(path, [Note(0.123456, 0.5, 61, 90, confidence=0.98765)])
    assert path.read_text().splitlines()[1] == "0.1235,0.5000,61,C#4,90,0.988"
    bad = tmp_path / "bad.csv"
    bad.write_text("onset,offset,pitch\n0.5,0.2,60\n")
    with pytest.raises(PianonotesError, match="line 2"):
        read_events(bad)
    with pytest.raises(PianonotesError, match="not found"):
        read_events(tmp_path / "missing.json")


# ----------------------------------------------------------------------------------- roll, dispatch
def test_piano_roll_png(tmp_path):
    path = tmp_path / "roll.png"
    write_piano_roll(path, humanize(C_MAJOR), title="C")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    write_piano_roll(tmp_path / "empty.png", [])
    assert (tmp_path / "empty.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(PianonotesError, match="PNG"):
        write_piano_roll(tmp_path / "roll.jpg", [])


def test_formats_table():
    assert {FORMATS[e] for e in (".mid", ".midi")} == {"midi"}
    assert {FORMATS[e] for e in (".musicxml", ".xml", ".mxl")} == {"musicxml"}
    assert {FORMATS[e] for e in (".pdf", ".svg", ".png")} == {"engraved"}
    assert FORMATS[".csv"] == "csv" and FORMATS[".json"] == "json"


def test_unknown_extension_is_an_error(tmp_path):
    with pytest.raises(PianonotesError, match=r"\.mid.*\.musicxml.*\.pdf"):
        write_notes(tmp_path / "x.txt", humanize(C_MAJOR), title="x")
    with pytest.raises(PianonotesError, match="not supported"):
        write_notes(tmp_path / "x.mid", [], title="x", fmt="doc")
    assert list(tmp_path.iterdir()) == []
    # an explicit format wins over the extension
    write_notes(tmp_path / "events.txt", humanize(C_MAJOR), title="x", fmt="csv")
    assert (tmp_path / "events.txt").read_text().startswith("onset,offset")


def test_existing_output_is_not_overwritten(tmp_path):
    notes = humanize(C_MAJOR)
    for name in ("x.mid", "x.musicxml", "x.svg", "x.json"):
        path = tmp_path / name
        path.write_text("keep me")
        with pytest.raises(PianonotesError, match="exists"):
            write_notes(path, notes, title="x")
        assert path.read_text() == "keep me"
        write_notes(path, notes, title="x", overwrite=True)
        assert path.read_bytes() != b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.mid", "x.musicxml", "x.svg"]


def test_import_is_cheap():
    code = (
        "import sys, pianonotes.export; "
        "print([m for m in ('music21', 'verovio', 'matplotlib', 'cairosvg', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- --note-length key|sounding
def _pedalled():
    """C major played legato under the pedal: each bar's pedal holds the notes released in it."""
    from pianonotes.notes import PedalEvent

    b = 60.0 / BPM
    notes = [Note(n.onset, n.offset + 0.5, n.pitch, n.velocity, key_offset=n.offset) for n in humanize(C_MAJOR)]
    pedals = [PedalEvent(0.5 + bar * 4 * b + 0.1, 0.5 + (bar + 1) * 4 * b - 0.05) for bar in range(4)]
    return notes, pedals


def _midi_notes_and_cc64(path):
    import mido

    t, ons, ends, cc = 0, {}, [], []
    mid = mido.MidiFile(str(path))
    for m in mid:  # seconds, through the tempo map
        t += m.time
        if m.type == "note_on" and m.velocity > 0:
            ons[m.note] = t
        elif m.type in ("note_off", "note_on"):
            ends.append((round(ons.pop(m.note), 3), m.note, round(t, 3)))
        elif m.type == "control_change" and m.control == 64:
            cc.append((round(t, 3), m.value))
    return sorted(ends), cc


def test_midi_note_length_key_and_sounding(tmp_path):
    from pianonotes.export import plan_score
    from pianonotes.notes import read_midi_with_pedal, with_note_length

    notes, pedals = _pedalled()
    plan = plan_score(notes, bpm=BPM)
    paths = {}
    for mode in ("key", "sounding"):
        paths[mode] = tmp_path / f"{mode}.mid"
        write_notes(paths[mode], notes, title="C", plan=plan, pedals=pedals, note_length=mode)
    key_ends, key_cc = _midi_notes_and_cc64(paths["key"])
    snd_ends, snd_cc = _midi_notes_and_cc64(paths["sounding"])
    want_cc = [(t, v) for p in pedals for t, v in ((p.start, 127), (p.end, 0))]
    assert len(key_cc) == len(want_cc) and snd_cc == []  # key: CC64; sounding: none
    assert all(abs(t - wt) <= 2e-3 and v == wv for (t, v), (wt, wv) in zip(key_cc, want_cc))
    for (on, pitch, end), n in zip(key_ends, sorted(notes, key=lambda n: (round(n.onset, 3), n.pitch))):
        assert pitch == n.pitch and abs(on - n.onset) <= 2e-3
        assert abs(end - n.release) <= 2e-3  # key: the note-offs are the key releases
    want = sorted(with_note_length(notes, pedals, "sounding"), key=lambda n: (round(n.onset, 3), n.pitch))
    assert all(abs(end - n.offset) <= 2e-3 for (_, _, end), n in zip(snd_ends, want))
    longer = sum(s[2] > k[2] + 0.01 for s, k in zip(snd_ends, key_ends))
    assert longer > len(notes) // 2  # most releases fall under the pedal
    # what a synthesizer plays from key releases + CC64 is the sounding file
    back, _ = read_midi_with_pedal(paths["key"])
    assert [round(n.offset, 2) for n in back] == [round(n.offset, 2) for n in sorted(want)]
    # the score is the same whichever convention the MIDI used
    a, b = tmp_path / "a.musicxml", tmp_path / "b.musicxml"
    from pianonotes.export import write_all

    write_all([a, tmp_path / "a.mid"], notes, title="C", bpm=BPM, pedals=pedals, note_length="key")
    write_all([b, tmp_path / "b.mid"], notes, title="C", bpm=BPM, pedals=pedals, note_length="sounding")
    import re

    same = lambda path: re.sub(r'"[A-Z][0-9a-f]{32}"', '"id"', path.read_text())  # noqa: E731 (music21's random ids)
    assert same(a) == same(b)
    with pytest.raises(PianonotesError, match="key or sounding"):
        write_notes(tmp_path / "x.mid", notes, title="C", note_length="sustain")


@pytest.mark.parametrize("writer", ["csv", "json"])
def test_events_say_their_note_length(tmp_path, writer):
    import csv
    import json

    from pianonotes.notes import with_note_length

    notes, pedals = _pedalled()
    got = {}
    for mode in ("key", "sounding"):
        path = tmp_path / f"{mode}.{writer}"
        write_notes(path, notes, title="C", pedals=pedals, note_length=mode)
        text = path.read_text()
        if writer == "csv":
            rows = list(csv.DictReader(text.splitlines()))
            assert text.splitlines()[0] == "onset,offset,pitch,name,velocity,confidence,note_length"
            assert {r["note_length"] for r in rows} == {mode}
        else:
            assert json.loads(text)["note_length"] == mode
        got[mode] = read_events(path)
        want = sorted(with_note_length(notes, pedals, mode))
        assert [(n.pitch, round(n.offset, 4)) for n in got[mode]] == [(n.pitch, round(n.offset, 4)) for n in want]
    assert [n.onset for n in got["key"]] == [n.onset for n in got["sounding"]]
    assert sum(s.offset > k.offset for s, k in zip(got["sounding"], got["key"])) > len(notes) // 2
