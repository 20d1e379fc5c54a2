"""Spectrum matching: bring a recording's long-term spectrum (level and tilt) to the training audio's.

A piano recorded by a distant microphone in a room sounds darker and quieter than the renders AudioNet
learnt from (real-dev, a Disklavier in a room: about 2 dB per octave darker than the training audio's
average and 11 dB quieter, medians over its files). The network's input can be corrected for that
before it runs, causally, so that a live take and a file are treated the same way:

* the checkpoint stores ``input_match``: the training audio's mean band magnitude (``reference``, one
  value per front-end band, measured over augmented training windows by :func:`reference_spectrum`)
  and the limits below;
* at every frame the recording's mean band magnitude so far is compared with the reference: the log
  ratio over the bands from ``fmin`` to ``fmax`` Hz is fitted by a gain and a tilt (a straight line
  over octaves), each clipped to its limit, and scaled by t / (t + ``prior_seconds``) after t seconds
  (the first seconds, little evidence, are barely changed; after a minute 92 % of the fit applies);
* the frame's band magnitudes are multiplied by that gain and tilt and the features recomputed
  (features are ``log1p(gain * magnitude)``, so this is exact).

A smooth line over ten octaves follows the microphone and the room, not the notes played. Library
code only: no printing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from pianonotes.errors import PianonotesError


@dataclasses.dataclass(frozen=True)
class MatchSettings:
    reference: tuple[float, ...]  # the training audio's mean band magnitude, per band (front-end units)
    prior_seconds: float = 5.0  # the correction after t seconds is t / (t + prior_seconds) of the fit
    fmin: float = 60.0  # Hz: bands fitted
    fmax: float = 6000.0
    max_gain_db: float = 30.0
    max_tilt_db_per_octave: float = 6.0
    source: str = ""  # how the reference was measured, for the model card

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MatchSettings":
        try:
            ref = tuple(float(v) for v in d["reference"])
            s = cls(ref, float(d.get("prior_seconds", 5.0)), float(d.get("fmin", 60.0)), float(d.get("fmax", 6000.0)),
                    float(d.get("max_gain_db", 30.0)), float(d.get("max_tilt_db_per_octave", 6.0)),
                    str(d.get("source", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise PianonotesError(f"the checkpoint's input_match is malformed ({exc}); re-download the checkpoint "
                                  "or write it again with python -m devtools.input_match") from exc
        if not ref or min(ref) <= 0 or not np.all(np.isfinite(ref)):
            raise PianonotesError("the checkpoint's input_match reference must be positive numbers, one per band; "
                                  "write it again with python -m devtools.input_match")
        return s

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["reference"] = [float(f"{float(v):.6g}") for v in self.reference]
        return d


class SpectrumMatch:
    """The causal matcher of one recording, a :class:`pianonotes.streaming.Stream`: ``push(features) ->
    features`` block by block (a whole array at once gives the same frames), ``reset()`` between
    recordings."""

    def __init__(self, settings: MatchSettings, band_centres: np.ndarray, *, gain: float, fps: float):
        fc = np.asarray(band_centres, dtype=np.float64)
        if len(fc) != len(settings.reference):
            raise PianonotesError(f"the checkpoint's input_match has {len(settings.reference)} bands but its front "
                                  f"end {len(fc)}; write it again with python -m devtools.input_match")
        self.settings = settings
        self._gain = float(gain)  # the front end's log1p gain
        self._ref = np.asarray(settings.reference, dtype=np.float64)
        self._octaves = np.log2(fc / 1000.0)
        use = (fc >= settings.fmin) & (fc <= settings.fmax)
        if use.sum() < 2:
            raise PianonotesError(f"input_match fits bands from {settings.fmin:g} to {settings.fmax:g} Hz, and the front "
                                  "end has fewer than two there")
        self._use = use
        design = np.c_[np.ones(int(use.sum())), self._octaves[use]]
        self._fit = np.linalg.pinv(design)  # (2, bands used): log ratio -> (log gain, log gain per octave)
        self._log_ref = np.log(self._ref[use])
        self._prior = max(0.0, settings.prior_seconds) * fps
        self._max_gain = settings.max_gain_db / 20.0 * np.log(10.0)
        self._max_tilt = settings.max_tilt_db_per_octave / 20.0 * np.log(10.0)  # log gain per octave
        self.reset()

    def reset(self) -> None:
        self._sum = np.zeros_like(self._ref)
        self._count = 0.0
        self.last_gain_db = 0.0
        self.last_tilt_db_per_octave = 0.0

    def corrections(self, mags: np.ndarray) -> np.ndarray:
        """(T, 2) log gain and log gain per octave for (T, bands) magnitudes, advancing the state."""
        cum = self._sum + np.cumsum(mags, axis=0)
        count = self._count + np.arange(1, len(mags) + 1, dtype=np.float64)[:, None]
        if len(mags):
            self._sum = cum[-1].copy()
            self._count = float(count[-1, 0])
        mean = cum[:, self._use] / count
        ratio = self._log_ref[None, :] - np.log(np.maximum(mean, 1e-12))
        c = ratio @ self._fit.T
        c[:, 0] = np.clip(c[:, 0], -self._max_gain, self._max_gain)
        c[:, 1] = np.clip(c[:, 1], -self._max_tilt, self._max_tilt)
        c *= count / (count + self._prior)  # little evidence yet: a smaller correction
        if len(c):
            self.last_gain_db = float(c[-1, 0] * 20.0 / np.log(10.0))
            self.last_tilt_db_per_octave = float(c[-1, 1] * 20.0 / np.log(10.0))
        return c

    def push(self, feats: np.ndarray) -> np.ndarray:
        feats = np.asarray(feats)
        if len(feats) == 0:
            return feats.astype(np.float32)
        mags = np.expm1(feats.astype(np.float64)) / self._gain
        c = self.corrections(mags)
        scale = np.exp(c[:, :1] + c[:, 1:] * self._octaves[None, :])
        return np.log1p(self._gain * mags * scale).astype(np.float32)

    def flush(self) -> np.ndarray:
        """Nothing is held back (a frame's correction uses frames up to it only): no frames."""
        return np.zeros((0, len(self._ref)), np.float32)


def matcher(settings: MatchSettings | None, frontend) -> SpectrumMatch | None:
    """The matcher of a checkpoint's ``input_match`` (parsed when the checkpoint loads,
    :class:`pianonotes.inference.ModelConfig`) for its front end; None when it has none (older
    checkpoints, or a front end without log-frequency bands)."""
    if settings is None or not hasattr(frontend, "band_centres"):
        return None
    return SpectrumMatch(settings, frontend.band_centres(), gain=frontend.gain, fps=frontend.fps)


def reference_spectrum(audio_windows, frontend) -> np.ndarray:
    """The mean band magnitude (front-end units, before the log) over ``audio_windows`` (mono float
    arrays at the front end's rate): what the network saw in training when the windows are augmented
    training audio."""
    total, frames = None, 0
    for w in audio_windows:
        mags = np.expm1(frontend(np.asarray(w, np.float32)).astype(np.float64)) / frontend.gain
        total = mags.sum(axis=0) if total is None else total + mags.sum(axis=0)
        frames += len(mags)
    if total is None or frames == 0:
        raise PianonotesError("no audio to measure the reference spectrum on")
    return np.maximum(total / frames, 1e-9)
