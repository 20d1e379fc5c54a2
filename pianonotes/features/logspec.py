"""Log-frequency magnitude spectrograms: the network's input.

The default front end (``dual-v1``) reads mono 16 kHz audio every 20 ms through two windows that end
at the same instant, 40 ms after the frame time (its look-ahead):

* a long 8192-sample (512 ms) window whose semitone-centred filters for A0-B3 separate neighbouring keys
  down to the bottom of the keyboard (FFT bins every 1.95 Hz; A0 and A#0 are 1.6 Hz apart, and land on
  different bins);
* a short 2048-sample (128 ms) window with 24 log-spaced bands per octave from 120 Hz to 8 kHz, for
  timing and the harmonics.

Frame ``i`` sits at time ``i * hop / sample_rate`` and depends on samples before
``i * hop + lookahead`` only, so a stream computes the frames a whole file gives (the same FFTs; the
product with the filterbank groups frames by block, so values may differ in the last float32 bit).
The parameters live in each checkpoint's config (``LogSpecFrontEnd.to_dict``), so other front ends (MSMD's)
can coexist: :func:`frontend_from_config` builds the right one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pianonotes import constants
from pianonotes.errors import PianonotesError


@dataclasses.dataclass(frozen=True)
class Band:
    n_fft: int
    fmin: float  # Hz
    fmax: float  # Hz
    bins_per_octave: int
    ref: float = 440.0  # centre frequencies are ref * 2**(k / bins_per_octave)


def log_filterbank(band: Band, sample_rate: int) -> np.ndarray:
    """Triangular filters with log-spaced centres on the rfft bins of ``band.n_fft``.

    Returns (n_fft // 2 + 1, n_bands) float32; each filter sums to 1. Centres that fall on the same FFT
    bin are merged (as madmom does), so no two bands are identical.
    """
    n_bins = band.n_fft // 2 + 1
    fft_freqs = np.arange(n_bins) * sample_rate / band.n_fft
    k_lo = int(np.ceil(band.bins_per_octave * np.log2(band.fmin / band.ref)))
    k_hi = int(np.floor(band.bins_per_octave * np.log2(band.fmax / band.ref)))
    centres_hz = band.ref * 2.0 ** (np.arange(k_lo - 1, k_hi + 2) / band.bins_per_octave)
    # Fractional bin positions; merge duplicates of the rounded centre.
    pos = centres_hz * band.n_fft / sample_rate
    rounded = np.round(pos).astype(int)
    keep = np.concatenate([[True], np.diff(rounded) > 0])
    pos, rounded = pos[keep], rounded[keep]
    filters = []
    for lo, mid, hi in zip(pos[:-2], pos[1:-1], pos[2:]):
        b = np.arange(n_bins, dtype=np.float64)
        up = (b - lo) / max(mid - lo, 1e-9)
        down = (hi - b) / max(hi - mid, 1e-9)
        tri = np.clip(np.minimum(up, down), 0.0, None)
        if tri.sum() < 1e-6 or tri.max() < 0.5:  # narrower than a bin: take the nearest bin
            tri = np.zeros(n_bins)
            tri[int(round(mid))] = 1.0
        filters.append(tri / tri.sum())
    fb = np.stack(filters, axis=1).astype(np.float32)
    del fft_freqs
    return fb


@dataclasses.dataclass(frozen=True)
class LogSpecFrontEnd:
    """Multi-resolution log-frequency spectrogram with bounded look-ahead."""

    sample_rate: int = constants.SAMPLE_RATE
    hop: int = constants.HOP_LENGTH
    lookahead: int = 640  # samples after the frame time that a frame may read (40 ms)
    bands: tuple[Band, ...] = (
        Band(8192, 27.0, 250.0, 12),
        Band(2048, 120.0, 8000.0, 24),
    )
    gain: float = 1000.0  # log1p(gain * magnitude)
    name: str = "dual-v1"

    # ---- config round trip -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kind"] = "logspec"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LogSpecFrontEnd":
        d = dict(d)
        d.pop("kind", None)
        d["bands"] = tuple(Band(**b) for b in d["bands"])
        return cls(**d)

    # ---- derived --------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return self.sample_rate / self.hop

    @property
    def window(self) -> int:
        return max(b.n_fft for b in self.bands)

    @property
    def lookahead_seconds(self) -> float:
        return self.lookahead / self.sample_rate

    @property
    def n_features(self) -> int:
        return sum(fb.shape[1] for fb in self._filterbanks())

    def n_frames(self, n_samples: int) -> int:
        return (n_samples + self.hop - 1) // self.hop

    def _filterbanks(self) -> list[np.ndarray]:
        return _cached_filterbanks(self)

    def band_centres(self) -> np.ndarray:
        """Approximate centre frequency (Hz) of each output feature."""
        out = []
        for band, fb in zip(self.bands, self._filterbanks()):
            bins = np.arange(fb.shape[0]) * self.sample_rate / band.n_fft
            out.append((fb * bins[:, None]).sum(0))
        return np.concatenate(out)

    # ---- compute ----------------------------------------------------------------------------------
    def padded(self, audio: np.ndarray) -> np.ndarray:
        """Audio with the history before time 0 and the look-ahead after the end zero-filled."""
        n_frames = self.n_frames(len(audio))
        total = (n_frames - 1) * self.hop + self.window if n_frames else 0
        out = np.zeros(max(total, 0), np.float32)
        head = self.window - self.lookahead
        take = min(len(audio), max(0, total - head))
        out[head: head + take] = audio[:take]
        return out

    def frames_from_padded(self, padded: np.ndarray, n_frames: int) -> np.ndarray:
        """Features of ``n_frames`` frames whose windows start every ``hop`` samples in ``padded``.

        Frame j reads ``padded[j*hop : j*hop + window]``. Returns (n_frames, n_features) float32.
        """
        if n_frames <= 0:
            return np.zeros((0, self.n_features), np.float32)
        need = (n_frames - 1) * self.hop + self.window
        if len(padded) < need:
            raise PianonotesError("internal: not enough audio for the requested frames")
        padded = np.asarray(padded)
        feats = []
        W, hop = self.window, self.hop
        for band, (fb, lo, hi) in zip(self.bands, _cached_trimmed(self)):
            win = _hann(band.n_fft)
            scale = np.float32(2.0 / win.sum())
            out = np.empty((n_frames, fb.shape[1]), np.float32)
            step = max(1, 4_000_000 // band.n_fft)  # frames per product with the filters (it sets the rounding)
            start = W - band.n_fft
            view = np.lib.stride_tricks.sliding_window_view(padded[start: start + need - W + band.n_fft], band.n_fft)
            # The windowed frames and their spectra go through two small buffers, reused (FFT_FRAMES_BYTES
            # each), not a fresh 16 MB pair per step: a run's first spectrogram spent more time faulting in
            # new memory than in the FFT. Each frame's FFT does not depend on how frames are grouped.
            real = np.result_type(padded.dtype, win.dtype)
            if real not in (np.float32, np.float64):
                real = np.dtype(np.float64)
            # without scipy the transform is numpy's, in double precision (see _numpy_rfft)
            fft_real = real if _pocketfft_r2c() is not None else np.dtype(np.float64)
            sub = max(1, min(step, n_frames, FFT_FRAMES_BYTES // (band.n_fft * fft_real.itemsize)))
            frame_buf = np.empty((sub, band.n_fft), fft_real)
            spec_buf = np.empty((sub, band.n_fft // 2 + 1), np.complex64 if fft_real == np.float32 else np.complex128)
            for s in range(0, n_frames, step):
                e = min(n_frames, s + step)
                mag = np.empty((e - s, hi - lo), real)
                for a in range(s, e, sub):
                    b = min(e, a + sub)
                    frames = np.multiply(view[a * hop: (b - 1) * hop + 1: hop], win, out=frame_buf[: b - a])
                    spec = _rfft(frames, axis=1, out=spec_buf[: b - a])
                    np.abs(spec[:, lo:hi], out=mag[a - s: b - s])  # only the bins the filters use
                mag *= scale
                out[s:e] = mag @ fb
            feats.append(out)
        x = np.concatenate(feats, axis=1)
        return np.log1p(self.gain * x).astype(np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Features of a whole recording: (n_frames, n_features) float32, n_frames = ceil(n / hop)."""
        audio = np.asarray(audio, dtype=np.float32)
        n = self.n_frames(len(audio))
        return self.frames_from_padded(self.padded(audio), n)

    def streaming(self) -> "StreamingFrontEnd":
        """A stream (:class:`pianonotes.streaming.Stream`) whose frames equal ``self(whole audio)`` to float32
        rounding (the filterbank product groups frames by block)."""
        return StreamingFrontEnd(self)


FFT_FRAMES_BYTES = 1 << 20  # windowed frames per FFT call: about 1 MB (32 frames of 8192 samples)
_FB_CACHE: dict[LogSpecFrontEnd, list[np.ndarray]] = {}
_HANN_CACHE: dict[int, np.ndarray] = {}


def _cached_filterbanks(fe: LogSpecFrontEnd) -> list[np.ndarray]:
    if fe not in _FB_CACHE:
        _FB_CACHE[fe] = [log_filterbank(b, fe.sample_rate) for b in fe.bands]
    return _FB_CACHE[fe]


_TRIM_CACHE: dict[LogSpecFrontEnd, list[tuple[np.ndarray, int, int]]] = {}


def _cached_trimmed(fe: LogSpecFrontEnd) -> list[tuple[np.ndarray, int, int]]:
    """Filterbanks cut to the FFT bins they touch: (filters[lo:hi], lo, hi) per band."""
    if fe not in _TRIM_CACHE:
        out = []
        for fb in _cached_filterbanks(fe):
            rows = np.nonzero(fb.any(axis=1))[0]
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            out.append((np.ascontiguousarray(fb[lo:hi]), lo, hi))
        _TRIM_CACHE[fe] = out
    return _TRIM_CACHE[fe]


def _hann(n: int) -> np.ndarray:
    if n not in _HANN_CACHE:
        _HANN_CACHE[n] = np.hanning(n + 1)[:-1].astype(np.float32)  # periodic Hann
    return _HANN_CACHE[n]


class StreamingFrontEnd:
    """Feed audio blocks of any size; get the frames the offline front end gives, to float32 rounding (a
    :class:`pianonotes.streaming.Stream`).

    ``push(block)``: (n,) float32 mono audio at ``frontend.sample_rate``; returns the (frames,
    n_features) float32 frames that became computable (frame ``i`` once sample ``i * hop + lookahead``
    has arrived); ``flush()`` the rest (zero look-ahead padding at the end), so ``concat(push(...)...,
    flush())`` equals ``frontend(whole_audio)``, ``ceil(n / hop)`` frames.
    """

    def __init__(self, frontend: LogSpecFrontEnd):
        self.fe = frontend
        self.reset()

    def reset(self) -> None:
        frontend = self.fe
        self._buf = np.zeros(frontend.window - frontend.lookahead, np.float32)  # history of zeros
        self._n_in = 0
        self._n_out = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        self._buf = np.concatenate([self._buf, block])
        self._n_in += len(block)
        # frame j is ready once buffer holds j*hop + window samples (relative to the buffer start)
        ready = (len(self._buf) - self.fe.window) // self.fe.hop + 1 if len(self._buf) >= self.fe.window else 0
        # never emit frames beyond the audio's own frame count (those come from flush)
        return self._emit(ready)

    def _emit(self, n: int) -> np.ndarray:
        if n <= 0:
            return np.zeros((0, self.fe.n_features), np.float32)
        feats = self.fe.frames_from_padded(self._buf, n)
        self._buf = self._buf[n * self.fe.hop:]
        self._n_out += n
        return feats

    def flush(self) -> np.ndarray:
        total = self.fe.n_frames(self._n_in)
        remaining = total - self._n_out
        if remaining <= 0:
            return np.zeros((0, self.fe.n_features), np.float32)
        need = (remaining - 1) * self.fe.hop + self.fe.window
        if len(self._buf) < need:
            self._buf = np.concatenate([self._buf, np.zeros(need - len(self._buf), np.float32)])
        return self._emit(remaining)


def _rfft(x: np.ndarray, axis: int, out: np.ndarray | None = None) -> np.ndarray:
    """Single-precision real FFT: scipy's pocketfft where scipy is installed (float32 in, complex64 out),
    its compiled module loaded on its own, the same results as ``scipy.fft.rfft`` bit for bit, so that a
    run does not import ``scipy.fft`` (0.2 s: it pulls in ``scipy.special`` and scipy's array-API layer,
    which imports most of numpy's submodules). Without scipy (the default install leaves it to the
    ``train`` extra): :func:`_numpy_rfft`."""
    r2c = _pocketfft_r2c()
    if r2c is None:
        return _numpy_rfft(x, axis, out)
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32 if x.dtype == np.float16 else np.float64)
    if x.shape[axis] < 1:
        raise ValueError(f"invalid number of data points ({x.shape[axis]}) specified")
    if out is not None and (out.dtype != (np.complex64 if x.dtype == np.float32 else np.complex128)
                            or not out.flags.c_contiguous):
        out[...] = r2c(x, (axis % x.ndim,), True, 0, None, 1)
        return out
    return r2c(x, (axis % x.ndim,), True, 0, out, 1)  # forward, unnormalised ("backward"), one thread


