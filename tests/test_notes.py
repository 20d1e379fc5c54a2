import mido
import pytest

from pianonotes.errors import PianonotesError
from pianonotes.notes import (Note, PedalEvent, apply_sustain, midi_bytes, pitch_name, read_midi, read_midi_with_pedal,
                              score_releases)


def _write(tmp_path, msgs, tpb=480):
    mid = mido.MidiFile(ticks_per_beat=tpb)
    tr = mido.MidiTrack()
    tr.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))  # 120 bpm: 960 ticks/s
    for m in msgs:
        tr.append(m)
    mid.tracks.append(tr)
    path = tmp_path / "x.mid"
    mid.save(path)
    return path


def test_pitch_names():
    assert pitch_name(60) == "C4" and pitch_name(21) == "A0" and pitch_name(108) == "C8" and pitch_name(61) == "C#4"


def test_note_validation():
    with pytest.raises(PianonotesError):
        Note(0.0, 1.0, 20)
    with pytest.raises(PianonotesError):
        Note(1.0, 1.0, 60)
    with pytest.raises(PianonotesError):
        Note(0.0, 1.0, 60, velocity=0)


def test_sustain_pedal_extends_offset_and_keeps_release(tmp_path):
    # C4 pressed 0-0.5 s, pedal down 0.25-2.0 s; E4 0.5-1.0 without pedal release inside; G4 after pedal
    path = _write(tmp_path, [
        mido.Message("note_on", note=60, velocity=90, time=0),
        mido.Message("control_change", control=64, value=127, time=240),  # 0.25 s
        mido.Message("note_off", note=60, time=240),  # 0.5 s
        mido.Message("control_change", control=64, value=0, time=1440),  # 2.0 s
        mido.Message("note_on", note=67, velocity=50, time=960),  # 3.0 s
        mido.Message("note_off", note=67, time=480),  # 3.5 s
    ])
    notes = read_midi(path)
    c4 = [n for n in notes if n.pitch == 60][0]
    assert c4.onset == pytest.approx(0.0) and c4.offset == pytest.approx(2.0) and c4.release == pytest.approx(0.5)
    g4 = [n for n in notes if n.pitch == 67][0]
    assert (g4.onset, g4.offset, g4.velocity) == (pytest.approx(3.0), pytest.approx(3.5), 50)
    raw = read_midi(path, sustain=False)
    assert [n for n in raw if n.pitch == 60][0].offset == pytest.approx(0.5)


def test_restrike_under_pedal_cuts_previous_note():
    notes = apply_sustain([(0.0, 0.2, 60, 80), (1.0, 1.2, 60, 80)], [PedalEvent(0.1, 3.0)])
    assert [(n.onset, n.offset) for n in notes] == [(0.0, 1.0), (1.0, 3.0)]


def test_midi_round_trip_with_pedal(tmp_path):
    notes = [Note(0.1, 0.6, 21, 30), Note(0.5, 1.25, 108, 127), Note(1.0, 2.0, 64, 64)]
    path = tmp_path / "out.mid"
    path.write_bytes(midi_bytes(notes))
    back = read_midi(path)
    assert [(n.pitch, n.velocity) for n in back] == [(21, 30), (108, 127), (64, 64)]
    for a, b in zip(notes, back):
        assert abs(a.onset - b.onset) < 2e-3 and abs(a.offset - b.offset) < 2e-3
    # written as key releases + pedal, the sounding offsets come back
    keys = [Note(0.0, 0.3, 60, 80, key_offset=0.3)]
    path.write_bytes(midi_bytes(keys, pedals=[PedalEvent(0.2, 1.5)], use_key_offsets=True))
    n, pedals = read_midi_with_pedal(path)
    assert n[0].offset == pytest.approx(1.5, abs=2e-3) and n[0].release == pytest.approx(0.3, abs=2e-3)
    assert len(pedals) == 1


