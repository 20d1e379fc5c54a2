"""MSMD's front end: madmom 0.16.1's log-filtered spectrogram as the dataset's code configured it
(92 bands, 20 frames/s), recomputed from audio, offline and streaming.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from pianonotes.errors import PianonotesError


@dataclasses.dataclass(frozen=True)
class MsmdFrontEnd:
    """MSMD's features from audio: madmom 0.16.1's log-filtered spectrogram as the dataset's code set it up.

    Mono at 22050 Hz; frame ``i`` (time ``i / 20`` s) covers samples ``[int(i * 1102.5), int(i * 1102.5) +
    2048)`` (madmom's ``origin='future'``), zero-padded past the end, ``ceil(n / 1102.5)`` frames; a
    symmetric 2048-point Hann window (``np.hanning``); magnitudes of the first 1024 FFT bins; a triangular
    filterbank with 16 bands per octave from 30 Hz to 6 kHz (referenced to 440 Hz) whose centres snap to
    the nearest FFT bin, duplicates removed, each filter of area 1: 92 bands (43-5674 Hz); ``log10(1 + x)``.

    ``int16_scale``: madmom reads the dataset's audio as int16 and divides by 32767; float audio ``x`` in
    [-1, 1] is int16 ``32768 x``, hence the factor 32768/32767.

    A frame reads ``frame_size`` samples after its time: the look-ahead is 2048 samples (93 ms).
    """

    sample_rate: int = 22050
    hop: float = 1102.5  # samples; sample_rate / 20
    frame_size: int = 2048
    bands_per_octave: int = 16
    fmin: float = 30.0  # Hz
    fmax: float = 6000.0  # Hz
    fref: float = 440.0  # Hz
    int16_scale: float = 32768.0 / 32767.0
    name: str = "msmd-madmom-0.16.1"

    # ---- config round trip ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kind"] = "msmd"
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MsmdFrontEnd":
        d = dict(d)
        if d.pop("kind", "msmd") != "msmd":
            raise PianonotesError("internal: not an MSMD front end config")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise PianonotesError(
                f"MSMD front end config has unknown fields {sorted(unknown)}; upgrade pianonotes")
        return cls(**d)

    # ---- derived --------------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return self.sample_rate / self.hop

    @property
    def lookahead(self) -> int:
        """Samples after a frame's time that the frame reads."""
        return self.frame_size

    @property
    def lookahead_seconds(self) -> float:
        return self.lookahead / self.sample_rate

    @property
    def window(self) -> int:
        return self.frame_size

    @property
    def n_features(self) -> int:
        return self.filterbank().shape[1]

    def n_frames(self, n_samples: int) -> int:
        """``ceil(n_samples / hop)``."""
        return int(math.ceil(n_samples / self.hop)) if n_samples > 0 else 0

    def frame_start(self, i: int) -> int:
        """First sample of frame ``i``."""
        return int(i * self.hop)

    def filterbank(self) -> np.ndarray:
        """(frame_size // 2, n_bands) float32, as madmom's ``LogarithmicFilterbank`` (norm, unique)."""
        return _msmd_filterbank(self.frame_size, self.sample_rate, self.bands_per_octave, self.fmin,
                                self.fmax, self.fref)

    def band_centres(self) -> np.ndarray:
        """Centre frequency (Hz) of each band: the FFT bin its triangle peaks on."""
        fb = self.filterbank()
        return np.argmax(fb, axis=0) * self.sample_rate / self.frame_size

    # ---- compute ----------------------------------------------------------------------------------------
    def frames_at(self, audio: np.ndarray, offset: int, first: int, count: int) -> np.ndarray:
        """Features of frames ``first .. first+count-1`` from ``audio`` holding samples from ``offset`` on
        (zeros beyond its end). Returns (count, n_features) float32."""
        bands = _band_ranges(self.filterbank())
        out = np.empty((max(count, 0), len(bands)), np.float32)
        if count <= 0:
            return out
        win = _hann_symmetric(self.frame_size) * self.int16_scale
        n_bins = self.frame_size // 2
        step = 512
        for s in range(0, count, step):
            e = min(count, s + step)
            starts = np.array([self.frame_start(first + i) - offset for i in range(s, e)], np.int64)
            need = int(starts[-1]) + self.frame_size
            lo = int(starts[0])
            if lo < 0:
                raise PianonotesError("internal: MSMD frame starts before the buffered audio")
            seg = np.zeros(need - lo, np.float64)
            avail = audio[lo:need]
            seg[: len(avail)] = avail
            idx = (starts - lo)[:, None] + np.arange(self.frame_size)[None, :]
            mag = np.abs(np.fft.rfft(seg[idx] * win, axis=1)[:, :n_bins])
            # band by band, each row summed on its own: the result never depends on how many frames
            # are computed together (a BLAS product would), so streaming equals offline bit for bit
            for b, (blo, bhi, w) in enumerate(bands):
                out[s:e, b] = np.log10(1.0 + (mag[:, blo:bhi] * w).sum(axis=1))
        return out

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Features of a whole recording (mono float32 at 22050 Hz): (ceil(n / 1102.5), 92) float32."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        return self.frames_at(audio, 0, 0, self.n_frames(len(audio)))

    def streaming(self) -> "MsmdStream":
        """A streaming front end whose ``push``/``flush`` frames equal ``self(whole audio)`` exactly."""
        return MsmdStream(self)


class MsmdStream:
    """Feed audio blocks of any size; get exactly the frames :class:`MsmdFrontEnd` gives the whole file
    (a :class:`pianonotes.streaming.Stream`: (n,) float32 mono audio in, (frames, 92) float32 out).

    ``push(block)`` returns the frames whose 2048 samples have all arrived; ``flush()`` the rest (zero
    padding at the end), so ``concat(push(...)..., flush())`` equals ``frontend(whole_audio)``.
    """

    def __init__(self, frontend: MsmdFrontEnd):
        self.fe = frontend
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float32)
        self._offset = 0  # absolute index of self._buf[0]
        self._n_in = 0
        self._n_out = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        self._buf = np.concatenate([self._buf, block])
        self._n_in += len(block)
        n = 0
        while self.fe.frame_start(self._n_out + n) + self.fe.frame_size <= self._n_in:
            n += 1
        return self._emit(n)

    def flush(self) -> np.ndarray:
        return self._emit(self.fe.n_frames(self._n_in) - self._n_out)

    def _emit(self, n: int) -> np.ndarray:
        if n <= 0:
            return np.zeros((0, self.fe.n_features), np.float32)
        feats = self.fe.frames_at(self._buf, self._offset, self._n_out, n)
        self._n_out += n
        drop = self.fe.frame_start(self._n_out) - self._offset
        drop = min(max(drop, 0), len(self._buf))
        self._buf = self._buf[drop:]
        self._offset += drop
        return feats


