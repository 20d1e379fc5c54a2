import numpy as np
import pytest

from pianonotes import constants
from pianonotes.features import frontend_from_config
from pianonotes.features.logspec import LogSpecFrontEnd, StreamingFrontEnd

from conftest import sine


def test_shapes_and_config_round_trip():
    fe = LogSpecFrontEnd()
    x = fe(np.zeros(16000 + 5, np.float32))
    assert x.shape == (fe.n_frames(16005), fe.n_features) == (51, fe.n_features)
    assert fe.fps == constants.FRAMES_PER_SECOND and fe.hop / fe.sample_rate <= 0.05
    assert frontend_from_config(fe.to_dict()) == fe
    assert np.all(x == 0)  # silence is exactly zero


def test_streaming_equals_offline_for_any_block_size():
    fe = LogSpecFrontEnd()
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(16000 * 3) * 0.1).astype(np.float32)
    whole = fe(audio)
    for sizes in ([1, 7, 320, 5000], [16000 * 3], [321]):
        s = StreamingFrontEnd(fe)
        parts, i, k = [], 0, 0
        while i < len(audio):
            n = sizes[k % len(sizes)]
            parts.append(s.push(audio[i: i + n]))
            i, k = i + n, k + 1
        parts.append(s.flush())
        got = np.concatenate(parts)
        assert got.shape == whole.shape
        assert np.max(np.abs(got - whole)) < 1e-5


def test_lookahead_bound():
    fe = LogSpecFrontEnd()
    rng = np.random.default_rng(2)
    a = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    b = a.copy()
    cut = 8000
    b[cut:] = 0  # change only the audio from sample `cut` on
    fa, fb = fe(a), fe(b)
    # frame i reads samples < i*hop + lookahead: frames with i*hop + lookahead <= cut are identical
    last_same = (cut - fe.lookahead) // fe.hop
    assert np.array_equal(fa[: last_same + 1], fb[: last_same + 1])
    assert not np.array_equal(fa[last_same + 1], fb[last_same + 1])
    assert fe.lookahead_seconds <= constants.MAX_LOOKAHEAD_SECONDS


def test_separates_semitones_at_the_bottom_of_the_keyboard():
    fe = LogSpecFrontEnd()
    low = fe.bands[0]
    n_low = fe._filterbanks()[0].shape[1]
    peaks = []
    for pitch in (21, 22, 23):  # A0, A#0, B0
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        x = fe(sine(f0, 2.0))[60:80, :n_low].mean(0)
        peaks.append(int(np.argmax(x)))
    assert len(set(peaks)) == 3, peaks
    assert low.fmin <= 27.5


# ------------------------------------------------------------ the FFT: scipy's pocketfft, loaded on its own
def _fft_cases(rng):
    """(input, axis) pairs: float32/float64, 1-3 dimensions, the front end's sizes, odd lengths, strided;
    float16 and integers (converted as scipy.fft converts them)."""
    cases = []
    for dtype in (np.float32, np.float64):
        for shape, axis in (((8192,), 0), ((4, 8192), 1), ((3, 2048), -1), ((999, 5), 0), ((2, 7, 64), 1),
                            ((5, 1001), 1), ((1, 1), 1)):
            cases.append(((rng.standard_normal(shape) * 100).astype(dtype), axis))
        wide = rng.standard_normal((6, 4096)).astype(dtype)
        cases += [(wide[:, ::2], 1), (wide.T, 0)]  # non-contiguous input
    cases += [((rng.standard_normal((3, 2048)) * 100).astype(np.float16), 1),  # computed in float32
              (rng.integers(-1000, 1000, (3, 500)), 1)]  # and float64
    return cases