def test_unreadable_midi(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_text("not a midi file")
    with pytest.raises(PianonotesError, match="cannot read MIDI"):
        read_midi(bad)
    with pytest.raises(PianonotesError, match="not found"):
        read_midi(tmp_path / "missing.mid")


# ------------------------------------------------------------------------------ --note-length key|sounding
def _pedalled_notes():
    """Hand-made transcribed notes: onset, frame-head offset, pitch, key release."""
    return [
        Note(0.0, 2.0, 60, 70, key_offset=0.5, confidence=0.9),  # released under the pedal [0.4, 1.5)
        Note(0.2, 0.3, 67, 80, key_offset=0.3),  # released before the pedal: never extended
        Note(0.6, 0.8, 72, 90, key_offset=0.7),  # released under the pedal, struck again at 1.1 ...
        Note(1.1, 1.4, 72, 91, key_offset=1.3),  # ... which cuts it; this one rings to the pedal's end
        Note(1.2, 1.5, 48, 60, key_offset=1.5),  # released as the pedal lifts: not extended
        Note(2.0, 2.2, 50, 50),  # no key release (a v1 model): the offset is the release
    ]


PEDALS = [PedalEvent(0.4, 1.5), PedalEvent(2.1, 3.0)]


def test_note_length_key_and_sounding_ends():
    from pianonotes.notes import with_note_length

    notes = _pedalled_notes()
    key = with_note_length(notes, PEDALS, "key")
    assert [n.offset for n in key] == [0.5, 0.3, 0.7, 1.3, 1.5, 2.2]
    assert all(n.key_offset is None for n in key)
    sounding = with_note_length(notes, PEDALS, "sounding")
    assert [n.offset for n in sounding] == [1.5, 0.3, 1.1, 1.5, 1.5, 3.0]
    assert [n.release for n in sounding] == [0.5, 0.3, 0.7, 1.3, 1.5, 2.2]  # the key releases are kept
    # one for one, in order, everything but the end kept
    for a, b, c in zip(notes, key, sounding):
        assert (a.onset, a.pitch, a.velocity, a.confidence) == (b.onset, b.pitch, b.velocity, b.confidence) \
            == (c.onset, c.pitch, c.velocity, c.confidence)
    # no pedal: both conventions are the key releases; pedals=None: the notes' own (sounding) offsets
    assert [n.offset for n in with_note_length(notes, [], "sounding")] == [n.offset for n in key]
    assert with_note_length(notes, None, "sounding") == notes
    # notes without key releases (v1) and no pedal: key and sounding are the same
    v1 = [Note(n.onset, n.offset, n.pitch, n.velocity) for n in notes]
    assert with_note_length(v1, [], "key") == with_note_length(v1, [], "sounding") == v1
    with pytest.raises(PianonotesError, match="key or sounding"):
        with_note_length(notes, PEDALS, "pedal")


def test_score_releases_take_the_sounding_end_where_the_pedal_is_up():
    notes = [Note(0.0, 1.9, 60, 80, key_offset=0.5),  # pedal up at the key release: the sounding end
             Note(0.5, 1.45, 64, 80, key_offset=0.6),  # key up under the pedal: its release stands
             Note(2.0, 2.4, 67, 80, key_offset=2.45),  # key head later than the sound: kept
             Note(3.0, 3.5, 72, 80),  # no key head (v1): kept
             Note(4.0, 4.4, 74, 80, key_offset=4.3)]  # the heads a few frames apart: the key head's
    pedals = [PedalEvent(0.55, 1.5)]
    got = score_releases(notes, pedals)
    assert [n.release for n in got] == [1.9, 0.6, 2.45, 3.5, 4.3]
    assert [(n.onset, n.offset, n.pitch) for n in got] == [(n.onset, n.offset, n.pitch) for n in notes]
    assert [n.release for n in score_releases(notes, [])] == [1.9, 1.45, 2.45, 3.5, 4.3]  # no pedal at all
    assert score_releases(notes, None) == notes  # notes from a MIDI file: nothing to compare with
    # overlapping or unsorted intervals are one pedal press
    assert score_releases(notes, [PedalEvent(0.9, 1.5), PedalEvent(0.55, 1.0)]) == got


def test_sounding_ends_are_what_a_synthesizer_plays_from_key_releases_and_cc64(tmp_path):
    """Key releases + CC64 read back with the pedal applied give the 'sounding' ends."""
    from pianonotes.notes import with_note_length

    notes = _pedalled_notes()
    path = tmp_path / "k.mid"
    path.write_bytes(midi_bytes(notes, pedals=PEDALS, use_key_offsets=True))
    back, pedals = read_midi_with_pedal(path)
    assert [(round(p.start, 3), round(p.end, 3)) for p in pedals] == [(0.4, 1.5), (2.1, 3.0)]
    want = sorted(with_note_length(notes, PEDALS, "sounding"))
    assert [(n.pitch, round(n.onset, 3), round(n.offset, 3), round(n.release, 3)) for n in back] == \
        [(n.pitch, round(n.onset, 3), round(n.offset, 3), round(n.release, 3)) for n in want]
