"""Input spectrum matching (pianonotes.features.match): corrects level and tilt, causally, block by block."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pianonotes.errors import PianonotesError
from pianonotes.features import frontend_from_config
from pianonotes.features.match import MatchSettings, SpectrumMatch, reference_spectrum
from pianonotes.inference import ModelConfig
from pianonotes.transcribe import Transcriber

FE = Transcriber.from_checkpoint(None).frontend
FC = np.asarray(FE.band_centres())
OCT = np.log2(FC / 1000.0)


def _reference():
    rng = np.random.default_rng(0)
    return np.exp(rng.normal(-6.0, 1.0, len(FC)))


def _matcher(ref, **kw):
    return SpectrumMatch(MatchSettings(tuple(ref), **kw), FC, gain=FE.gain, fps=FE.fps)


def _features(mags):
    return np.log1p(FE.gain * mags).astype(np.float32)


def _mags(feats):
    return np.expm1(feats.astype(np.float64)) / FE.gain


def test_level_and_tilt_are_brought_to_the_reference():
    ref = _reference()
    rng = np.random.default_rng(1)
    n = int(60 * FE.fps)  # a minute of frames; per-frame content varies around a darker, quieter spectrum
    colour = 10 ** ((-12.0 - 2.0 * OCT) / 20)  # 12 dB quieter, 2 dB per octave darker
    mags = ref[None, :] * colour[None, :] * np.exp(rng.normal(0, 0.5, (n, len(FC))))
    m = _matcher(ref)
    out = _mags(m.push(_features(mags)))
    shrink = 60 / 65  # a minute against a prior of 5 s
    level = 12.0 - 20 * np.log10(np.exp(0.5 ** 2 / 2))  # the content's mean is exp(sd^2 / 2) louder
    assert m.last_gain_db == pytest.approx(level * shrink, abs=0.3)
    assert m.last_tilt_db_per_octave == pytest.approx(2.0 * shrink, abs=0.1)
    late = np.log(out[-500:].mean(0) / ref) * 20 / np.log(10)  # dB off the reference, last 10 s
    use = (FC >= 60) & (FC <= 6000)
    assert np.abs(np.median(late[use])) < 1.5
    assert np.abs(np.median(np.log(mags[-500:].mean(0) / ref)[use] * 20 / np.log(10))) > 8  # it was far off
    early = _mags(_matcher(ref).push(_features(mags[:5])))
    assert np.allclose(early, mags[:5] * np.exp(0), rtol=0.6)  # the prior keeps the first frames near as they were


def test_a_recording_like_the_reference_is_left_alone():
    ref = _reference()
    mags = np.tile(ref, (300, 1))
    out = _matcher(ref).push(_features(mags))
    assert np.allclose(out, _features(mags), atol=1e-4)


def test_blocks_give_the_whole_array_and_the_past_only_matters():
    ref = _reference()
    rng = np.random.default_rng(2)
    feats = _features(ref[None, :] * np.exp(rng.normal(-1, 1, (700, len(FC)))))
    whole = _matcher(ref).push(feats)
    m = _matcher(ref)
    cuts = [0, 1, 3, 50, 51, 400, 700]
    parts = [m.push(feats[a:b]) for a, b in zip(cuts, cuts[1:])]
    assert np.allclose(np.concatenate(parts), whole, atol=1e-5)
    changed = feats.copy()
    changed[400:] += 2.0  # a louder future does not change the past
    assert np.allclose(_matcher(ref).push(changed)[:400], whole[:400], atol=1e-6)
    m.reset()
    assert np.allclose(m.push(feats), whole, atol=1e-6)


def test_limits_hold_on_silence_and_on_extreme_input():
    ref = _reference()
    m = _matcher(ref, max_gain_db=20.0, max_tilt_db_per_octave=3.0)
    m.push(_features(np.tile(ref * 1e-6, (3000, 1))))  # 120 dB too quiet for a minute
    assert m.last_gain_db == pytest.approx(20.0 * 60 / 65)
    m = _matcher(ref, max_gain_db=20.0, max_tilt_db_per_octave=3.0)
    m.push(_features(np.tile(ref * 10 ** (-10.0 * OCT / 20), (3000, 1))))  # 10 dB per octave darker
    assert m.last_tilt_db_per_octave == pytest.approx(3.0 * 60 / 65)
    assert np.isfinite(_matcher(ref).push(np.zeros((10, len(FC)), np.float32))).all()  # digital silence


def test_malformed_settings_are_one_clear_error():
    with pytest.raises(PianonotesError, match="positive"):
        MatchSettings.from_dict({"reference": [1.0, -1.0]})
    with pytest.raises(PianonotesError, match="malformed"):
        MatchSettings.from_dict({"prior_seconds": 5})
    with pytest.raises(PianonotesError, match="bands"):
        _matcher(_reference()[:10])
    s = MatchSettings(tuple(_reference()), source="test")
    # a checkpoint's malformed block is reported when it loads, not when the first recording starts
    cfg = json.loads(Path(Transcriber.from_checkpoint(None).config.path.with_suffix(".json")).read_text())
    assert isinstance(ModelConfig.from_dict(cfg).input_match, MatchSettings)
    cfg["input_match"] = {"reference": [1.0, 0.0]}
    with pytest.raises(PianonotesError, match="input_match reference"):
        ModelConfig.from_dict(cfg)
    assert MatchSettings.from_dict(json.loads(json.dumps(s.to_dict()))).reference == pytest.approx(s.reference, rel=1e-5)


def test_reference_spectrum_of_windows():
    fe = frontend_from_config(FE.to_dict())
    t = np.arange(16000) / 16000
    tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    ref = reference_spectrum([tone, tone], fe)
    assert ref.shape == (len(FC),) and (ref > 0).all()
    assert abs(FC[int(np.argmax(ref))] - 440) < 30  # the tone's band is the loudest
    with pytest.raises(PianonotesError):
        reference_spectrum([], fe)


def test_the_shipped_checkpoint_matches_and_one_without_still_transcribes(tmp_path):
    tr = Transcriber.from_checkpoint(None)
    assert tr.config.input_match and tr.config.make_matcher(tr.frontend) is not None
    src = tr.config.path.with_suffix("")
    example_audio = Path(__file__).resolve().parents[1] / "pianonotes" / "examples" / "twohands.flac"
    for suffix in (".json", ".safetensors", ".onnx"):
        shutil.copy(src.with_suffix(suffix), tmp_path / ("plain" + suffix))
    cfg = json.loads((tmp_path / "plain.json").read_text())
    del cfg["input_match"]
    (tmp_path / "plain.json").write_text(json.dumps(cfg))
    plain = Transcriber.from_checkpoint(tmp_path / "plain")
    assert plain.config.make_matcher(plain.frontend) is None
    a, b = tr.transcribe_file(example_audio), plain.transcribe_file(example_audio)
    assert len(a.notes) > 20 and len(b.notes) > 20
    # matched features differ from the raw ones, so the activations do
    feats = tr.frontend(np.zeros(16000, np.float32) + np.float32(0.01) * np.sin(np.arange(16000, dtype=np.float32)))
    assert not np.allclose(tr.infer_features(feats)["frame"], plain.infer_features(feats)["frame"])


def test_room_noise_before_playing_gives_no_notes():
    """A live take that starts with seconds of room noise: matching boosts it (the mean so far is quiet)
    but writes no notes, and the playing after it is transcribed."""
    from pianonotes.audio import load_audio

    tr = Transcriber.from_checkpoint(None)
    ex = load_audio(Path(__file__).resolve().parents[1] / "pianonotes" / "examples" / "twohands.flac", 16000)
    rng = np.random.default_rng(0)
    noise = np.cumsum(rng.normal(0, 1, 16000 * 14))
    noise -= np.convolve(noise, np.ones(400) / 400, "same")  # brown-ish room rumble and hiss
    audio = (noise / noise.std() * 10 ** (-50 / 20)).astype(np.float32)
    audio[16000 * 8:] += ex[: len(audio) - 16000 * 8]
    match = tr.config.make_matcher(tr.frontend)
    match.push(tr.frontend(audio[: 16000 * 8]))
    assert match.last_gain_db > 10  # the noise alone asks for a large boost
    notes = tr.transcribe_blocks(audio[i:i + 800] for i in range(0, len(audio), 800)).notes
    assert not [n for n in notes if n.onset < 7.9]
    assert len([n for n in notes if n.onset >= 7.9]) >= 10


def test_it_is_a_stream():
    from pianonotes.streaming import Stream

    m = _matcher(_reference())
    assert isinstance(m, Stream)
    assert m.push(np.zeros((0, len(FC)), np.float32)).shape == (0, len(FC))
    assert m.flush().shape == (0, len(FC))


def test_a_reship_carries_the_earlier_cards_rows_and_limits():
    """devtools.ship --carry-from: rows of models not measured again, and the hand-written Limits bullets."""
    from devtools.ship import carried_card

    card = (Path(__file__).resolve().parents[1] / "models" / "MODEL_CARD.md").read_text()
    kept = carried_card(card, {"audionet"})
    assert kept["metrics"] and kept["recall"]
    assert not [r for r in kept["metrics"] + kept["recall"] if r.startswith("| audionet |")]
    assert any(r.startswith("| audionet-v1 (measured earlier) | real-dev |") for r in kept["metrics"])
    assert any(r.startswith("| audionet-v2, without harmonic ghosts (measured earlier) |") for r in kept["recall"])
    assert any(r.startswith("| audionet-v2 (measured earlier) | real-dev |") for r in kept["metrics"])
    assert any("Harmonic ghosts" in ln for ln in kept["limits"])
    assert any("Input spectrum matching" in ln for ln in kept["limits"])
    again = carried_card(card.replace("| audionet-v1 |", "| audionet-v1 (measured earlier) |"), {"audionet"})
    assert not [r for r in again["metrics"] if "(measured earlier) (measured earlier)" in r]