def test_rfft_equals_scipy_fft_bit_for_bit_with_and_without_out():
    """The direct pocketfft call gives scipy.fft.rfft's dtype, shape and values exactly, returned or
    written into ``out`` (contiguous, strided or of the other precision)."""
    import scipy.fft

    from pianonotes.features import logspec

    rng = np.random.default_rng(5)
    for x, axis in _fft_cases(rng):
        want = scipy.fft.rfft(x, axis=axis)
        got = logspec._rfft(x, axis=axis)
        assert got.dtype == want.dtype and got.shape == want.shape, (x.dtype, x.shape, axis)
        assert np.array_equal(got, want), (x.dtype, x.shape, axis)
        # into a buffer: the right one (written in place), a strided view, and one of the other precision
        right = want.dtype
        other = np.complex128 if right == np.complex64 else np.complex64
        big = np.full(want.shape[:-1] + (2 * want.shape[-1],), np.nan, right)
        for buf in (np.full(want.shape, np.nan, right), big[..., ::2], np.full(want.shape, np.nan, other)):
            out = logspec._rfft(x, axis=axis, out=buf)
            assert out is buf, (x.dtype, x.shape, axis, buf.dtype, buf.flags.c_contiguous)
            assert np.array_equal(buf, want.astype(buf.dtype)), (x.dtype, x.shape, axis, buf.dtype)
        assert np.isnan(big[..., 1::2]).all()  # nothing written between the view's elements


def test_without_scipy_numpy_fft_gives_the_same_features_to_rounding(monkeypatch):
    """Without scipy's pocketfft (``_R2C == [None]``: no scipy, as in the default install, or another
    layout), numpy's FFT computes the features, equal to scipy's to float32 rounding; and it is really
    the path taken."""
    from pianonotes.features import logspec

    fe = LogSpecFrontEnd()
    rng = np.random.default_rng(6)
    audio = np.concatenate([(rng.standard_normal(16000 * 3) * 0.1).astype(np.float32), sine(55.0, 1.0)])
    if logspec._pocketfft_r2c() is None:
        pytest.skip("this scipy has no pocketfft module where _load_pocketfft looks: numpy's FFT is all there is")
    direct = fe(audio)
    calls = []
    real_rfft = np.fft.rfft

    def counting_rfft(*args, **kwargs):
        calls.append(1)
        return real_rfft(*args, **kwargs)

    monkeypatch.setattr(logspec, "_R2C", [None])
    monkeypatch.setattr(np.fft, "rfft", counting_rfft)
    fallback = fe(audio)
    assert calls  # numpy computed them
    assert fallback.dtype == direct.dtype == np.float32 and fallback.shape == direct.shape
    np.testing.assert_allclose(fallback, direct, rtol=0, atol=1e-5)
    x = rng.standard_normal((3, 2048)).astype(np.float32)
    buf = np.empty((3, 1025), np.complex64)
    assert logspec._rfft(x, axis=1, out=buf) is buf
    np.testing.assert_allclose(buf, real_rfft(x.astype(np.float64), axis=1), rtol=1e-5, atol=1e-4)


_NO_SCIPY_FFT = """
import json, sys
import numpy as np
from pianonotes.features import logspec
if {mode!r} == "numpy":
    logspec._R2C[:] = [None]
if {mode!r} == "control":
    import scipy.fft  # noqa: F401  (the probe must see it)
feats = logspec.LogSpecFrontEnd()(np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1)
report = {{"direct": logspec._pocketfft_r2c() is not None, "scipy.fft": "scipy.fft" in sys.modules,
           "frames": len(feats)}}
import scipy.fft  # afterwards, scipy.fft itself still works: with the module already loaded, the same FFT
x = np.random.default_rng(1).standard_normal((3, 8192)).astype(np.float32)
report["same"] = bool(np.array_equal(scipy.fft.rfft(x, axis=1), logspec._rfft(x, axis=1)))
report["close"] = bool(np.allclose(scipy.fft.rfft(x, axis=1), logspec._rfft(x, axis=1), rtol=1e-5, atol=1e-3))
print(json.dumps(report))
"""


