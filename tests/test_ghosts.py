"""Harmonic ghosts (DecodeOptions.ghost_onset) on hand-made activations: an unsure onset an octave, a
twelfth or two octaves above a struck key, whose key sounds much weaker than that one, starts no note; a
real octave, a sure onset, a weaker or distant lower onset and other intervals keep theirs; streaming
equals offline; the options are checked and read from a checkpoint; ship calibrates them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pianonotes import constants
from pianonotes.decode import DecodeOptions, StreamingDecoder, decode
from pianonotes.errors import PianonotesError

from conftest import ActivationsTranscriber, CalibrationRecording, smooth_random_probs, stream_in_chunks

FPS = 50.0
GHOST = DecodeOptions(onset_threshold=0.6, frame_threshold=0.3, ghost_onset=0.8, ghost_ratio=0.7)
PLAIN = dataclasses.replace(GHOST, ghost_onset=0.0)
LOW = 48 - constants.MIN_PITCH  # C3


def _chord(upper: int = 12, *, upper_onset=0.7, upper_frame=0.4, lower_onset=0.95, shift=0, T=100):
    """C3 struck at frame 20 (frame 0.9) and a key ``upper`` semitones above with an onset at 20 + shift."""
    z = np.zeros((T, constants.N_KEYS), np.float32)
    frame, onset, vel = z.copy(), z.copy(), z.copy()
    onset[20, LOW], frame[20:70, LOW], vel[20, LOW] = lower_onset, 0.9, 0.6
    up = LOW + upper
    onset[20 + shift, up], frame[20 + shift:60, up], vel[20 + shift, up] = upper_onset, upper_frame, 0.3
    return frame, onset, vel


def _pitches(notes):
    return sorted(n.pitch for n in notes)


@pytest.mark.parametrize("interval", [12, 19, 24])
def test_an_unsure_weak_onset_above_a_struck_key_is_a_ghost(interval):
    frame, onset, vel = _chord(interval)
    assert _pitches(decode(frame, onset, vel, fps=FPS, options=PLAIN)) == [48, 48 + interval]  # without the rule: both
    assert _pitches(decode(frame, onset, vel, fps=FPS, options=GHOST)) == [48]


@pytest.mark.parametrize("case, kw", [
    ("a real octave: the upper key sounds as strongly", {"upper_frame": 0.9}),
    ("a sure onset", {"upper_onset": 0.85}),
    ("the lower onset is less sure than the upper", {"upper_onset": 0.7, "lower_onset": 0.65}),
    ("the lower key was struck 3 frames before", {"shift": 3}),
    ("a fifth is not a partial of the lower key", {"upper": 7}),
    ("an octave below is not a partial either", {"upper": -12}),
])
def test_what_is_not_a_ghost(case, kw):
    frame, onset, vel = _chord(**kw)
    assert len(decode(frame, onset, vel, fps=FPS, options=GHOST)) == 2, case


def test_a_ghost_onset_on_a_sounding_key_does_not_split_its_note():
    frame, onset, vel = _chord(12)
    up = LOW + 12
    onset[5, up], frame[5:60, up] = 0.95, 0.5  # C4 struck earlier and held; the C3 strike's partial bumps its onset
    plain = decode(frame, onset, vel, fps=FPS, options=PLAIN)
    assert [round(n.onset * FPS) for n in plain if n.pitch == 60] == [5, 20]  # split at the bump
    ghost = decode(frame, onset, vel, fps=FPS, options=GHOST)
    assert [(round(n.onset * FPS), round(n.offset * FPS)) for n in ghost if n.pitch == 60] == [(5, 60)]


def test_a_ghost_run_stays_dropped_for_all_its_frames():
    frame, onset, vel = _chord(12)
    onset[21:26, LOW + 12] = 0.65  # the ghost's onset stays above threshold for 6 frames
    notes = decode(frame, onset, vel, fps=FPS, options=GHOST)
    assert _pitches(notes) == [48]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("rise", [0.0, 0.1])
def test_streaming_equals_offline_with_ghosts(chunk, rise):
    rng = np.random.default_rng(chunk)
    T = 700
    probs = smooth_random_probs(rng, T, onset_gain=2.0)
    opt = dataclasses.replace(GHOST, rise_onset=rise)
    offline = decode(probs["frame"], probs["onset"], probs["velocity"], fps=FPS, options=opt, key=probs["key"])
    without = decode(probs["frame"], probs["onset"], probs["velocity"], fps=FPS,
                     options=dataclasses.replace(opt, ghost_onset=0.0), key=probs["key"])
    assert len(offline) < len(without)  # the rule fires on this material
    dec = StreamingDecoder(FPS, opt)
    assert stream_in_chunks(dec, probs, chunk) == offline
    dec.reset()  # a reset forgets the held frames and the ghost runs
    assert stream_in_chunks(dec, probs, 13) == offline


def test_the_rule_looks_ahead_rise_frames():
    assert GHOST.lookahead_frames == 3 and dataclasses.replace(GHOST, rise_frames=5).lookahead_frames == 5
    assert dataclasses.replace(GHOST, ghost_onset=0.0).lookahead_frames == 0


@pytest.mark.parametrize("kw, needle", [({"ghost_onset": 1.5}, "ghost onset"), ({"ghost_onset": float("nan")}, "ghost onset"),
                                        ({"ghost_onset": -0.1}, "ghost onset"), ({"ghost_ratio": 0.0}, "ghost ratio"),
                                        ({"ghost_ratio": float("nan")}, "ghost ratio"),
                                        ({"ghost_ratio": float("inf")}, "ghost ratio")])
def test_bad_ghost_options_are_one_clear_error(kw, needle):
    with pytest.raises(PianonotesError, match=needle):
        DecodeOptions(**kw)


def test_a_checkpoints_ghost_settings_are_read_and_old_ones_have_none():
    assert DecodeOptions.for_model({"onset_threshold": 0.6}).ghost_onset == 0.0
    new = DecodeOptions.for_model({"onset_threshold": 0.6, "ghost_onset": 0.85, "ghost_ratio": 0.6})
    assert (new.ghost_onset, new.ghost_ratio) == (0.85, 0.6)
    assert DecodeOptions.for_model({"ghost_onset": 0.85}, ghost_onset=0.0).ghost_onset == 0.0  # --low-latency
    with pytest.raises(PianonotesError, match="ghost_ratio"):
        DecodeOptions.for_model({"ghost_ratio": "some"})


def test_ship_turns_the_ghost_rule_on_only_where_it_pays():
    from devtools import ship
    from pianonotes.notes import Note

    def make(ghosts_are_notes: bool):
        T = 440
        z = np.zeros((T, constants.N_KEYS), np.float32)
        frame, onset, vel = z.copy(), z.copy(), z.copy()
        notes = []
        for i, t in enumerate(range(20, 400, 40)):
            k = 20 + i
            onset[t, k], frame[t:t + 30, k], vel[t, k] = 0.95, 1.0, 0.6
            onset[t, k + 12], frame[t:t + 30, k + 12], vel[t, k + 12] = 0.75, 0.66, 0.3  # an unsure, weaker octave
            notes.append(Note(t / FPS, (t + 30) / FPS, k + constants.MIN_PITCH, 80))
            onset[t, k + 40], frame[t:t + 30, k + 40], vel[t, k + 40] = 0.65, 0.62, 0.4  # alone: no onset or
            notes.append(Note(t / FPS, (t + 30) / FPS, k + 40 + constants.MIN_PITCH, 50))  # frame threshold tells them
            if ghosts_are_notes:
                notes.append(Note(t / FPS, (t + 30) / FPS, k + 12 + constants.MIN_PITCH, 40))
        rec = CalibrationRecording(sorted(notes), T)
        return rec, {"frame": frame, "onset": onset, "velocity": vel}

    for real_octaves, want_on in ((False, True), (True, False)):
        rec, acts = make(real_octaves)
        dec, _ = ship.calibrate(ActivationsTranscriber({0: acts}), [rec], FPS)
        assert (dec["ghost_onset"] > 0) is want_on, dec
        if want_on:
            assert dec["ghost_onset"] > 0.75 and dec["ghost_ratio"] >= 0.7
