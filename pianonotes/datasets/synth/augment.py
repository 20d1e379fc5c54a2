"""Audio augmentation: gain, room reverb, microphone/EQ colouring, background noise, band-limiting,
sample-rate variation. Each is applied with a probability and a parameter drawn from a range."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    gain_p: float = 1.0
    gain_db: tuple[float, float] = (-18.0, 3.0)
    reverb_p: float = 0.5
    reverb_rt60: tuple[float, float] = (0.2, 1.6)  # s
    reverb_wet: tuple[float, float] = (0.1, 0.5)
    eq_p: float = 0.5
    eq_gain_db: tuple[float, float] = (-9.0, 9.0)
    noise_p: float = 0.5
    noise_snr_db: tuple[float, float] = (15.0, 50.0)
    lowpass_p: float = 0.25
    lowpass_hz: tuple[float, float] = (3000.0, 7500.0)
    highpass_p: float = 0.2
    highpass_hz: tuple[float, float] = (30.0, 120.0)
    resample_p: float = 0.2
    resample_rates: tuple[int, ...] = (11025, 22050, 44100, 48000)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


NO_AUGMENT = AugmentConfig(gain_p=0, reverb_p=0, eq_p=0, noise_p=0, lowpass_p=0, highpass_p=0, resample_p=0)


def synthetic_ir(rng: np.random.Generator, sr: int, rt60: float) -> np.ndarray:
    """Exponentially decaying filtered noise with a few early reflections: a generated room."""
    n = int(sr * min(rt60 * 1.2, 2.0))
    t = np.arange(n) / sr
    decay = np.exp(-6.9 * t / rt60)
    tail = rng.standard_normal(n) * decay
    b, a = signal.butter(1, float(rng.uniform(2000, 7000)) / (sr / 2))
    tail = signal.lfilter(b, a, tail)
    ir = np.zeros(n)
    ir[0] = 1.0
    for _ in range(int(rng.integers(2, 7))):
        ir[int(rng.uniform(0.003, 0.05) * sr)] += float(rng.uniform(-0.5, 0.5))
    ir += tail * 0.5 / np.sqrt(np.sum(tail ** 2) + 1e-12)
    return ir


def _peaking(sr: int, f0: float, gain_db: float, q: float):
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * f0 / sr
    alpha = np.sin(w0) / (2 * q)
    b = [1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a]
    return np.array(b) / den[0], np.array(den) / den[0]


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    white = rng.standard_normal(n)
    kind = rng.integers(0, 3)
    if kind == 0:
        return white
    if kind == 1:  # pink-ish
        return signal.lfilter([0.049922, -0.095993, 0.050612, -0.004408], [1, -2.494956, 2.017265, -0.522189], white)
    return signal.lfilter([1.0], [1.0, -0.995], white)  # brown-ish


def augment(audio: np.ndarray, sr: int, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, dict]:
    """Apply the augmentation chain; returns the audio (float32, peak <= 1) and what was applied."""
    x = audio.astype(np.float64)
    applied: dict = {}
    if rng.random() < cfg.reverb_p:
        rt = float(rng.uniform(*cfg.reverb_rt60))
        wet = float(rng.uniform(*cfg.reverb_wet))
        ir = synthetic_ir(rng, sr, rt)
        rev = signal.fftconvolve(x, ir)[: len(x)]
        x = (1 - wet) * x + wet * rev
        applied["reverb"] = {"rt60": round(rt, 3), "wet": round(wet, 3)}
    if rng.random() < cfg.eq_p:
        bands = []
        for _ in range(int(rng.integers(1, 4))):
            f0 = float(np.exp(rng.uniform(np.log(80), np.log(6000))))
            g = float(rng.uniform(*cfg.eq_gain_db))
            q = float(rng.uniform(0.5, 2.5))
            b, a = _peaking(sr, f0, g, q)
            x = signal.lfilter(b, a, x)
            bands.append([round(f0, 1), round(g, 2), round(q, 2)])
        applied["eq"] = bands
    if rng.random() < cfg.highpass_p:
        f = float(rng.uniform(*cfg.highpass_hz))
        x = signal.sosfilt(signal.butter(2, f / (sr / 2), "high", output="sos"), x)
        applied["highpass_hz"] = round(f, 1)
    if rng.random() < cfg.lowpass_p:
        f = min(float(rng.uniform(*cfg.lowpass_hz)), sr / 2 * 0.95)
        x = signal.sosfilt(signal.butter(4, f / (sr / 2), output="sos"), x)
        applied["lowpass_hz"] = round(f, 1)
    if rng.random() < cfg.resample_p:
        from pianonotes.audio import resample

        rate = int(rng.choice(cfg.resample_rates))
        y = resample(resample(x.astype(np.float32), sr, rate), rate, sr).astype(np.float64)
        x = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
        applied["resample_via"] = rate
    if rng.random() < cfg.noise_p:
        snr = float(rng.uniform(*cfg.noise_snr_db))
        nz = _noise(rng, len(x))
        p_sig = np.mean(x ** 2) + 1e-12
        p_n = np.mean(nz ** 2) + 1e-12
        x = x + nz * np.sqrt(p_sig / p_n / 10 ** (snr / 10))
        applied["noise_snr_db"] = round(snr, 2)
    peak = np.max(np.abs(x)) + 1e-9
    x = x / peak * 0.9  # normalise, then gain
    if rng.random() < cfg.gain_p:
        g = float(rng.uniform(*cfg.gain_db))
        x = x * 10 ** (g / 20)
        applied["gain_db"] = round(g, 2)
    x = np.clip(x, -1.0, 1.0)
    return x.astype(np.float32), applied
