"""Resampling with soxr (pianonotes.audio): exact in blocks, faithful to a sine, free of aliases, and
free of scipy.signal on the inference path (its import cost 0.85 s of every transcription)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from pianonotes.audio import StreamResampler, iter_audio_blocks, load_audio, resample
from pianonotes.nn import checkpoint as ckpt

from conftest import run_cli

RATES = [(8000, 16000), (22050, 16000), (44100, 16000), (48000, 16000), (16000, 48000)]
# Makes `import scipy.signal` fail in a process and in every process it starts (PYTHONPATH is inherited).
NO_SCIPY_SIGNAL = ("import sys\n"
                   "class _NoScipySignal:\n"
                   "    def find_spec(self, name, path=None, target=None):\n"
                   "        if name == 'scipy.signal' or name.startswith('scipy.signal.'):\n"
                   "            raise ModuleNotFoundError(\"scipy.signal is blocked\", name=name)\n"
                   "        return None\n"
                   "sys.meta_path.insert(0, _NoScipySignal())\n")
shipped = pytest.mark.skipif(not ckpt.default_checkpoint().with_suffix(".onnx").exists(),
                             reason="no shipped ONNX export")


def _sine(freq: float, sr: int, seconds: float = 2.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def _middle(y: np.ndarray, sr: int) -> slice:
    return slice(sr // 4, len(y) - sr // 4)  # away from the filter's edges


def _level_db(y: np.ndarray, sr: int, amp: float) -> float:
    m = y[_middle(y, sr)].astype(np.float64)
    return 20 * np.log10(np.sqrt(np.mean(m ** 2)) * np.sqrt(2) / amp)


@pytest.mark.parametrize("a,b", RATES)
@pytest.mark.parametrize("freq", [440.0, 3000.0])
def test_a_sine_keeps_its_frequency_level_and_timing(a, b, freq):
    """The output is the same sine sampled at the new rate: no delay, no gain, no other frequency."""
    y = resample(_sine(freq, a), a, b)
    assert y.dtype == np.float32 and len(y) == round(len(_sine(freq, a)) * b / a)
    want = _sine(freq, b, seconds=len(y) / b)[: len(y)]
    mid = _middle(y, b)
    assert np.max(np.abs(y[mid] - want[mid])) < 2e-4  # a one-sample delay would be off by 0.03 at 440 Hz
    assert abs(_level_db(y, b, 0.5)) < 0.01
    spec = np.abs(np.fft.rfft(y[mid] * np.hanning(len(y[mid])), n=1 << 20))
    assert abs(np.argmax(spec) * b / (1 << 20) - freq) < 0.5


@pytest.mark.parametrize("freq", [7000.0, 7200.0])
def test_the_passband_is_flat_to_7_khz(freq):
    """44.1 -> 16 kHz: within 0.05 dB at 7 kHz (scipy's resample_poly lost 0.25 dB there, 0.66 at 7.2)."""
    assert abs(_level_db(resample(_sine(freq, 44100), 44100, 16000), 16000, 0.5)) < 0.05


@pytest.mark.parametrize("a,freq", [(44100, 8300.0), (44100, 9000.0), (48000, 12000.0), (22050, 10000.0)])
def test_tones_above_the_new_nyquist_do_not_alias(a, freq):
    """What cannot exist at 16 kHz is removed, not folded back into the piano's range (scipy's
    resample_poly left an 8.3 kHz tone at about -10 dB, 9 kHz at -31 dB)."""
    assert _level_db(resample(_sine(freq, a), a, 16000), 16000, 0.5) < -100


@pytest.mark.parametrize("a,b", RATES)
def test_any_blocking_of_a_stream_equals_the_whole_array(a, b):
    rng = np.random.default_rng(a + b)
    x = (rng.standard_normal(3 * a + 17) * 0.2).astype(np.float32)
    want = resample(x, a, b)
    for trial in range(4):
        sizes = rng.choice([0, 1, 5, 160, 441, 1000, 4096, 30_000], 64) if trial else [len(x)]
        rs = StreamResampler(a, b)
        parts, i, k = [], 0, 0
        while i < len(x):
            n = int(sizes[k % len(sizes)])
            parts.append(rs.push(x[i: i + n]))
            i, k = i + n, k + 1
        parts.append(rs.flush())
        np.testing.assert_array_equal(np.concatenate(parts), want)


@pytest.mark.parametrize("a", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("block_seconds", [0.37, 30.0])
def test_file_blocks_equal_the_whole_file_sample_for_sample(tmp_path, a, block_seconds):
    """iter_audio_blocks (transcribe, listen --input) and load_audio (--start/--end, evaluation, tests)."""
    rng = np.random.default_rng(a)
    x = (rng.standard_normal((a * 3 + 11, 2)) * 0.1).astype(np.float32)
    path = tmp_path / "n.wav"
    sf.write(path, x, a, subtype="FLOAT")
    whole = load_audio(path, 16000)
    blocks = list(iter_audio_blocks(path, 16000, block_seconds=block_seconds))
    assert all(len(blk) for blk in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    np.testing.assert_array_equal(whole, resample(x.mean(axis=1), a, 16000))


def test_import_and_resampling_never_import_scipy_signal():
    code = ("import sys, numpy as np\n"
            "import pianonotes.audio as A\n"
            "A.resample(np.zeros(4410, np.float32), 44100, 16000)\n"
            "rs = A.StreamResampler(48000, 16000); rs.push(np.zeros(4800, np.float32)); rs.flush()\n"
            "print('scipy.signal' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


@shipped
def test_transcribing_and_listening_to_a_44k_file_never_import_scipy_signal(tmp_path):
    """transcribe (whole file and an excerpt) and listen --input --fast of a 44.1 kHz stereo file, in
    processes where scipy.signal cannot be imported."""
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(NO_SCIPY_SIGNAL)
    env = {"PYTHONPATH": str(tmp_path / "block"), "PIANONOTES_CACHE": str(tmp_path / "cache")}
    t = np.arange(3 * 44100) / 44100
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (t % 1.0 < 0.5)).astype(np.float32)
    wav = tmp_path / "a44.wav"
    sf.write(wav, np.stack([tone, tone], axis=1), 44100, subtype="PCM_16")
    p = run_cli("transcribe", wav, "-o", tmp_path / "a.mid", env=env)
    assert p.returncode == 0, p.stderr
    p = run_cli("transcribe", wav, "-o", tmp_path / "b.mid", "--start", "0.5", "--end", "2.5", env=env)
    assert p.returncode == 0, p.stderr
    p = run_cli("listen", "--input", wav, "--fast", "--plain", "-o", tmp_path / "c.csv", env=env)
    assert p.returncode == 0, p.stderr
    # the blocker works: the same process set-up fails where scipy.signal is imported
    p = subprocess.run([sys.executable, "-c", "import scipy.signal"], capture_output=True, text=True,
                       env=dict(__import__("os").environ, **env), timeout=60)
    assert p.returncode != 0 and "scipy.signal is blocked" in p.stderr


@shipped
def test_file_blocks_a_live_stream_and_the_whole_file_give_the_same_notes(tmp_path):
    """A 44.1 kHz file: transcribe's blocks, a device's 50 ms blocks through the live StreamResampler and
    the whole file at once reach the engine as the same samples, so the shipped model's notes are equal."""
    from pianonotes.transcribe import Transcriber

    from conftest import ROOT

    audio, sr = sf.read(ROOT / "pianonotes" / "examples" / "twohands.flac", dtype="float32")
    native = resample(audio[: 8 * sr], sr, 44100)
    path = tmp_path / "ex44.wav"
    sf.write(path, native, 44100, subtype="FLOAT")
    tr = Transcriber.from_checkpoint(None, device="cpu")

    def notes(blocks):
        eng = tr.engine()
        got = [n for blk in blocks for n in eng.push(blk).notes] + eng.finish().notes
        return sorted((n.pitch, n.onset, n.offset, n.velocity) for n in got)

    rs = StreamResampler(44100, tr.frontend.sample_rate)
    live = [rs.push(native[i: i + 2205]) for i in range(0, len(native), 2205)] + [rs.flush()]
    whole = notes([load_audio(path, tr.frontend.sample_rate)])
    assert len(whole) > 5
    assert notes(iter_audio_blocks(path, tr.frontend.sample_rate, 3.0)) == whole
    assert notes(live) == whole
