"""Real acoustics for training audio, drawn afresh for every training window.

The dataset shards hold the dry render; :func:`augment_window` turns a window of it into what a
microphone in a room would have recorded, from a seeded generator (the same seed gives the same audio,
so a resumed training sees the same next batch):

1. global detune up to +-30 cents (a piano tuned off A440); the caller maps the labels' times by the
   same ratio, pitches stay (a detuned A4 is still A4);
2. (optional, ``resonance_p``) sympathetic string resonance: the window convolved with the ringing of
   every undamped string (88 keys, two or three strings each, inharmonic partials up to 7.5 kHz, decaying
   over 0.3-1.5 s, detuned with the window) and mixed in 12-30 dB down: the energy a real piano's open strings
   add at the partials of what is played (under the pedal, and always above the dampers), which the
   samplers lack and which sits exactly where the network's octave-above ghosts are;
3. a room: one of a bank of impulse responses simulated with pyroomacoustics (hybrid image source +
   ray tracing, so the tails are real; rooms from a practice room to a hall, RT60 0.2-2 s, microphone
   0.3-8 m from the piano), built once with :func:`build_room_bank`;
4. microphone and EQ colouring (pedalboard's peak and shelf filters, 30 Hz-7.5 kHz), band limits;
5. compression (pedalboard's compressor);
6. recorded-like noise: white, pink or brown hiss, mains hum with harmonics, room tone;
7. gain, and sometimes clipping;
8. a lossy round trip (MP3 through pedalboard's LAME encoder) and sample-rate round trips.

pedalboard (Spotify, GPL-3, C++ with JUCE) was chosen for filters, compression and MP3 because it is fast
(~5 ms for a 6 s window), well kept, and does each of them correctly; hand-written DSP stays for the
noise and the detune, which are a few lines of numpy.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Callable

import numpy as np

from pianonotes import constants
from pianonotes.errors import PianonotesError


@dataclasses.dataclass(frozen=True)
class OnlineAugment:
    """Probabilities and ranges of the online chain (see the module docstring)."""

    detune_p: float = 0.5
    detune_cents: float = 30.0
    room_p: float = 0.85
    eq_p: float = 0.7
    compress_p: float = 0.25
    noise_p: float = 0.7
    noise_snr_db: tuple[float, float] = (12.0, 50.0)
    hum_p: float = 0.15
    gain_db: tuple[float, float] = (-30.0, 4.0)
    clip_p: float = 0.05
    lossy_p: float = 0.15
    resample_p: float = 0.15
    resample_rates: tuple[int, ...] = (8000, 11025, 22050, 44100)
    pre_seconds: float = 1.0  # audio before the window that the room's tail and filters see
    resonance_p: float = 0.0  # sympathetic string resonance (step 2; 0: off, as in the runs before it)
    resonance_db: tuple[float, float] = (-30.0, -12.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


NO_ONLINE_AUGMENT = OnlineAugment(detune_p=0, room_p=0, eq_p=0, compress_p=0, noise_p=0, hum_p=0, gain_db=(0, 0),
                                  clip_p=0, lossy_p=0, resample_p=0)


# ------------------------------------------------------------------------------------------ rooms
def room_bank_path(root: str | os.PathLike | None = None) -> Path:
    from pianonotes.fileio import cache_dir

    return (Path(root) if root else cache_dir()) / f"rooms-{constants.SAMPLE_RATE // 1000}k.npz"


def simulate_room(rng: np.random.Generator, sample_rate: int = constants.SAMPLE_RATE, max_seconds: float = 2.5) -> tuple[np.ndarray, dict]:
    """One simulated room's impulse response (peak-normalised float32) and its description."""
    import pyroomacoustics as pra

    kind = rng.choice(["practice", "living", "studio", "hall"], p=[0.3, 0.3, 0.2, 0.2])
    lo, hi = {"practice": ([2.5, 2.5, 2.3], [5, 5, 3]), "living": ([4, 4, 2.4], [9, 8, 3.5]),
              "studio": ([6, 5, 3], [14, 10, 6]), "hall": ([14, 10, 6], [35, 25, 14])}[kind]
    dims = rng.uniform(lo, hi)
    rt60 = float(rng.uniform(*{"practice": (0.2, 0.6), "living": (0.3, 0.9), "studio": (0.3, 1.2),
                               "hall": (1.0, 2.0)}[kind]))
    try:
        absorption, order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # an RT60 too short for the room: the most absorbent walls
        absorption, order = 0.99, 2
    import warnings

    with warnings.catch_warnings():  # its default ray count warns before set_ray_tracing lowers it
        warnings.simplefilter("ignore")
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(float(min(absorption, 0.99))),
                           max_order=int(min(order, 3)), ray_tracing=True, air_absorption=True)
    room.set_ray_tracing(receiver_radius=0.5, n_rays=2000, energy_thres=1e-5)
    src = rng.uniform([0.7, 0.7, 0.8], dims - [0.7, 0.7, 1.0])
    dist = float(rng.uniform(0.3, min(8.0, 0.45 * float(np.min(dims[:2])) + 0.3)))
    direction = rng.normal(size=3)
    direction[2] *= 0.2
    direction /= np.linalg.norm(direction)
    mic = np.clip(src + direction * dist, 0.3, dims - 0.3)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    h = np.asarray(room.rir[0][0], np.float64)
    first = int(np.argmax(np.abs(h) > 0.1 * np.abs(h).max()))
    h = h[max(0, first - 16): max(0, first - 16) + int(max_seconds * sample_rate)]  # no pre-delay beyond the direct path
    h /= np.abs(h).max() + 1e-12
    info = {"kind": str(kind), "dims_m": [round(float(v), 2) for v in dims], "rt60": round(rt60, 3),
            "mic_distance_m": round(float(np.linalg.norm(mic - src)), 2)}
    return h.astype(np.float32), info