def _numpy_rfft(x: np.ndarray, axis: int, out: np.ndarray | None = None) -> np.ndarray:
    """``numpy.fft.rfft`` in double precision, complex64 again for float32 input: numpy's own float32
    transform is about 5x slower than its float64 one on these 8192-point frames, which is within 2x of
    scipy's float32 (measured: 21 against 12 microseconds a frame). The features agree with scipy's to
    float32 rounding, not bit for bit."""
    x = np.asarray(x)
    single = x.dtype in (np.float32, np.float16)
    x64 = x.astype(np.float64, copy=False)
    if out is not None and out.dtype == np.complex128 and out.flags.c_contiguous:  # straight into it
        return np.fft.rfft(x64, axis=axis, out=out)
    spec = np.fft.rfft(x64, axis=axis)
    if single:
        spec = spec.astype(np.complex64)
    if out is None:
        return spec
    out[...] = spec
    return out


_R2C: list = []


def _pocketfft_r2c():
    """``scipy.fft._pocketfft.pypocketfft.r2c`` without importing ``scipy`` or ``scipy.fft`` (None when
    scipy is missing or lays it out differently: then numpy's FFT is used)."""
    if not _R2C:
        _R2C.append(_load_pocketfft())
    return _R2C[0]


def _load_pocketfft():
    import importlib.machinery
    import importlib.util
    import os
    import sys

    name = "scipy.fft._pocketfft.pypocketfft"
    if name in sys.modules:
        return getattr(sys.modules[name], "r2c", None)
    try:
        spec = importlib.util.find_spec("scipy")  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = os.path.join(list(spec.submodule_search_locations)[0], "fft", "_pocketfft")
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "pypocketfft" + suffix)
            if os.path.isfile(path):
                break
        else:
            return None
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        r2c = module.r2c
        got = r2c(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32), (1,), True, 0, None, 1)  # the signature we call
        if got.dtype != np.complex64 or not np.allclose(got[0], [10, -2 + 2j, -2], atol=1e-5):
            return None
    except Exception:  # another layout or signature: numpy's FFT it is
        return None
    sys.modules[name] = module  # a later ``import scipy.fft`` reuses it instead of loading it twice
    return r2c
