"""AudioNet v2 decoding on hand-made activations: key releases inside sounding notes, pedal hysteresis,
streaming equal to offline, CC64 in the MIDI written and read back."""

from __future__ import annotations

import numpy as np
import pytest

from pianonotes import constants
from pianonotes.decode import DecodeOptions, StreamingDecoder, decode, decode_pedal
from pianonotes.errors import PianonotesError
from pianonotes.notes import Note

FPS = 50.0


def _acts(T=200):
    z = np.zeros((T, constants.N_KEYS), np.float32)
    return z.copy(), z.copy(), z.copy(), z.copy()


def test_key_release_inside_a_pedalled_note():
    frame, onset, vel, key = _acts()
    k = 60 - constants.MIN_PITCH
    onset[10, k] = 0.9
    frame[10:120, k] = 0.9  # sounds until frame 120 (the pedal holds it)
    key[10:40, k] = 0.9  # the key came up at frame 40
    vel[10, k] = 0.5
    (note,) = decode(frame, onset, vel, fps=FPS, key=key)
    assert note.onset == pytest.approx(0.2) and note.offset == pytest.approx(2.4)
    assert note.key_offset == pytest.approx(0.8)
    # a key that never comes up ends with the sound; no key head: no key release at all
    key[10:130, k] = 0.9
    assert decode(frame, onset, vel, fps=FPS, key=key)[0].key_offset == pytest.approx(2.4)
    assert decode(frame, onset, vel, fps=FPS)[0].key_offset is None


def test_key_release_streaming_equals_offline():
    rng = np.random.default_rng(3)
    T = 600
    frame, onset, vel, key = _acts(T)
    for _ in range(40):
        k, a = int(rng.integers(constants.N_KEYS)), int(rng.integers(0, T - 60))
        b = a + int(rng.integers(5, 60))
        r = int(rng.integers(a + 1, b + 1))
        onset[a, k], frame[a:b, k], key[a:r, k], vel[a, k] = 0.9, 0.8, 0.8, 0.6
    offline = decode(frame, onset, vel, fps=FPS, key=key)
    assert sum(n.key_offset < n.offset - 1e-9 for n in offline) > 10
    for chunk in (1, 7, 64):
        dec = StreamingDecoder(FPS)
        got = []
        for s in range(0, T, chunk):
            got += dec.push(frame[s:s + chunk], onset[s:s + chunk], vel[s:s + chunk], key[s:s + chunk])
        got = sorted(got + dec.flush())
        assert got == offline, chunk
        assert len(dec._key_up) <= T  # the history is trimmed to the sounding notes


def test_pedal_hysteresis_and_minimum_length():
    p = np.zeros(300, np.float32)
    p[20:100] = 0.8
    p[50:53] = 0.45  # a dip between the thresholds: still down
    p[150:153] = 0.9  # 60 ms: shorter than the minimum
    p[200:300] = 0.7  # down until the end
    ev = decode_pedal(p, fps=FPS)
    assert [(round(e.start, 2), round(e.end, 2)) for e in ev] == [(0.4, 2.0), (4.0, 6.0)]
    ev = decode_pedal(p[:, None], fps=FPS, options=DecodeOptions(min_pedal_seconds=0.05), time_offset=1.0)
    assert len(ev) == 3 and ev[0].start == pytest.approx(1.4)
    with pytest.raises(PianonotesError, match="must not exceed"):
        DecodeOptions(pedal_on=0.3, pedal_off=0.5)


def test_cc64_from_key_releases_round_trips_through_midi(tmp_path):
    from pianonotes.export.midi import pedal_from_releases
    from pianonotes.notes import read_midi_with_pedal, write_midi

    frame, onset, vel, key = _acts()
    for pitch, a in ((60, 10), (64, 12)):
        k = pitch - constants.MIN_PITCH
        onset[a, k], frame[a:120, k], key[a:40, k], vel[a, k] = 0.9, 0.9, 0.9, 0.5
    notes = decode(frame, onset, vel, fps=FPS, key=key)
    path = tmp_path / "p.mid"
    write_midi(path, notes, pedals=pedal_from_releases(notes), use_key_offsets=True)
    back, pedals = read_midi_with_pedal(path)
    assert pedals and pedals[0].start == pytest.approx(0.8, abs=0.02) and pedals[-1].end == pytest.approx(2.4, abs=0.02)
    assert [round(n.offset, 2) for n in back] == [2.4, 2.4]  # sounding ends restored by CC64
    assert [round(n.release, 2) for n in back] == [0.8, 0.8]