def test_features_do_not_import_scipy_fft():
    """A fresh process computes 2 s of features without importing scipy.fft, through the direct module
    (bit for bit scipy.fft's FFT, imported afterwards) or through numpy's FFT (to rounding); a control
    that imports scipy.fft first is seen by the probe, so the probe can tell."""
    import glob
    import importlib.util
    import json
    import os
    import subprocess
    import sys

    def probe(mode: str) -> dict:
        p = subprocess.run([sys.executable, "-c", _NO_SCIPY_FFT.format(mode=mode)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout.strip().splitlines()[-1])

    fresh = probe("direct")
    assert fresh["frames"] == 100 and not fresh["scipy.fft"]
    scipy_dir = importlib.util.find_spec("scipy").submodule_search_locations[0]
    if glob.glob(os.path.join(scipy_dir, "fft", "_pocketfft", "pypocketfft.*")):  # the layout it expects
        assert fresh["direct"] and fresh["same"]
    numpy_path = probe("numpy")
    assert not numpy_path["direct"] and not numpy_path["scipy.fft"] and numpy_path["close"]
    assert probe("control")["scipy.fft"]


def _reference_features(fe: LogSpecFrontEnd, audio: np.ndarray) -> np.ndarray:
    """The front end written out plainly, one frame at a time with scipy.fft: frame i of each band is
    the band's n_fft samples that end ``lookahead`` samples after ``i * hop`` (zeros before the start and
    after the end), periodic-Hann windowed; 2 / sum(window) times the rfft magnitudes, through the whole
    (untrimmed) filterbank; then log1p(gain * x)."""
    import scipy.fft

    from pianonotes.features.logspec import log_filterbank

    n = fe.n_frames(len(audio))
    cols = []
    for band in fe.bands:
        fb = log_filterbank(band, fe.sample_rate)
        k = np.arange(band.n_fft)
        win = (0.5 - 0.5 * np.cos(2 * np.pi * k / band.n_fft)).astype(np.float32)
        scale = np.float32(2.0 / win.sum())
        out = np.empty((n, fb.shape[1]), np.float32)
        for i in range(n):
            start = i * fe.hop + fe.lookahead - band.n_fft  # the frame is audio[start: start + n_fft]
            a, b = max(0, start), min(len(audio), start + band.n_fft)
            frame = np.zeros(band.n_fft, np.float32)
            frame[a - start: b - start] = audio[a:b]
            mag = np.abs(scipy.fft.rfft(frame * win)) * scale
            out[i] = mag @ fb
        cols.append(out)
    return np.log1p(fe.gain * np.concatenate(cols, axis=1)).astype(np.float32)


def test_long_recording_equals_a_frame_by_frame_reference_and_streaming():
    """70 s: many groups of frames through the reused FFT buffers and several products with the
    filters, against the plain per-frame computation (float32 rounding apart); and streamed in random
    blocks, the same frames."""
    from pianonotes.features import logspec

    fe = LogSpecFrontEnd()
    rng = np.random.default_rng(7)
    n = 16000 * 70 + 123
    t = np.arange(n) / 16000
    audio = (rng.standard_normal(n) * 0.05 * (1.2 + np.sin(2 * np.pi * 0.7 * t))).astype(np.float32)
    audio += sine(110.0, n / 16000)[:n] * (t % 3 < 1)
    feats = fe(audio)
    n_frames = fe.n_frames(n)
    assert feats.shape == (n_frames, fe.n_features) and feats.dtype == np.float32
    assert n_frames * fe.bands[0].n_fft * 4 > 50 * logspec.FFT_FRAMES_BYTES  # many FFT buffer groups
    assert n_frames > 4 * (4_000_000 // fe.bands[0].n_fft)  # several products with the filters
    ref = _reference_features(fe, audio)
    assert np.all(np.isfinite(feats)) and feats.max() > 1.0
    np.testing.assert_allclose(feats, ref, rtol=0, atol=2e-6)  # a few float32 ulps of values up to ~5
    # streaming, in random blocks (empty and one-sample ones too)
    s = fe.streaming()
    parts, i = [], 0
    while i < n:
        b = int(rng.choice([0, 1, 319, 320, 321, 4000, 50_000, 200_000]))
        parts.append(s.push(audio[i: i + b]))
        i += b
    parts.append(s.flush())
    streamed = np.concatenate(parts)
    assert streamed.shape == feats.shape and streamed.dtype == np.float32
    # Not bit for bit: BLAS rounds each frame's product with the filters differently depending on how many
    # frames share the call, and a stream groups them by block (the code before the buffers did the same).
    np.testing.assert_allclose(streamed, feats, rtol=0, atol=2e-6)
