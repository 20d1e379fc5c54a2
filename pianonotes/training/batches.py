"""Training batches: windows drawn from recordings, their targets, and (with online augmentation)
the audio re-rendered through a random room and microphone before the front end.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pianonotes import constants
from pianonotes.datasets.recordings import Recording


class WindowSampler:
    """Deterministic windows over recordings: epoch e visits every recording in strides of ``length``
    output frames from a random phase, in a shuffled order fixed by (seed, e)."""

    def __init__(self, recordings: Sequence[Recording], length: int, seed: int):
        self.recs = recordings
        self.length = length
        self.seed = seed

    def epoch(self, e: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, e])
        pos = []
        for r, rec in enumerate(self.recs):
            phase = int(rng.integers(0, self.length))
            for s in range(-phase, rec.n_frames, self.length):
                pos.append((r, max(0, s)))
        arr = np.array(pos, dtype=np.int64).reshape(-1, 2)
        return arr[rng.permutation(len(arr))]


def _empty_batch(B: int, n_in: int, n_feat: int, length: int) -> dict[str, np.ndarray]:
    fr = np.zeros((B, length, constants.N_KEYS), np.float32)
    return {"x": np.zeros((B, n_in, n_feat), np.float32), "frame": fr, "onset": np.zeros_like(fr),
            "velocity": np.zeros_like(fr), "key": np.zeros_like(fr), "pedal": np.zeros((B, length, 1), np.float32),
            "pedal_mask": np.zeros((B, 1, 1), np.float32)}


def batch_arrays(recs: Sequence[Recording], positions: np.ndarray, length: int, past: int, future: int
                 ) -> dict[str, np.ndarray]:
    """Inputs ``x`` (B, past+length+future, F) float32 and targets (B, length, 88) for window positions:
    ``frame``, ``onset``, ``velocity`` (0-1), ``key``; ``pedal`` (B, length, 1) and ``pedal_mask``
    (B, 1, 1), 1 where the recording has pedal labels."""
    n_feat = recs[0].features.shape[1]
    out = _empty_batch(len(positions), past + length + future, n_feat, length)
    for i, (r, s) in enumerate(positions):
        rec = recs[int(r)]
        a, b = s - past, s + length + future
        lo, hi = max(a, 0), min(b, rec.n_frames)
        if hi > lo:
            out["x"][i, lo - a: hi - a] = rec.features[lo:hi]
        e = min(s + length, rec.n_frames)
        if e > s:
            out["frame"][i, : e - s] = rec.frame[s:e]
            out["onset"][i, : e - s] = rec.onset[s:e]
            out["velocity"][i, : e - s] = rec.velocity[s:e] / 127.0
            if rec.key is not None:
                out["key"][i, : e - s] = rec.key[s:e]
            if rec.pedal is not None:
                out["pedal"][i, : e - s, 0] = rec.pedal[s:e]
        out["pedal_mask"][i] = float(rec.has_pedal_labels)
    return out


def window_targets(rec: Recording, t0: float, ratio: float, length: int, fps: float) -> dict[str, np.ndarray]:
    """Targets of ``length`` frames whose frame j sits at source time t0 + j * ratio / fps (a window read
    at playback rate ``ratio``): the labels' times are mapped, not resampled, so no onset is lost."""
    table = rec.note_table()
    fr = np.zeros((length, constants.N_KEYS), np.float32)
    on, ve, key = np.zeros_like(fr), np.zeros_like(fr), np.zeros_like(fr)
    ped = np.zeros((length, 1), np.float32)
    t1 = t0 + length * ratio / fps
    sel = (table[:, 0] < t1) & (table[:, 1] > t0)
    for onset, off, rel, pitch, vel in table[sel]:
        k = int(pitch) - constants.MIN_PITCH
        a = int(round((onset - t0) / ratio * fps))
        b = max(a + 1, int(round((off - t0) / ratio * fps)))
        c = max(a + 1, int(round((rel - t0) / ratio * fps)))
        fr[max(a, 0):max(min(b, length), 0), k] = 1
        key[max(a, 0):max(min(c, length), 0), k] = 1
        if 0 <= a < length:
            on[a, k] = 1
            ve[a, k] = vel / 127.0
    for p0, p1 in rec.pedal_table():
        a, b = int(round((p0 - t0) / ratio * fps)), int(round((p1 - t0) / ratio * fps))
        ped[max(a, 0):max(min(b, length), 0), 0] = 1
    return {"frame": fr, "onset": on, "velocity": ve, "key": key, "pedal": ped}


