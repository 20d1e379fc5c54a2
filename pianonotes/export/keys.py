"""Key estimation without music21: a duration-weighted pitch-class histogram correlated with four
published key profiles.

For each of the 24 keys and each profile (Krumhansl-Kessler, Aarden-Essen, Temperley-Kostka-Payne,
Bellman-Budge, the tables at https://extras.humdrum.org/man/keycor/), the Pearson correlation of the
histogram with the profile rotated to that tonic; the key with the highest sum over the four
profiles wins (one profile alone errs more often: Aarden-Essen reads a D-minor scale with C# as G
minor). This is what music21's ``analyze("krumhansl")`` ... ``analyze("bellman")`` compute, summed;
the arithmetic follows music21's order of operations (histogram in quarter lengths as music21 stores
them, correlations accumulated pitch class by pitch class), so that even near ties come out the same
and a score's key does not change with the implementation. Ties go to the key whose music21 name
sorts last, as before.

:class:`Key` is the light value a :class:`~pianonotes.export.score.ScorePlan` carries (tonic pitch
class, mode, key signature); :meth:`Key.to_music21` converts it when a score is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:  # numpy is imported where it is used, so importing pianonotes.export stays cheap
    import numpy as np

MODES = ("major", "minor")

# Key profiles, tonic first (music21.analysis.discrete; humdrum keycor).
PROFILES: dict[str, dict[str, tuple[float, ...]]] = {
    "krumhansl": {
        "major": (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
        "minor": (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
    },
    "aarden": {
        "major": (17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624,
                  8.15494, 0.232998, 4.95122),
        "minor": (18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621,
                  1.93186, 7.37619, 1.75623),
    },
    "temperley": {
        "major": (0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400),
        "minor": (0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330),
    },
    "bellman": {
        "major": (16.80, 0.86, 12.95, 1.41, 13.49, 11.93, 1.25, 20.28, 1.80, 8.04, 0.62, 10.57),
        "minor": (18.16, 0.69, 12.99, 13.34, 1.07, 11.15, 1.38, 21.07, 7.49, 1.53, 0.92, 10.21),
    },
}
DEFAULT_PROFILES = ("krumhansl", "aarden", "temperley", "bellman")

# Tonic spelling by pitch class (music21 names: "-" is a flat), as music21's key analysis spells them,
# and the key signature (sharps > 0, flats < 0) of each key.
TONIC_NAMES = {
    "major": ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B"),
    "minor": ("C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B"),
}
KEY_SIGNATURES = {
    "major": (0, 7, 2, -3, 4, -1, 6, 1, -4, 3, -2, 5),
    "minor": (-3, 4, -1, -6, 1, -4, 3, -2, 5, 0, -5, 2),
}


def key_signature(tonic: int, mode: str) -> int:
    """Sharps (> 0) or flats (< 0) of the key with tonic pitch class ``tonic`` spelled as
    :data:`TONIC_NAMES` spells it (C# major: 7 sharps; E-flat minor: 6 flats)."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'major' or 'minor', not {mode!r}")
    return KEY_SIGNATURES[mode][tonic % 12]


@dataclass(frozen=True)
class Key:
    """A key: ``tonic`` pitch class (0 = C), ``mode`` ("major" or "minor")."""

    tonic: int
    mode: str = "major"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'major' or 'minor', not {self.mode!r}")
        if not (isinstance(self.tonic, int) and 0 <= self.tonic < 12):
            raise ValueError(f"tonic must be a pitch class 0-11, not {self.tonic!r}")

    @property
    def tonic_name(self) -> str:
        """The tonic in music21 spelling ("E-" for E-flat)."""
        return TONIC_NAMES[self.mode][self.tonic]

    @property
    def sharps(self) -> int:
        """The key signature: sharps (> 0) or flats (< 0)."""
        return key_signature(self.tonic, self.mode)

    def __str__(self) -> str:
        return f"{self.tonic_name.replace('-', 'b')} {self.mode}"

    def to_music21(self):
        """A new ``music21.key.Key`` of this key (imports music21)."""
        from music21 import key

        return key.Key(self.tonic_name, self.mode)


def _quarter_length(x) -> float | Fraction:
    """A length as music21 stores a quarterLength (``common.opFrac``): a float when its denominator is
    a power of two, else a Fraction with a denominator of at most 65535."""
    if isinstance(x, Fraction):
        f = x
    else:
        x = float(x)
        n, d = x.as_integer_ratio()
        if d <= 65535:
            return x
        f = Fraction(n, d).limit_denominator(65535)
    d = f.denominator
    return f.numerator / d if d & (d - 1) == 0 else f


def pitch_class_histogram(pitches: Iterable[int], lengths: Iterable) -> list:
    """Total length per pitch class, summed in the given order in music21's number types (floats, or
    Fractions for lengths such as 1/3), so that the correlations below reproduce music21's."""
    hist: list = [0] * 12
    for p, ql in zip(pitches, lengths):
        hist[int(p) % 12] += _quarter_length(ql)
    return hist


def _rotations(profile: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(12, 12) centred profile rotated to each tonic (row = tonic, column = pitch class), and each
    row's sum of squares accumulated pitch class by pitch class."""
    import numpy as np

    avg = sum(profile) / len(profile)
    rows = [[profile[(j - i) % 12] - avg for j in range(12)] for i in range(12)]
    sq = []
    for row in rows:
        s = 0.0
        for v in row:
            s = s + v ** 2
        sq.append(s)
    return np.asarray(rows, dtype=float), np.asarray(sq, dtype=float)


_TABLES: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def _table(name: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    t = _TABLES.get((name, mode))
    if t is None:
        t = _TABLES[(name, mode)] = _rotations(PROFILES[name][mode])
    return t


def profile_correlations(hist: Sequence, profile: str, mode: str) -> np.ndarray:
    """Pearson correlation of ``hist`` (12 values, pitch class 0 first) with ``profile`` rotated to each
    of the 12 tonics; 0 for a flat histogram."""
    import numpy as np

    if len(hist) != 12:
        raise ValueError(f"a pitch-class histogram has 12 values, not {len(hist)}")
    rows, sq = _table(profile, mode)
    havg = sum(hist) / 12
    dev = [x - havg for x in hist]
    spread = 0.0
    for v in dev:
        spread = spread + v ** 2
    spread = float(spread)
    if spread == 0:
        return np.zeros(12)
    top = np.zeros(12)
    for j in range(12):  # one pitch class at a time, as the reference accumulates
        top = top + rows[:, j] * float(dev[j])
    return np.asarray([t / ((s * spread) ** 0.5) for t, s in zip(top.tolist(), sq.tolist())])


def key_scores(hist: Sequence, profiles: Sequence[str] = DEFAULT_PROFILES) -> np.ndarray:
    """(2, 12) summed correlations over ``profiles``: row 0 major, row 1 minor, column the tonic."""
    import numpy as np

    out = np.zeros((2, 12))
    for name in profiles:
        for m, mode in enumerate(MODES):
            out[m] = out[m] + profile_correlations(hist, name, mode)
    return out


def best_key(hist: Sequence, profiles: Sequence[str] = DEFAULT_PROFILES) -> Key:
    """The key whose profiles correlate best with ``hist`` (ties: the music21 name that sorts last)."""
    scores = key_scores(hist, profiles)
    cands = [(float(scores[m, t]), (TONIC_NAMES[mode][t], mode), t, mode)
             for m, mode in enumerate(MODES) for t in range(12)]
    _, _, tonic, mode = max(cands, key=lambda c: (c[0], c[1]))
    return Key(tonic, mode)


def estimate_key(pitches: Sequence[int], lengths: Sequence, *,
                 profiles: Sequence[str] = DEFAULT_PROFILES) -> Key:
    """The key of notes with MIDI ``pitches`` and ``lengths`` (quarter notes, or any common unit), in
    their time order; C major when there are no notes."""
    if len(pitches) != len(lengths):
        raise ValueError("pitches and lengths must have the same length")
    if not len(pitches):
        return Key(0, "major")
    return best_key(pitch_class_histogram(pitches, lengths), profiles)
