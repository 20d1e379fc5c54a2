"""Frame-rise onsets (DecodeOptions.rise_onset) on hand-made activations: a key that starts sounding
under an unsure onset head becomes a note, a held or re-struck key does not, streaming equals offline,
the options are checked and read from a checkpoint, and ship calibrates them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pianonotes import constants
from pianonotes.decode import DecodeOptions, StreamingDecoder, decode
from pianonotes.errors import PianonotesError

from conftest import ActivationsTranscriber, CalibrationRecording, smooth_random_probs, stream_in_chunks

FPS = 50.0
RISE = DecodeOptions(onset_threshold=0.6, frame_threshold=0.3, rise_onset=0.1)
K = 60 - constants.MIN_PITCH


def _acts(T=120):
    z = np.zeros((T, constants.N_KEYS), np.float32)
    return z.copy(), z.copy(), z.copy()


def test_a_key_rising_under_an_unsure_onset_is_a_note():
    frame, onset, vel = _acts()
    onset[20, K] = 0.35  # below the onset threshold
    frame[21:60, K] = 0.8  # the key sounds from the next frame on
    vel[20, K] = 0.4
    assert decode(frame, onset, vel, fps=FPS) == []  # without frame-rise onsets: missed
    (note,) = decode(frame, onset, vel, fps=FPS, options=RISE)
    assert note.onset == pytest.approx(20 / FPS) and note.offset == pytest.approx(60 / FPS)
    assert note.velocity == round(0.4 * 127)
    assert note.confidence == pytest.approx(0.35)  # its own onset probability, not the boost that started it


@pytest.mark.parametrize("case", ["onset too weak", "frame does not rise enough", "already sounding",
                                  "frame rises too late", "onset falling"])
def test_what_is_not_a_frame_rise_onset(case):
    frame, onset, vel = _acts()
    onset[20, K] = 0.35
    frame[21:60, K] = 0.8
    if case == "onset too weak":
        onset[20, K] = 0.05
    elif case == "frame does not rise enough":
        frame[21:60, K] = 0.5
    elif case == "already sounding":  # a held key (frame high before) with an onset bump: no new note
        frame[10:21, K] = 0.5
        onset[10, K] = 0.9  # its own onset
    elif case == "frame rises too late":  # more than rise_frames (3) after
        frame[21:60, K] = 0.0
        frame[24:60, K] = 0.8
    elif case == "onset falling":  # the frame before had a higher onset: only the rising edge counts
        onset[19, K] = 0.5
        onset[20, K] = 0.35
        frame[20:60, K] = 0.8
    notes = decode(frame, onset, vel, fps=FPS, options=RISE)
    expected = {"already sounding": 1, "onset falling": 1}.get(case, 0)
    if case == "onset falling":  # frame 19 itself rises (frame below 0.2 before it, 0.8 after): one note, there
        assert [round(n.onset * FPS) for n in notes] == [19]
    elif case == "already sounding":
        assert [round(n.onset * FPS) for n in notes] == [10]
    assert len(notes) == expected


def test_consecutive_rising_frames_make_one_note():
    frame, onset, vel = _acts()
    onset[20:23, K] = [0.2, 0.3, 0.4]
    frame[22:60, K] = 0.9
    notes = decode(frame, onset, vel, fps=FPS, options=RISE)
    assert len(notes) == 1 and notes[0].onset == pytest.approx(20 / FPS)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 50])
def test_streaming_equals_offline_with_frame_rise_onsets(chunk):
    rng = np.random.default_rng(chunk)
    T = 700
    probs = smooth_random_probs(rng, T)
    offline = decode(probs["frame"], probs["onset"], probs["velocity"], fps=FPS, options=RISE, key=probs["key"])
    assert len(offline) > len(decode(probs["frame"], probs["onset"], probs["velocity"], fps=FPS,
                                     options=dataclasses.replace(RISE, rise_onset=0.0), key=probs["key"]))
    dec = StreamingDecoder(FPS, RISE)
    assert stream_in_chunks(dec, probs, chunk) == offline
    dec.reset()  # a reset forgets the held frames too
    assert stream_in_chunks(dec, probs, 13) == offline


def test_the_decoder_waits_rise_frames_and_says_so_in_active():
    frame, onset, vel = _acts(40)
    onset[10, K], frame[10:30, K] = 0.9, 0.9  # a plain onset
    dec = StreamingDecoder(FPS, RISE)
    dec.push({"frame": frame[:11], "onset": onset[:11], "velocity": vel[:11]})
    assert dec.active() == []  # frame 10 waits for its 3 frames of look-ahead
    dec.push({"frame": frame[11:14], "onset": onset[11:14], "velocity": vel[11:14]})
    assert [p for p, *_ in dec.active()] == [60]
    plain = StreamingDecoder(FPS, dataclasses.replace(RISE, rise_onset=0.0))
    plain.push({"frame": frame[:11], "onset": onset[:11], "velocity": vel[:11]})
    assert [p for p, *_ in plain.active()] == [60]  # off: no wait


@pytest.mark.parametrize("kw, needle", [({"rise_onset": 1.0}, "rise onset"), ({"rise_onset": float("nan")}, "rise onset"),
                                        ({"rise_before": 0.0}, "rise before"), ({"rise_frame": 1.5}, "rise frame"),
                                        ({"rise_frames": 0}, "rise frames"), ({"rise_frames": 2.5}, "rise frames")])
def test_bad_rise_options_are_one_clear_error(kw, needle):
    with pytest.raises(PianonotesError, match=needle):
        DecodeOptions(**kw)


def test_a_checkpoints_rise_settings_are_read_and_old_ones_have_none():
    old = DecodeOptions.for_model({"onset_threshold": 0.6, "frame_threshold": 0.3})
    assert old.rise_onset == 0.0
    new = DecodeOptions.for_model({"onset_threshold": 0.6, "rise_onset": 0.1, "rise_before": 0.25, "rise_frame": 0.7,
                                   "rise_frames": 4})
    assert (new.rise_onset, new.rise_before, new.rise_frame, new.rise_frames) == (0.1, 0.25, 0.7, 4)
    with pytest.raises(PianonotesError, match="rise_onset"):
        DecodeOptions.for_model({"rise_onset": "lots"})


def test_ship_turns_frame_rise_onsets_on_only_where_they_pay():
    from devtools import ship
    from pianonotes.notes import Note

    def make(unsure: bool, idx: int):
        frame, onset, vel = _acts(400)
        notes = []
        for i, t in enumerate(range(20, 380, 40)):
            k = 30 + i
            onset[t, k] = 0.15 if (unsure and i % 2) else 0.9  # below every onset threshold tried
            frame[t + 1:t + 30, k] = 0.9
            vel[t, k] = 0.5
            notes.append(Note(t / FPS, (t + 30) / FPS, k + constants.MIN_PITCH, 64))
        rec = CalibrationRecording(notes, 400, idx)
        return rec, {"frame": frame, "onset": onset, "velocity": vel}

    for unsure, want_on in ((True, True), (False, False)):
        rec, acts = make(unsure, 0)
        dec, _ = ship.calibrate(ActivationsTranscriber({0: acts}), [rec], FPS)
        assert (dec["rise_onset"] > 0) is want_on, dec


def test_listen_low_latency_turns_frame_rise_onsets_off_and_the_take_records_every_threshold(tmp_path):
    """The shipped model decodes with frame-rise onsets; `listen --low-latency` without them (nor the
    harmonic-ghost check, which waits for the same look-ahead), and the
    take's journal keeps the whole decoding (so `recover` decodes as the take did)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from pianonotes.decode import DecodeOptions
    from pianonotes.notes import read_midi
    from pianonotes.transcribe import Transcriber

    shipped = Transcriber.from_checkpoint(None).options
    if shipped.rise_onset == 0:
        pytest.skip("the shipped model decodes without frame-rise onsets")
    example = Path(__file__).resolve().parents[1] / "pianonotes" / "examples" / "twohands.flac"
    got = {}
    for name, extra in (("default", []), ("low", ["--low-latency"])):
        cache = tmp_path / f"cache-{name}"
        env = dict(os.environ, PIANONOTES_CACHE=str(cache))
        out = tmp_path / f"{name}.mid"
        proc = subprocess.run([sys.executable, "-m", "pianonotes", "listen", "--input", str(example), "--fast",
                               "--plain", "-o", str(out), *extra], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        (meta_file,) = cache.rglob("take.json")
        decode_meta = json.loads(meta_file.read_text())["decode"]
        assert DecodeOptions.for_model(decode_meta) == (shipped if name == "default" else
                                                        dataclasses.replace(shipped, rise_onset=0.0, ghost_onset=0.0))
        got[name] = {(n.pitch, round(n.onset, 2)) for n in read_midi(out)}
    assert got["default"] != got["low"]  # (frame-rise onsets add notes, the ghost check drops some)