def audio_batch(recs: Sequence[Recording], positions: np.ndarray, length: int, past: int, future: int, frontend,
                seed, augment, rooms) -> dict[str, np.ndarray]:
    """Like :func:`batch_arrays`, from the recordings' audio through the online acoustics
    (:mod:`pianonotes.datasets.synth.acoustics`) and the front end. ``seed`` (a sequence of ints) fixes every draw:
    the same seed and positions give the same batch."""
    from pianonotes.datasets.synth.acoustics import augment_window, detune_ratio, detuned

    fe = frontend
    n_in = past + length + future
    head = fe.window - fe.lookahead  # samples before a frame's time that its window reads
    pre = int(round(augment.pre_seconds * fe.sample_rate / fe.hop)) * fe.hop
    n_samples = pre + (n_in - 1) * fe.hop + fe.window
    out = _empty_batch(len(positions), n_in, fe.n_features, length)
    for i, (r, s) in enumerate(positions):
        rec = recs[int(r)]
        rng = np.random.default_rng([*seed, i])
        ratio = detune_ratio(rng, augment)
        g0 = int(s) - past  # first input frame
        # output sample u is at output time (u - pre - head) / sr after frame g0's time
        start = g0 * fe.hop - (pre + head) * ratio
        wav = detuned(rec.audio, start, n_samples, ratio)
        wav, _ = augment_window(wav, rng, augment, rooms, fe.sample_rate, detune=ratio)
        x = fe.frames_from_padded(wav[pre:], n_in)
        x[: max(0, -g0)] = 0  # frames before the recording and after its end are zeros, as in inference
        x[max(0, rec.n_frames - g0):] = 0
        out["x"][i] = x
        t0 = (g0 * fe.hop + past * fe.hop * ratio) / fe.sample_rate  # source time of the first target frame
        tg = window_targets(rec, t0, ratio, length, fe.fps)
        for k, v in tg.items():
            out[k][i] = v
        out["pedal_mask"][i] = float(rec.has_pedal_labels)
    return out


def combo_vocab(recs: Sequence[Recording], max_classes: int) -> np.ndarray:
    """The key combinations seen in training, most frequent first, silence as class 0: (K, 88) uint8."""
    counts: dict[bytes, int] = {}
    for rec in recs:
        packed = np.packbits(rec.frame, axis=1)
        u, c = np.unique(packed, axis=0, return_counts=True)
        for row, n in zip(u, c):
            counts[row.tobytes()] = counts.get(row.tobytes(), 0) + int(n)
    silence = np.packbits(np.zeros((1, constants.N_KEYS), np.uint8), axis=1)[0].tobytes()
    counts.pop(silence, None)
    order = sorted(counts, key=lambda k: (-counts[k], k))[: max_classes - 1]
    rows = [silence] + order
    return np.unpackbits(np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), -1), axis=1)[:, : constants.N_KEYS]


class ComboLookup:
    """Key-set -> class index for a vocabulary (built once; used every training step)."""

    def __init__(self, vocab: np.ndarray):
        packed = np.packbits(vocab.astype(np.uint8), axis=1)
        self.lookup = {row.tobytes(): i for i, row in enumerate(packed)}

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        flat = np.packbits(frame.reshape(-1, constants.N_KEYS).astype(np.uint8), axis=1)
        out = np.array([self.lookup.get(row.tobytes(), -100) for row in flat], dtype=np.int64)
        return out.reshape(frame.shape[:-1])
