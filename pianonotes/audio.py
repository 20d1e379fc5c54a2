"""Audio input and output: decode with soundfile, resample with scipy's polyphase filter."""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from pianonotes.errors import PianonotesError

SUPPORTED = "WAV, FLAC, OGG/Vorbis, AIFF and (with libsndfile >= 1.1) MP3"


def audio_info(path: str | os.PathLike) -> tuple[int, int, float]:
    """(sample_rate, channels, seconds) of an audio file, without decoding it."""
    import soundfile as sf

    path = _check_path(path)
    try:
        info = sf.info(os.fspath(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
        raise _decode_error(path, exc) from exc
    return _check_rate(path, info.samplerate), info.channels, info.frames / max(info.samplerate, 1)


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise PianonotesError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise PianonotesError(f"{path} is a folder, not an audio file")
    if not path.is_file():
        raise PianonotesError(f"{path} is not a regular file (a pipe or a device); save the audio to a file first")
    if path.stat().st_size == 0:
        raise PianonotesError(f"{path} is empty (0 bytes); record or export the audio again")
    return path


def _decode_error(path: Path, exc: Exception) -> PianonotesError:
    return PianonotesError(
        f"{path}: cannot decode audio ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
        f"supported formats: {SUPPORTED}"
    )


MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768_000  # Hz; outside this a header is broken, not audio


def _check_rate(path: Path, sr: int) -> int:
    """Refuse a sample rate no recording has before resampling to it would need unbounded memory."""
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise PianonotesError(f"{path}: its header claims a sample rate of {sr} Hz (expected "
                              f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz); the file is damaged, export it again")
    return sr


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample float audio (samples along the first axis) with scipy.signal.resample_poly."""
    if orig_sr == target_sr:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(int(target_sr), int(orig_sr)).limit_denominator(1000)
    return resample_poly(audio, ratio.numerator, ratio.denominator, axis=0).astype(np.float32)


class StreamResampler:
    """Polyphase resampling of a stream in blocks (a :class:`pianonotes.streaming.Stream`).

    ``push(x)``: (n,) float32 samples at ``orig_sr`` Hz; returns the (m,) float32 samples at ``target_sr``
    Hz whose filter support has fully arrived. ``flush()`` returns the rest (the input zero-padded at the
    end), so the concatenation equals ``scipy.signal.resample_poly`` of the whole stream (the ratio
    reduced as :func:`resample` does): ``ceil(n * up / down)`` samples in all. Memory: the filter's
    context (about ``10 * max(up, down) / up`` input samples), not the stream's length.
    """

    def __init__(self, orig_sr: int, target_sr: int):
        ratio = Fraction(int(target_sr), int(orig_sr)).limit_denominator(1000)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.identity = self.up == self.down
        half = 10 * max(self.up, self.down)  # resample_poly's default filter half-length (upsampled)
        self.pad = -(-half // self.up) + 2  # input samples of context either side
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float32)
        self._start = 0  # global input index of _buf[0] (a multiple of `down`)
        self._out = 0  # global output samples emitted

    def push(self, x: np.ndarray) -> np.ndarray:
        if self.identity:
            return np.asarray(x, np.float32).reshape(-1)
        self._buf = np.concatenate([self._buf, np.asarray(x, np.float32).reshape(-1)])
        end_in = self._start + len(self._buf) - self.pad  # inputs with full right context
        return self._emit(max(0, end_in * self.up // self.down))  # outputs computable exactly

    def flush(self) -> np.ndarray:
        if self.identity:
            return np.zeros(0, np.float32)
        n_in = self._start + len(self._buf)
        return self._emit(-(-n_in * self.up // self.down))

    def _emit(self, last_out: int) -> np.ndarray:
        if last_out <= self._out:
            return np.zeros(0, np.float32)
        from scipy.signal import resample_poly

        res = resample_poly(self._buf, self.up, self.down).astype(np.float32)
        first = self._out - self._start * self.up // self.down
        y = res[first: first + (last_out - self._out)]
        self._out += len(y)
        # keep `pad` inputs of left context before the next output, aligned to `down`
        keep_from = max(0, (self._out * self.down // self.up) - self.pad)
        keep_from -= keep_from % self.down
        if keep_from > self._start:
            self._buf = self._buf[keep_from - self._start:]
            self._start = keep_from
        return y


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels: (n,) or (n, channels) to (n,) float32."""
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return np.ascontiguousarray(audio, dtype=np.float32)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    *,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Load an audio file as mono float32 at ``sample_rate`` Hz.

    Parameters
    ----------
    path : audio file (WAV, FLAC, OGG, AIFF, MP3 where libsndfile supports it), any rate and channels.
    sample_rate : target rate in Hz.
    start, end : optional excerpt in seconds.

    Returns
    -------
    np.ndarray, shape (n,), float32, nominally in [-1, 1].

    Raises
    ------
    PianonotesError for a missing, empty, truncated, non-audio or non-finite file.
    """
    import soundfile as sf

    path = _check_path(path)
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            sr = _check_rate(path, f.samplerate)
            first = 0 if start is None else max(0, int(round(start * sr)))
            last = f.frames if end is None else min(f.frames, int(round(end * sr)))
            if first:
                f.seek(min(first, f.frames))
            data = f.read(max(0, last - first), dtype="float32", always_2d=True)
    except PianonotesError:
        raise
    except Exception as exc:
        raise _decode_error(path, exc) from exc
    if data.size == 0 and (start is None or start == 0):
        raise PianonotesError(f"{path} holds no audio samples; record or export it again")
    if not np.all(np.isfinite(data)):
        raise PianonotesError(f"{path} contains NaN or infinite samples; re-export the audio")
    return resample(to_mono(data), sr, sample_rate)


def iter_audio_blocks(
    path: str | os.PathLike, sample_rate: int, block_seconds: float = 30.0
):
    """Yield mono float32 blocks at ``sample_rate`` from a file of any length, with bounded memory.

    Each block is decoded and resampled with enough context on both sides that the concatenation equals
    resampling the whole file (up to filter edge effects far below audibility).
    """
    import soundfile as sf

    path = _check_path(path)
    try:
        f = sf.SoundFile(os.fspath(path))
    except Exception as exc:
        raise _decode_error(path, exc) from exc
    with f:
        sr = _check_rate(path, f.samplerate)
        if f.frames == 0:
            raise PianonotesError(f"{path} holds no audio samples; record or export it again")
        ratio = Fraction(int(sample_rate), int(sr)).limit_denominator(1000)
        up, down = ratio.numerator, ratio.denominator
        # Blocks are whole multiples of `down` input samples so output boundaries are exact.
        block_in = max(down, int(block_seconds * sr) // down * down)
        pad = 0 if up == down else 10 * max(up, down) // math.gcd(up, down) * down
        pos = 0
        while pos < f.frames:
            lo = max(0, pos - pad)
            hi = min(f.frames, pos + block_in + pad)
            f.seek(lo)
            try:
                data = f.read(hi - lo, dtype="float32", always_2d=True)
            except Exception as exc:
                raise _decode_error(path, exc) from exc
            if not np.all(np.isfinite(data)):
                raise PianonotesError(f"{path} contains NaN or infinite samples; re-export the audio")
            mono = to_mono(data)
            if up == down:
                out = mono[pos - lo: pos - lo + block_in]
            else:
                from scipy.signal import resample_poly  # a slow import (1.6 s on a loaded 2-core machine): only when resampling

                res = resample_poly(mono, up, down).astype(np.float32)
                a = (pos - lo) * up // down
                n_out = (min(block_in, f.frames - pos) * up + down - 1) // down
                out = res[a: a + n_out]
            yield out
            pos += block_in


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, **kwargs) -> None:
    """Write audio atomically; the format follows the extension (.wav, .flac, .ogg)."""
    import soundfile as sf

    from pianonotes.fileio import atomic_path

    with atomic_path(path) as tmp:
        sf.write(os.fspath(tmp), audio, sample_rate, **kwargs)