def test_saved_activations_keep_the_v2_heads(tmp_path):
    from pianonotes.decode import Activations

    frame, onset, vel, key = _acts()
    k = 64 - constants.MIN_PITCH
    onset[5, k], frame[5:100, k], key[5:30, k], vel[5, k] = 0.9, 0.9, 0.9, 0.5
    pedal = np.zeros((200, 1), np.float32)
    pedal[20:100] = 0.9
    acts = Activations(frame, onset, vel, FPS, "x", {}, {"key": key, "pedal": pedal})
    acts.save(tmp_path / "a.npz")
    back = Activations.load(tmp_path / "a.npz")
    assert set(back.extra) == {"key", "pedal"}
    (note,) = back.decode()
    assert note.key_offset == pytest.approx(0.6) and note.offset == pytest.approx(2.0)
    np.savez(tmp_path / "b.npz", frame=frame, onset=onset, fps=np.array(FPS),
             extra_key=np.zeros((7, constants.N_KEYS), np.float16))  # a key head of the wrong length is refused
    with pytest.raises(PianonotesError, match="extra_key"):
        Activations.load(tmp_path / "b.npz")


def _v2_acts(T=700, seed=5):
    """Random notes with key releases inside them, and a pedal going up and down."""
    rng = np.random.default_rng(seed)
    frame, onset, vel, key = _acts(T)
    for _ in range(50):
        k, a = int(rng.integers(30, 60)), int(rng.integers(0, T - 80))
        b = a + int(rng.integers(5, 80))
        r = int(rng.integers(a + 1, b + 1))
        onset[a, k], frame[a:b, k], key[a:r, k], vel[a, k] = 0.9, 0.8, 0.8, 0.6
    pedal = np.zeros((T, 1), np.float32)
    s = 0
    while s < T:
        n = int(rng.integers(3, 60))
        pedal[s:s + n] = rng.choice([0.1, 0.45, 0.9], p=[0.5, 0.15, 0.35])  # below, between, above
        s += n
    return frame, onset, vel, key, pedal


def test_pedal_and_note_lengths_streaming_equal_offline():
    from pianonotes.notes import with_note_length

    frame, onset, vel, key, pedal = _v2_acts()
    T = len(frame)
    notes = decode(frame, onset, vel, fps=FPS, key=key)
    pedals = decode_pedal(pedal, fps=FPS)
    assert len(pedals) >= 4
    sounding = with_note_length(notes, pedals, "sounding")
    assert sum(s.offset > k.offset + 1e-9 for s, k in zip(sounding, with_note_length(notes, pedals, "key"))) > 5
    for chunk in (1, 5, 33, T):
        dec = StreamingDecoder(FPS)
        got = []
        for s in range(0, T, chunk):
            got += dec.push(frame[s:s + chunk], onset[s:s + chunk], vel[s:s + chunk], key[s:s + chunk],
                            pedal[s:s + chunk])
        got = sorted(got + dec.flush())
        assert got == notes and dec.pedals == pedals, chunk
        assert not dec.pedal_down
        for mode in ("key", "sounding"):
            assert with_note_length(got, dec.pedals, mode) == with_note_length(notes, pedals, mode)


def test_saved_activations_decode_the_pedal(tmp_path):
    from pianonotes.decode import Activations

    frame, onset, vel, key, pedal = _v2_acts(T=300, seed=9)
    acts = Activations(frame, onset, vel, FPS, "x", {}, {"key": key, "pedal": pedal})
    acts.save(tmp_path / "a.npz")
    back = Activations.load(tmp_path / "a.npz")
    # float16 storage: the probabilities here are exact in float16, so the intervals are too
    assert back.decode_pedal() == decode_pedal(pedal, fps=FPS) and back.decode_pedal()
    assert Activations(frame, onset, vel, FPS).decode_pedal() == []  # no pedal head (v1): no pedal


def test_ship_calibrates_the_key_threshold_on_key_releases():
    """Key-down probabilities that fall to 0.65 where each key goes up and to 0.2 half a second later:
    only a key threshold above 0.65 ends the notes at their releases, and calibration finds it."""
    pytest.importorskip("mir_eval")
    from devtools.ship import calibrate
    from pianonotes.datasets.recordings import Recording

    fps, n = 50.0, 420
    onset, frame, key = (np.zeros((n, 88), np.float32) for _ in range(3))
    notes = []
    for i in range(6):
        a, k = 20 + 60 * i, 39 + i  # pitch 60 + i
        up, end = a + 15, a + 50  # key released after 0.3 s, sounding (pedal) until 1 s
        onset[a, k], frame[a:end, k] = 0.9, 0.9
        key[a:up, k], key[up:up + 25, k], key[up + 25:end, k] = 0.9, 0.65, 0.2
        notes.append(Note(a / fps, end / fps, 60 + i, 80, key_offset=up / fps))
    probs = {"frame": frame, "onset": onset, "velocity": np.full((n, 88), 0.6, np.float32), "key": key}

    class Fixed:
        def infer_features(self, feats):
            return probs

    zeros = np.zeros((n, 88), np.uint8)
    rec = Recording("hand-made", np.zeros((n, 4), np.float16), zeros, zeros, zeros, notes)
    decode_opts, _ = calibrate(Fixed(), [rec], fps)
    assert decode_opts["key_threshold"] == 0.7
    released = decode(frame, onset, probs["velocity"], fps=fps, key=key,
                      options=DecodeOptions(**decode_opts))
    assert [round(x.key_offset, 2) for x in released] == [round(x.key_offset, 2) for x in notes]


