"""A performance: key presses (onset, key release, pitch, velocity) plus sustain-pedal intervals."""

from __future__ import annotations

import dataclasses

import numpy as np

from pianonotes import constants
from pianonotes.notes import Note, PedalEvent, apply_sustain


@dataclasses.dataclass
class Performance:
    keys: np.ndarray  # (n, 4) float64: onset s, key release s, pitch, velocity
    pedals: list[PedalEvent]
    duration: float  # seconds

    @staticmethod
    def from_notes(notes: list[Note], pedals: list[PedalEvent], duration: float | None = None) -> "Performance":
        keys = np.array([[n.onset, n.release, n.pitch, n.velocity] for n in notes], dtype=np.float64)
        keys = keys.reshape(-1, 4)
        dur = duration if duration is not None else float(max([n.offset for n in notes], default=0.0))
        return Performance(keys, list(pedals), dur)

    def sounding_notes(self) -> list[Note]:
        """The labels: offsets extended by the pedal, exactly as a synthesizer sounds them."""
        tuples = [(float(a), float(b), int(p), int(v)) for a, b, p, v in self.keys]
        return apply_sustain(tuples, self.pedals)

    def excerpt(self, start: float, length: float) -> "Performance":
        k = self.keys
        sel = (k[:, 0] >= start) & (k[:, 0] < start + length)
        keys = k[sel].copy()
        keys[:, :2] -= start
        keys[:, 1] = np.minimum(keys[:, 1], length)
        keys = keys[keys[:, 1] > keys[:, 0] + 0.01]
        pedals = [
            PedalEvent(max(p.start, start) - start, min(p.end, start + length) - start)
            for p in self.pedals
            if p.end > start and p.start < start + length
        ]
        return Performance(keys, [p for p in pedals if p.end > p.start], length)

    def varied(self, rng: np.random.Generator, *, tempo: tuple[float, float], transpose: int,
               velocity_scale: tuple[float, float], velocity_jitter: float) -> tuple["Performance", dict]:
        """Tempo scaling, transposition (keeping notes on the keyboard) and velocity variation."""
        ratio = float(rng.uniform(*tempo))
        shift = int(rng.integers(-transpose, transpose + 1)) if transpose else 0
        k = self.keys.copy()
        if len(k):
            lo, hi = k[:, 2].min(), k[:, 2].max()
            shift = int(np.clip(shift, constants.MIN_PITCH - lo, constants.MAX_PITCH - hi)) if hi - lo <= 87 else 0
        k[:, :2] /= ratio
        k[:, 2] += shift
        scale = float(rng.uniform(*velocity_scale))
        k[:, 3] = np.clip(np.round(k[:, 3] * scale + rng.normal(0, velocity_jitter, len(k))), 1, 127)
        k = k[(k[:, 2] >= constants.MIN_PITCH) & (k[:, 2] <= constants.MAX_PITCH)]
        pedals = [PedalEvent(p.start / ratio, p.end / ratio) for p in self.pedals]
        info = {"tempo_ratio": round(ratio, 4), "transpose": shift, "velocity_scale": round(scale, 3)}
        return Performance(k, pedals, self.duration / ratio), info
