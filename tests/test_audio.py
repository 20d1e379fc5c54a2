import numpy as np
import pytest
import soundfile as sf

from pianonotes.audio import iter_audio_blocks, load_audio
from pianonotes.errors import PianonotesError

from conftest import sine


def _peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


@pytest.mark.parametrize("fmt,sub,ext", [("WAV", "PCM_16", ".wav"), ("WAV", "FLOAT", ".wav"), ("FLAC", "PCM_24", ".flac"),
                                         ("OGG", "VORBIS", ".ogg"), ("AIFF", "PCM_16", ".aiff")])
@pytest.mark.parametrize("sr", [8000, 44100, 192000])
def test_formats_rates_channels(tmp_path, fmt, sub, ext, sr):
    x = sine(440.0, 1.0, sr)
    stereo = np.stack([x, x], axis=1)
    path = tmp_path / f"a{ext}"
    sf.write(path, stereo, sr, format=fmt, subtype=sub)
    y = load_audio(path, 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 16000) <= 2
    assert abs(_peak_hz(y, 16000) - 440.0) < 3


def test_mp3_if_supported(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3")
    path = tmp_path / "a.mp3"
    sf.write(path, sine(440.0, 1.0, 44100), 44100, format="MP3")
    y = load_audio(path, 16000)
    assert abs(_peak_hz(y, 16000) - 440.0) < 3


def test_six_channels_and_excerpt(tmp_path):
    x = np.tile(sine(440.0, 2.0, 48000)[:, None], (1, 6))
    path = tmp_path / "six.wav"
    sf.write(path, x, 48000)
    y = load_audio(path, 16000, start=0.5, end=1.5)
    assert abs(len(y) - 16000) <= 2


def test_errors(tmp_path):
    with pytest.raises(PianonotesError, match="no such file"):
        load_audio(tmp_path / "missing.wav", 16000)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(PianonotesError, match="empty"):
        load_audio(tmp_path / "empty.wav", 16000)
    (tmp_path / "text.wav").write_text("hello, this is not audio\n" * 20)
    with pytest.raises(PianonotesError, match="cannot decode"):
        load_audio(tmp_path / "text.wav", 16000)
    good = tmp_path / "good.wav"
    sf.write(good, sine(440.0, 1.0), 16000)
    (tmp_path / "trunc.wav").write_bytes(good.read_bytes()[:30])
    with pytest.raises(PianonotesError):
        load_audio(tmp_path / "trunc.wav", 16000)
    nan = sine(440.0, 0.5)
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    with pytest.raises(PianonotesError, match="NaN"):
        load_audio(tmp_path / "nan.wav", 16000)
    with pytest.raises(PianonotesError, match="folder"):
        load_audio(tmp_path, 16000)


@pytest.mark.parametrize("sr", [16000, 44100, 22050, 48000, 8000])
def test_blocks_equal_whole(tmp_path, sr):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(sr * 7) * 0.1).astype(np.float32)
    path = tmp_path / "n.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    whole = load_audio(path, 16000)
    assert len(whole) == round(len(x) * 16000 / sr)
    blocks = np.concatenate(list(iter_audio_blocks(path, 16000, block_seconds=1.3)))
    np.testing.assert_array_equal(blocks, whole)  # soxr streams exactly: not close, equal