def build_room_bank(n: int = 300, *, seed: int = 0, path: str | os.PathLike | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Simulate ``n`` rooms and store their impulse responses (resumes nothing: about 1 min per 100)."""
    import json

    from pianonotes.fileio import write_bytes_atomic

    if not 1 <= n <= 5000:
        raise PianonotesError(f"--rooms {n}: choose between 1 and 5000 rooms")
    path = Path(path) if path else room_bank_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 2024])
    arrays, infos = {}, []
    for i in range(n):
        h, info = simulate_room(rng)
        arrays[f"ir_{i}"] = h
        infos.append(info)
        if on_progress:
            on_progress(i + 1, n)
    arrays["info"] = np.frombuffer(json.dumps(infos).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())
    return path


def load_room_bank(path: str | os.PathLike | None = None) -> list[np.ndarray]:
    path = Path(path) if path else room_bank_path()
    if not path.exists():
        raise PianonotesError(f"no room bank at {path}; make one with `pianonotes data rooms`")
    try:
        with np.load(path, allow_pickle=False) as z:
            irs = [z[k] for k in sorted((k for k in z.files if k.startswith("ir_")), key=lambda k: int(k[3:]))]
    except (OSError, ValueError) as exc:
        raise PianonotesError(f"the room bank {path} is damaged ({exc}); delete it and run `pianonotes data rooms`") from exc
    if not irs:
        raise PianonotesError(f"the room bank {path} holds no rooms; run `pianonotes data rooms` again")
    return irs


# ------------------------------------------------------------------------------------------ noise
def _coloured_noise(rng: np.random.Generator, n: int, sample_rate: int, hum_p: float) -> tuple[np.ndarray, str]:
    from scipy import signal

    kind = str(rng.choice(["white", "pink", "brown", "roomtone"]))
    white = rng.standard_normal(n)
    if kind == "white":
        x = white
    elif kind == "pink":
        x = signal.lfilter([0.049922, -0.095993, 0.050612, -0.004408], [1, -2.494956, 2.017265, -0.522189], white)
    elif kind == "brown":
        x = signal.lfilter([1.0], [1.0, -0.995], white)
    else:  # room tone: rumble and air, low-passed
        x = signal.sosfilt(signal.butter(2, 300 / (sample_rate / 2), output="sos"), white)
    x = x / (np.std(x) + 1e-12)
    if rng.random() < hum_p:
        f0 = float(rng.choice([50.0, 60.0]))
        t = np.arange(n) / sample_rate
        hum = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) for k in range(1, 6))
        x = x + hum * rng.uniform(0.5, 3.0)
        kind += "+hum"
    return x, kind


# ------------------------------------------------------------------------------------- resonance
RESONANCE_BANK_SIZE = 6
_RESONANCE: dict[int, list[np.ndarray]] = {}


def string_resonance_ir(rng: np.random.Generator, sample_rate: int = constants.SAMPLE_RATE,
                        seconds: float = 1.5) -> np.ndarray:
    """The impulse response of a piano's undamped strings (float32, peak 1): per key A0-C8 two or three
    strings a few cents apart, each a sum of decaying sinusoids at its inharmonic partials (f * m *
    sqrt(1 + B m^2), B rising from 1e-4 in the bass to 1e-3 in the treble) up to 7.5 kHz with amplitude 1/m,
    decaying over 1.5 s (bass) to 0.3 s (treble), random phases."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    h = np.zeros(len(t))
    top = min(7500.0, 0.45 * sample_rate)  # highest partial: 7.5 kHz, below the Nyquist frequency
    m_all = np.arange(1, 41)
    for key in range(constants.MIN_PITCH, constants.MIN_PITCH + constants.N_KEYS):
        pos = (key - constants.MIN_PITCH) / (constants.N_KEYS - 1)
        f0 = 440.0 * 2.0 ** ((key - 69) / 12)
        B = 1e-4 * 10.0 ** pos
        tau = float(np.exp(np.log(1.5) + pos * (np.log(0.3) - np.log(1.5)))) * float(rng.uniform(0.7, 1.3))
        env = np.exp(-t / tau)
        for _ in range(3 if key >= 41 else 2):
            f = f0 * 2.0 ** (float(rng.uniform(-3.0, 3.0)) / 1200)
            fm = f * m_all * np.sqrt(1.0 + B * m_all ** 2)
            keep = fm < top
            m, fm = m_all[keep], fm[keep]
            if not len(m):
                continue
            phases = rng.uniform(0, 2 * np.pi, len(m))
            h += env * (np.sin(2 * np.pi * fm[:, None] * t[None] + phases[:, None]) / m[:, None]).sum(0)
    h /= np.abs(h).max() + 1e-12
    return h.astype(np.float32)


def _resonance_bank(sample_rate: int) -> list[np.ndarray]:
    """A few string-resonance impulse responses, made once per process from a fixed seed."""
    if sample_rate not in _RESONANCE:
        rng = np.random.default_rng([sample_rate, 88])
        _RESONANCE[sample_rate] = [string_resonance_ir(rng, sample_rate) for _ in range(RESONANCE_BANK_SIZE)]
    return _RESONANCE[sample_rate]


# ------------------------------------------------------------------------------------------ chain
def detune_ratio(rng: np.random.Generator, cfg: OnlineAugment) -> float:
    """Playback-rate ratio of a global detune (1.0: none)."""
    if rng.random() < cfg.detune_p:
        return float(2.0 ** (rng.uniform(-cfg.detune_cents, cfg.detune_cents) / 1200.0))
    return 1.0


def augment_window(x: np.ndarray, rng: np.random.Generator, cfg: OnlineAugment, rooms: list[np.ndarray] | None,
                   sample_rate: int = constants.SAMPLE_RATE, *, detune: float = 1.0) -> tuple[np.ndarray, dict]:
    """Apply the chain (steps 2-8 of the module docstring) to a mono float window; same length out.
    ``detune``: the playback-rate ratio the window was read at (:func:`detune_ratio`), so the resonating
    strings are tuned like the played ones."""
    import pedalboard as pb
    from scipy import signal

    y = np.asarray(x, np.float64)
    n = len(y)
    info: dict = {}
    if cfg.resonance_p > 0 and rng.random() < cfg.resonance_p:  # no draw when off: older runs replay exactly
        bank = _resonance_bank(sample_rate)
        k = int(rng.integers(len(bank)))
        ir = bank[k] if detune == 1.0 else detuned(bank[k], 0.0, len(bank[k]), detune)
        wet = signal.oaconvolve(y, ir.astype(np.float64))[:n]
        rms_dry, rms_wet = float(np.sqrt(np.mean(y ** 2))), float(np.sqrt(np.mean(wet ** 2)))
        if rms_wet > 1e-9 and rms_dry > 1e-9:
            db = float(rng.uniform(*cfg.resonance_db))
            y = y + wet * (rms_dry / rms_wet) * 10 ** (db / 20)
            info["resonance"] = [k, round(db, 1)]
    if rooms and rng.random() < cfg.room_p:
        k = int(rng.integers(len(rooms)))
        y = signal.oaconvolve(y, rooms[k].astype(np.float64))[:n]
        info["room"] = k
    effects = []
    if rng.random() < cfg.eq_p:
        for _ in range(int(rng.integers(1, 5))):
            f = float(np.exp(rng.uniform(np.log(30.0), np.log(7500.0))))
            effects.append(pb.PeakFilter(f, float(rng.uniform(-10, 10)), float(rng.uniform(0.4, 3.0))))
        if rng.random() < 0.5:
            effects.append(pb.LowShelfFilter(float(rng.uniform(80, 400)), float(rng.uniform(-8, 8))))
        if rng.random() < 0.5:
            effects.append(pb.HighShelfFilter(float(rng.uniform(2000, 6000)), float(rng.uniform(-12, 6))))
        if rng.random() < 0.3:
            effects.append(pb.HighpassFilter(float(rng.uniform(30, 150))))
        if rng.random() < 0.3:
            effects.append(pb.LowpassFilter(float(rng.uniform(2500, 7500))))
        info["eq_bands"] = len(effects)
    if rng.random() < cfg.compress_p:
        effects.append(pb.Compressor(float(rng.uniform(-35, -10)), float(rng.uniform(1.5, 8)),
                                     float(rng.uniform(1, 30)), float(rng.uniform(50, 400))))
        info["compressed"] = True
    level = cfg.gain_db != (0, 0)  # the chain sets the level; without a gain range the level is kept
    peak = float(np.max(np.abs(y))) + 1e-9
    if level:
        y = y / peak * 0.5
    if effects:
        y = pb.Pedalboard(effects)(y.astype(np.float32)[None], sample_rate)[0].astype(np.float64)
    if rng.random() < cfg.noise_p:
        snr = float(rng.uniform(*cfg.noise_snr_db))
        nz, kind = _coloured_noise(rng, n, sample_rate, cfg.hum_p)
        p_sig = float(np.mean(y ** 2)) + 1e-10
        y = y + nz * np.sqrt(p_sig / 10 ** (snr / 10))
        info["noise"] = [kind, round(snr, 1)]
    if level:
        peak = float(np.max(np.abs(y))) + 1e-9
        y = y / peak * 0.9 * 10 ** (rng.uniform(*cfg.gain_db) / 20)
    if rng.random() < cfg.clip_p:
        y = y * float(rng.uniform(1.2, 3.0))
        info["clipped"] = True
    y = np.clip(y, -1.0, 1.0)
    if rng.random() < cfg.lossy_p:
        y = pb.Pedalboard([pb.MP3Compressor(float(rng.uniform(2, 9)))])(y.astype(np.float32)[None], sample_rate)[0]
        y = np.asarray(y, np.float64)[:n]
        y = np.pad(y, (0, n - len(y)))
        info["mp3"] = True
    if rng.random() < cfg.resample_p:
        from pianonotes.audio import resample

        rate = int(rng.choice(cfg.resample_rates))
        z = resample(resample(y.astype(np.float32), sample_rate, rate), rate, sample_rate)
        y = np.pad(z, (0, max(0, n - len(z))))[:n]
        info["resample_via"] = rate
    return np.clip(np.asarray(y, np.float32), -1.0, 1.0), info  # codecs and resamplers overshoot a little


def detuned(audio: np.ndarray, start: float, n: int, ratio: float) -> np.ndarray:
    """``n`` output samples read from ``audio`` at positions start + k * ratio (linear interpolation,
    zeros outside the recording). ``audio`` may be int16 (full scale 32768) or float."""
    pos = start + np.arange(n) * ratio
    lo = int(np.floor(pos[0])) - 1
    hi = int(np.ceil(pos[-1])) + 2
    seg = np.zeros(hi - lo, np.float32)
    a, b = max(lo, 0), min(hi, len(audio))
    if b > a:
        seg[a - lo: b - lo] = audio[a:b]
    if audio.dtype == np.int16:
        seg /= 32768.0
    if ratio == 1.0 and float(start).is_integer():
        off = int(start) - lo
        return seg[off: off + n]
    return np.interp(pos - lo, np.arange(len(seg)), seg).astype(np.float32)
