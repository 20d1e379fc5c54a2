"""A numpy sampler: key presses and sustain pedal rendered from a :class:`~pianonotes.datasets.synth.pianos.SampleSet`.

What it models, per key press (onset, key release, pitch, velocity):

* the nearest sampled key (at most a whole tone away), pitch-shifted by resampling, with a small random
  detune per note;
* velocity layers crossfaded: the two layers around the velocity, weighted by where it lies between them,
  and a gain that follows the velocity inside the layer;
* the string sounds while the key is down or the sustain pedal holds it (the same rule as the labels,
  :func:`pianonotes.notes.apply_sustain`), then the damper fades it out (slower in the bass) and the
  key-release noise plays; the top strings (``UNDAMPED_FROM`` up) have no dampers and ring out;
* a re-struck key cuts the string's previous sound with a short damper fade;
* a random stereo downmix (mid + w * side, w drawn per render).
"""

from __future__ import annotations

import numpy as np

from pianonotes import constants
from pianonotes.notes import PedalEvent, apply_sustain
from pianonotes.datasets.synth.pianos import UNDAMPED_FROM, SampleSet

MAX_SHIFT = 2  # semitones between a key and the sample that plays it
DETUNE_CENTS = 4.0  # per-note random detune (standard deviation)
RESTRIKE_FADE = 0.03  # s


def damper_tau(pitch: int) -> float:
    """Damper decay time constant in seconds: about 0.25 s in the low bass, 0.06 s in the treble."""
    return float(np.interp(pitch, [21, 60, 89], [0.25, 0.12, 0.06]))


def layer_weights(layer_velocity: np.ndarray, velocity: int) -> list[tuple[int, float]]:
    """(layer index, weight) pairs for ``velocity``: the layer it falls in and its upper neighbour,
    crossfaded linearly between the layers' lowest velocities."""
    lv = np.asarray(layer_velocity, float)
    i = int(np.searchsorted(lv, velocity, side="right") - 1)
    i = max(0, min(i, len(lv) - 1))
    if i == len(lv) - 1:
        return [(i, 1.0)]
    frac = (velocity - lv[i]) / max(lv[i + 1] - lv[i], 1.0)
    frac = float(np.clip(frac, 0.0, 1.0))
    return [(i, 1.0 - frac), (i + 1, frac)] if frac > 0 else [(i, 1.0)]


def nearest_sample(pitches: np.ndarray, pitch: int) -> int:
    k = int(np.argmin(np.abs(np.asarray(pitches) - pitch)))
    if abs(int(pitches[k]) - pitch) > MAX_SHIFT:
        from pianonotes.errors import PianonotesError

        raise PianonotesError(f"no sample within a whole tone of pitch {pitch}")
    return k


def render_sampled(keys, pedals: list[PedalEvent], total: float, sset: SampleSet, rng: np.random.Generator,
                   *, sample_rate: int = constants.SAMPLE_RATE) -> tuple[np.ndarray, dict]:
    """Render key presses (onset s, key release s, pitch, velocity) and pedal intervals to mono float32.

    Returns (audio of ``total`` seconds, what was drawn: stereo weight). Peak-normalised to 0.9 when louder.
    """
    if sset.sample_rate != sample_rate:
        from pianonotes.errors import PianonotesError

        raise PianonotesError(f"the {sset.name} samples are decoded at {sset.sample_rate} Hz, not {sample_rate}")
    n_total = int(round(total * sample_rate))
    out = np.zeros(n_total + 1, np.float64)
    w_side = float(rng.uniform(-1.0, 1.0))
    tuples = [(float(a), float(b), int(p), int(v)) for a, b, p, v in keys]
    sounding = apply_sustain(tuples, pedals)  # the labels' rule: key release extended by the pedal
    # next onset of the same key, to cut a ringing string when it is struck again
    by_pitch: dict[int, list[float]] = {}
    for n in sounding:
        by_pitch.setdefault(n.pitch, []).append(n.onset)
    for n in sounding:
        a = int(round(n.onset * sample_rate))
        if a >= n_total:
            continue
        k = nearest_sample(sset.pitches, n.pitch)
        cents = float(rng.normal(0.0, DETUNE_CENTS))
        ratio = 2.0 ** ((n.pitch - int(sset.pitches[k]) + cents / 100.0) / 12.0)
        ons = by_pitch[n.pitch]
        j = ons.index(n.onset)
        restrike = ons[j + 1] if j + 1 < len(ons) else None
        damped = n.pitch < UNDAMPED_FROM
        tau = damper_tau(n.pitch)
        end = n.offset if damped else float("inf")
        fade = 5 * tau
        if restrike is not None and restrike < end + fade:
            end, fade = restrike, RESTRIKE_FADE * 5
            tau = RESTRIKE_FADE
        src_len = min(len(sset.mid[0][k]), len(sset.mid[-1][k]))
        n_out = int(min(src_len / ratio - 2, (end - n.onset + fade) * sample_rate, n_total - a))
        if n_out <= 0:
            continue
        need = int(np.ceil(n_out * ratio)) + 2
        src = np.zeros(min(need, src_len), np.float64)
        for li, w in layer_weights(sset.layer_velocity, n.velocity):
            m = sset.mid[li][k][: len(src)].astype(np.float64)
            s = sset.side[li][k][: len(src)].astype(np.float64)
            src[: len(m)] += w * (m + w_side * s)
        # gain inside the layer: about 6 dB across a layer's velocity span
        lv = sset.layer_velocity
        li0 = layer_weights(lv, n.velocity)[0][0]
        hi = lv[li0 + 1] if li0 + 1 < len(lv) else 128
        pos = (n.velocity - lv[li0]) / max(hi - lv[li0], 1)
        gain = 10 ** ((pos - 0.5) * 6 / 20) if len(lv) > 1 else (n.velocity / 127) ** 2
        t_idx = np.arange(n_out) * ratio
        y = np.interp(t_idx, np.arange(len(src)), src) * gain
        cut = int(round((end - n.onset) * sample_rate)) if np.isfinite(end) else n_out
        if cut < n_out:
            y[cut:] *= np.exp(-np.arange(n_out - cut) / (tau * sample_rate))
        out[a: a + n_out] += y
        # the key-release noise, when the key comes up while the damper acts
        if damped and sset.release and abs(n.release - n.offset) < 1e-6:
            rel = sset.release.get(n.pitch)
            r0 = int(round(n.release * sample_rate))
            if rel is not None and r0 < n_total:
                r = rel[: n_total - r0].astype(np.float64) * 0.5 * (n.velocity / 127.0) * float(rng.uniform(0.5, 1.5))
                out[r0: r0 + len(r)] += r
    audio = out[:n_total]
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak > 0.9:
        audio = audio * (0.9 / peak)
    return audio.astype(np.float32), {"stereo_side_weight": round(w_side, 3)}