def test_model_card_names_the_warm_start_source_only_when_its_weights_still_match(tmp_path):
    from devtools.ship import warm_source
    from pianonotes.nn import checkpoint as ckpt

    src = ckpt.default_checkpoint().with_suffix(".json")
    cfg = ckpt.read_config(src)
    told = warm_source({"from": str(src), "weights_sha256": cfg["weights_sha256"]})
    assert f"step {cfg['step']}" in told and cfg["weights_sha256"][:12] in told
    other = warm_source({"from": str(src), "weights_sha256": "f" * 64})  # the file now holds other weights
    assert other == "weights sha256 ffffffffffff"
    assert warm_source({"from": str(tmp_path / "gone.json"), "weights_sha256": "a" * 64}) == "weights sha256 aaaaaaaaaaaa"


def test_ship_calibrates_the_shortest_pedal_kept():
    """A pedal head that is sure over the three real presses (2 s each) and also flickers on for 0.2 s
    between them (a note ringing on, heard as the pedal): calibration keeps the shortest-pedal length
    that drops the flickers, and the pedal decoded with it is the labels'."""
    pytest.importorskip("mir_eval")
    from devtools.ship import PEDAL_MIN_SECONDS, calibrate
    from pianonotes.datasets.recordings import Recording
    from pianonotes.notes import PedalEvent

    fps, n = 50.0, 500
    onset, frame = np.zeros((n, 88), np.float32), np.zeros((n, 88), np.float32)
    pedal = np.full((n, 1), 0.05, np.float32)
    labels = []
    for i in range(3):
        a = 20 + 160 * i
        pedal[a:a + 100] = 0.95
        labels.append(PedalEvent(a / fps, (a + 100) / fps))
        pedal[a + 120:a + 130] = 0.95  # a 0.2 s flicker
        onset[a, 39], frame[a:a + 50, 39] = 0.9, 0.9
    notes = [Note((20 + 160 * i) / fps, (70 + 160 * i) / fps, 60, 80) for i in range(3)]
    probs = {"frame": frame, "onset": onset, "velocity": np.full((n, 88), 0.6, np.float32), "pedal": pedal}

    class Fixed:
        def infer_features(self, feats):
            return probs

    zeros = np.zeros((n, 88), np.uint8)
    rec = Recording("hand-made", np.zeros((n, 4), np.float16), zeros, zeros, zeros, notes, pedals=labels,
                    has_pedal_labels=True)
    decode_opts, _ = calibrate(Fixed(), [rec], fps)
    assert 0.2 < decode_opts["min_pedal_seconds"] < 2.0 and decode_opts["min_pedal_seconds"] in PEDAL_MIN_SECONDS
    got = decode_pedal(pedal, fps=fps, options=DecodeOptions(**decode_opts))
    assert [(round(p.start, 2), round(p.end, 2)) for p in got] == [(round(p.start, 2), round(p.end, 2)) for p in labels]
    with_flickers = decode_pedal(pedal, fps=fps, options=DecodeOptions(**{**decode_opts, "min_pedal_seconds": 0.1}))
    assert len(with_flickers) == 6  # the library default keeps them


def test_pedal_hold_of_the_note_ends_experiment():
    """devtools.note_ends: a note decayed below the frame threshold is held while the pedal is down and its
    frame probability stays above the hold threshold, never past the key's next onset or the pedal."""
    from devtools.note_ends import pedal_hold

    fps = 50.0
    frame = np.zeros((100, 88), np.float32)
    frame[:, 40] = 0.1  # a decayed tail on key 40 (pitch 61) all along
    frame[60:, 41] = 0.1  # key 41's tail starts only at frame 60
    down = np.zeros(100, bool)
    down[10:50] = True
    notes = [Note(0.1, 0.4, 61), Note(1.6, 1.8, 61), Note(0.1, 0.4, 62)]
    held = pedal_hold(notes, frame, down, fps, 0.05)
    assert held[0].offset == pytest.approx(1.0)  # held to the pedal's end (frame 50)
    assert held[1] == notes[1]  # pedal up: unchanged
    assert held[2] == notes[2]  # its frame probability is 0 under the pedal: unchanged
    assert pedal_hold(notes, frame, down, fps, 0.2) == notes  # above the tail: nothing held
    cut = pedal_hold([Note(0.1, 0.4, 61), Note(0.6, 0.7, 61)], frame, down, fps, 0.05)
    assert cut[0].offset == pytest.approx(0.6)  # the same key struck again ends it
