"""Online acoustics for training: seeded (same seed, same batch; a resumed run sees the same next batch),
exact without augmentation, and the labels follow a detune."""

from __future__ import annotations

import numpy as np
import pytest

from pianonotes import constants
from pianonotes.features.logspec import LogSpecFrontEnd
from pianonotes.datasets.recordings import Recording, key_and_pedal_targets, targets_from_notes
from pianonotes.training.batches import WindowSampler, audio_batch, batch_arrays, window_targets
from pianonotes.notes import Note, PedalEvent
from pianonotes.datasets.synth.acoustics import NO_ONLINE_AUGMENT, OnlineAugment, augment_window, build_room_bank, detuned, load_room_bank

FE = LogSpecFrontEnd()
SR = constants.SAMPLE_RATE


def _recording(seconds=12.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    audio = np.zeros_like(t)
    notes = []
    for i, on in enumerate(np.arange(0.5, seconds - 1.5, 0.4)):
        pitch = int(rng.integers(40, 90))
        f = 440 * 2 ** ((pitch - 69) / 12)
        seg = (t >= on) & (t < on + 0.8)
        audio[seg] += 0.2 * np.sin(2 * np.pi * f * (t[seg] - on)) * np.exp(-(t[seg] - on) * 3)
        notes.append(Note(float(on), float(on + 0.8), pitch, 60 + i % 40, key_offset=float(on + 0.3)))
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    n = FE.n_frames(len(pcm))
    frame, onset, vel = targets_from_notes(notes, n, FE.fps)
    pedals = [PedalEvent(2.0, 4.0)]
    key, ped = key_and_pedal_targets(notes, pedals, n, FE.fps)
    feats = FE(pcm.astype(np.float32) / 32768).astype(np.float16)
    with_audio = Recording("r", None, frame, onset, vel, notes, key, ped, pedals, pcm, True)
    with_feats = Recording("r", feats, frame, onset, vel, notes, key, ped, pedals, None, True)
    return with_audio, with_feats


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    path = build_room_bank(2, seed=1, path=tmp_path_factory.mktemp("rooms") / "rooms.npz")
    return load_room_bank(path)


POS = np.array([[0, 0], [0, 137], [0, 301]])


def test_without_augmentation_windows_equal_the_cached_features():
    ra, rf = _recording()
    a = audio_batch([ra], POS, 150, 17, 3, FE, (0, 0, 0), NO_ONLINE_AUGMENT, None)
    b = batch_arrays([rf], POS, 150, 17, 3)
    assert np.abs(a["x"] - b["x"]).max() < 0.02  # float16 cache and int16 audio
    for k in ("frame", "onset", "velocity", "key", "pedal"):
        assert np.array_equal(a[k], b[k]), k


def test_online_augmentation_is_seeded(rooms):
    ra, _ = _recording()
    aug = OnlineAugment()
    a = audio_batch([ra], POS, 150, 17, 3, FE, (7, 2, 5), aug, rooms)
    b = audio_batch([ra], POS, 150, 17, 3, FE, (7, 2, 5), aug, rooms)
    c = audio_batch([ra], POS, 150, 17, 3, FE, (7, 2, 6), aug, rooms)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.allclose(a["x"], c["x"])


def test_resumed_training_sees_the_same_next_batch(rooms):
    from pianonotes.training.train import _EpochBatches

    ra, _ = _recording()
    sampler = WindowSampler([ra], 150, seed=3)
    order = sampler.epoch(1)

    def batches():  # a fresh object, as after a restart
        return _EpochBatches([ra], order, 2, 0, 1, 150, 17, 3, seed=(3, 1), frontend=FE, augment=OnlineAugment(),
                             rooms=rooms)

    first, again = batches()[1], batches()[1]
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(batches()[0]["x"], first["x"])


def test_detune_keeps_pitches_and_moves_label_times():
    ra, _ = _recording()
    ratio = 2 ** (30 / 1200)
    t0 = 2.0
    tg = window_targets(ra, t0, ratio, 200, FE.fps)
    plain = window_targets(ra, t0, 1.0, 200, FE.fps)
    assert tg["onset"].sum() == plain["onset"].sum() > 0  # no onset lost or doubled
    assert np.array_equal(np.nonzero(tg["onset"])[1], np.nonzero(plain["onset"])[1])  # same keys
    late = np.nonzero(plain["onset"])[0][-1]
    assert np.nonzero(tg["onset"])[0][-1] == round(late / ratio)  # times scale with the playback rate
    wav = detuned(ra.audio, 2.0 * SR, 8000, ratio)
    assert len(wav) == 8000 and np.abs(wav).max() > 0


def test_augment_window_changes_sound_not_length(rooms):
    x = np.sin(np.arange(3 * SR) / SR * 2 * np.pi * 440).astype(np.float32) * 0.3
    y, info = augment_window(x, np.random.default_rng(0), OnlineAugment(room_p=1.0, noise_p=1.0), rooms)
    assert y.shape == x.shape and y.dtype == np.float32 and np.abs(y).max() <= 1.0
    assert "room" in info and "noise" in info
    z, _ = augment_window(x, np.random.default_rng(0), NO_ONLINE_AUGMENT, rooms)
    assert np.allclose(z, x)


def test_room_bank_rejects_nonsense(tmp_path):
    from pianonotes.errors import PianonotesError

    with pytest.raises(PianonotesError, match="between 1 and 5000"):
        build_room_bank(0, path=tmp_path / "r.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a bank")
    with pytest.raises(PianonotesError, match="damaged"):
        load_room_bank(tmp_path / "bad.npz")


def test_string_resonance_rings_at_the_strings_partials():
    from pianonotes.datasets.synth.acoustics import string_resonance_ir

    h = string_resonance_ir(np.random.default_rng(0), SR, seconds=1.0)
    assert h.shape == (SR,) and h.dtype == np.float32 and np.abs(h).max() == pytest.approx(1.0)
    spec = np.abs(np.fft.rfft(h.astype(np.float64)))
    hz = np.fft.rfftfreq(len(h), 1 / SR)
    at = lambda f: spec[np.abs(hz - f) < 2].max()  # noqa: E731
    between = lambda f: spec[np.abs(hz - f) < 4].min()  # noqa: E731 - a quarter tone off every string
    for key in (45, 57, 69, 81):  # A2..A5: a peak at the fundamental, none a quarter tone above
        f = 440 * 2 ** ((key - 69) / 12)
        assert at(f) > 5 * between(f * 2 ** (0.5 / 12)), key
    assert spec[hz > 7600].max() < 0.01 * spec.max()  # partials stop at 7.5 kHz


def test_string_resonance_adds_a_tail_in_tune_with_the_window():
    t = np.arange(4 * SR) / SR
    tone = np.where(t < 1.0, np.sin(2 * np.pi * 220.0 * t) * np.exp(-3 * t), 0.0).astype(np.float32) * 0.5
    dry = OnlineAugment(room_p=0, eq_p=0, compress_p=0, noise_p=0, gain_db=(0, 0), clip_p=0, lossy_p=0, resample_p=0)
    wet = OnlineAugment(**{**dry.to_dict(), "resonance_p": 1.0, "resonance_db": (-12.0, -12.0)})
    y0, info0 = augment_window(tone, np.random.default_rng(0), dry, None)
    y1, info1 = augment_window(tone, np.random.default_rng(0), wet, None)
    assert "resonance" not in info0 and info1["resonance"][1] == -12.0
    assert np.allclose(y0, tone) and y1.shape == tone.shape
    after = t >= 1.2  # the tone has stopped; the strings ring on
    assert np.abs(y0[after]).max() == 0 and np.sqrt(np.mean(y1[after] ** 2)) > 1e-3
    again, _ = augment_window(tone, np.random.default_rng(0), wet, None)
    assert np.array_equal(again, y1)  # seeded
    sharp, _ = augment_window(tone, np.random.default_rng(0), wet, None, detune=2 ** (40 / 1200))
    spec = lambda y: np.abs(np.fft.rfft(y[after].astype(np.float64)))  # noqa: E731
    hz = np.fft.rfftfreq(int(after.sum()), 1 / SR)
    band = lambda y, f: spec(y)[np.abs(hz - f) < 1.0].max()  # noqa: E731
    a3_sharp = 220 * 2 ** (40 / 1200)  # the strings ring where they are tuned
    assert band(y1, 220.0) > 4 * band(sharp, 220.0)  # in tune with the tone, the strings ring far longer
    assert band(sharp, a3_sharp) / band(sharp, 220.0) > 5 * band(y1, a3_sharp) / band(y1, 220.0)
