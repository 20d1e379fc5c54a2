"""Generated piano textures so that every key from A0 to C8 is well covered.

Each generator returns key presses (onset, release, pitch, velocity) for about ``length`` seconds.
"""

from __future__ import annotations

import numpy as np

from pianonotes import constants
from pianonotes.notes import PedalEvent
from pianonotes.datasets.synth.performance import Performance

LO, HI = constants.MIN_PITCH, constants.MAX_PITCH


def _vel(rng, soft_loud: bool = False) -> int:
    if soft_loud and rng.random() < 0.5:
        return int(rng.integers(8, 30)) if rng.random() < 0.5 else int(rng.integers(110, 128))
    return int(np.clip(rng.normal(72, 22), 10, 127))


def random_chords(rng, length):
    out, t = [], 0.0
    while t < length:
        n = int(rng.integers(1, 11))
        pitches = rng.choice(np.arange(LO, HI + 1), size=n, replace=False)
        dur = float(rng.uniform(0.08, 1.2))
        v = _vel(rng, True)
        for p in pitches:
            out.append((t + rng.uniform(0, 0.015), t + dur, p, np.clip(v + rng.integers(-8, 9), 1, 127)))
        t += dur + float(rng.uniform(0.0, 0.4))
    return out, []


def scales_arpeggios(rng, length):
    out, t = [], 0.0
    while t < length:
        start = int(rng.integers(LO, HI - 24))
        steps = [2, 2, 1, 2, 2, 2, 1] if rng.random() < 0.5 else [4, 3, 5]  # major scale or arpeggio
        if rng.random() < 0.3:
            steps = [1]  # chromatic
        n = int(rng.integers(8, 30))
        dt = float(rng.uniform(0.06, 0.3))
        direction = 1 if rng.random() < 0.6 else -1
        p = start if direction == 1 else int(rng.integers(LO + 24, HI + 1))
        v = _vel(rng)
        for i in range(n):
            if not (LO <= p <= HI):
                break
            out.append((t, t + dt * float(rng.uniform(0.6, 1.6)), p, v))
            p += direction * steps[i % len(steps)]
            t += dt
        t += float(rng.uniform(0.1, 0.5))
    return out, []


def octaves_leaps(rng, length):
    out, t = [], 0.0
    while t < length:
        p = int(rng.integers(LO, HI + 1))
        dur = float(rng.uniform(0.1, 0.8))
        v = _vel(rng, True)
        if rng.random() < 0.5 and p + 12 <= HI:  # octave
            out += [(t, t + dur, p, v), (t, t + dur, p + 12, v)]
        else:  # wide leap: a far note right after
            q = int(np.clip(p + rng.choice([-1, 1]) * rng.integers(19, 60), LO, HI))
            out += [(t, t + dur, p, v), (t + dur * 0.5, t + dur * 1.5, q, v)]
        t += dur + float(rng.uniform(0.05, 0.3))
    return out, []


def repeats_trills(rng, length):
    out, t = [], 0.0
    while t < length:
        p = int(rng.integers(LO, HI))
        dt = float(rng.uniform(0.07, 0.25))
        n = int(rng.integers(4, 16))
        trill = rng.random() < 0.5
        q = min(HI, p + int(rng.integers(1, 3)))
        v = _vel(rng)
        for i in range(n):
            pitch = q if (trill and i % 2) else p
            out.append((t, t + dt * 0.8, pitch, int(np.clip(v + rng.integers(-10, 11), 1, 127))))
            t += dt
        t += float(rng.uniform(0.1, 0.4))
    return out, []


def clusters_extremes(rng, length):
    out, t = [], 0.0
    while t < length:
        if rng.random() < 0.5:  # cluster of adjacent keys
            w = int(rng.integers(2, 7))
            p = int(rng.integers(LO, HI - w + 1))
            pitches = range(p, p + w)
        else:  # extreme register
            pitches = rng.choice(
                np.r_[np.arange(LO, LO + 15), np.arange(HI - 14, HI + 1)], size=int(rng.integers(1, 4)), replace=False
            )
        dur = float(rng.uniform(0.15, 1.5))
        v = _vel(rng, True)
        for p in pitches:
            out.append((t, t + dur, int(p), v))
        t += dur + float(rng.uniform(0.05, 0.4))
    return out, []


def sustained_pedal(rng, length):
    out, pedals, t = [], [], 0.0
    while t < length:
        seg = float(rng.uniform(1.5, 5.0))
        pedals.append(PedalEvent(t + 0.02, t + seg))
        u = t
        while u < t + seg - 0.3:
            p = int(rng.integers(LO, HI + 1))
            out.append((u + 0.05, u + float(rng.uniform(0.1, 0.5)), p, _vel(rng)))  # released early, pedal holds
            u += float(rng.uniform(0.2, 0.9))
        if rng.random() < 0.5:  # a long held note without pedal after it
            p = int(rng.integers(LO, HI + 1))
            out.append((t + seg + 0.1, t + seg + float(rng.uniform(1.5, 4.0)), p, _vel(rng)))
            seg += 4.2
        t += seg + 0.2
    return out, pedals


GENERATORS = {
    "chords": random_chords,
    "scales": scales_arpeggios,
    "octaves_leaps": octaves_leaps,
    "repeats_trills": repeats_trills,
    "clusters_extremes": clusters_extremes,
    "sustain": sustained_pedal,
}


def generate(rng: np.random.Generator, length: float, kind: str | None = None) -> tuple[Performance, str]:
    """A generated texture of about ``length`` seconds (kind chosen at random when not given)."""
    kind = kind or str(rng.choice(list(GENERATORS)))
    keys, pedals = GENERATORS[kind](rng, length)
    arr = np.array([[a, b, p, v] for a, b, p, v in keys], dtype=np.float64).reshape(-1, 4)
    arr = arr[arr[:, 0] < length]
    arr[:, 1] = np.minimum(arr[:, 1], length)
    arr = arr[arr[:, 1] > arr[:, 0] + 0.02]
    pedals = [PedalEvent(p.start, min(p.end, length)) for p in pedals if p.start < length]
    return Performance(arr, pedals, length), kind