_FB_CACHE: dict[tuple, np.ndarray] = {}
_BAND_CACHE: dict[int, list[tuple[int, int, np.ndarray]]] = {}


def _band_ranges(fb: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """(first bin, end bin, float64 weights) of each band's non-zero span."""
    key = id(fb)
    if key not in _BAND_CACHE:
        out = []
        for b in range(fb.shape[1]):
            nz = np.flatnonzero(fb[:, b])
            lo, hi = int(nz[0]), int(nz[-1]) + 1
            out.append((lo, hi, fb[lo:hi, b].astype(np.float64)))
        _BAND_CACHE[key] = out
    return _BAND_CACHE[key]


def _hann_symmetric(n: int) -> np.ndarray:
    return np.hanning(n)  # madmom's default window: symmetric, float64


def _msmd_filterbank(frame_size: int, sample_rate: int, bands_per_octave: int, fmin: float, fmax: float,
                     fref: float) -> np.ndarray:
    """madmom's LogarithmicFilterbank(norm_filters=True, unique_filters=True) on the first
    ``frame_size // 2`` FFT bins: (frame_size // 2, n_bands) float32."""
    key = (frame_size, sample_rate, bands_per_octave, fmin, fmax, fref)
    if key in _FB_CACHE:
        return _FB_CACHE[key]
    n_bins = frame_size // 2
    bin_freqs = np.fft.fftfreq(n_bins * 2, 1.0 / sample_rate)[:n_bins]
    # log-spaced frequencies between fmin and fmax, on the grid fref * 2**(k / bands_per_octave)
    left = np.floor(np.log2(float(fmin) / fref) * bands_per_octave)
    right = np.ceil(np.log2(float(fmax) / fref) * bands_per_octave)
    freqs = fref * 2.0 ** (np.arange(left, right) / float(bands_per_octave))
    freqs = freqs[np.searchsorted(freqs, fmin):]
    freqs = freqs[: np.searchsorted(freqs, fmax, "right")]
    # nearest FFT bin of each frequency (ties go to the upper bin), duplicates removed
    idx = np.clip(bin_freqs.searchsorted(freqs), 1, n_bins - 1)
    left_f, right_f = bin_freqs[idx - 1], bin_freqs[idx]
    idx = idx - (freqs - left_f < right_f - freqs)
    bins = np.unique(idx)
    if len(bins) < 3:
        raise PianonotesError("MSMD front end: fewer than 3 filterbank bins; check fmin/fmax")
    fb = np.zeros((n_bins, len(bins) - 2), np.float32)
    for band in range(len(bins) - 2):
        start, centre, stop = (int(b) for b in bins[band: band + 3])
        if stop - start < 2:  # too narrow for a triangle: a single bin
            centre, stop = start, start + 1
        rel_c, rel_s = centre - start, stop - start
        tri = np.zeros(rel_s)
        tri[:rel_c] = np.linspace(0, 1, rel_c, endpoint=False)
        tri[rel_c:] = np.linspace(1, 0, rel_s - rel_c, endpoint=False)
        tri /= tri.sum()
        lo, hi = max(start, 0), min(stop, n_bins)
        fb[lo:hi, band] = np.maximum(fb[lo:hi, band], tri[lo - start: hi - start])
    _FB_CACHE[key] = fb
    return fb
