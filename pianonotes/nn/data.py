"""Training data in memory: features and frame targets for every recording of a dataset split.

A :class:`Recording` holds a front end's features (T, F) float16 and targets at the same frame rate:
``frame`` (T, 88) key down, ``onset`` (T, 88) onset frame, ``velocity`` (T, 88) uint8 at onsets.
Features are cached on disk per front end, so a second run starts in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pianonotes import constants as C
from pianonotes.errors import PianonotesError
from pianonotes.notes import Note


@dataclasses.dataclass
class Recording:
    name: str
    features: np.ndarray  # (T, F) float16
    frame: np.ndarray  # (T, 88) uint8
    onset: np.ndarray  # (T, 88) uint8
    velocity: np.ndarray  # (T, 88) uint8
    notes: list[Note]

    @property
    def n_frames(self) -> int:
        return len(self.features)


def targets_from_notes(notes: Sequence[Note], n_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame, onset and velocity targets (T, 88) uint8 at ``fps`` frames per second.

    A note is down in frames round(onset*fps) .. round(offset*fps)-1 (at least one frame); its onset is
    frame round(onset*fps).
    """
    frame = np.zeros((n_frames, C.N_KEYS), np.uint8)
    onset = np.zeros_like(frame)
    vel = np.zeros_like(frame)
    for n in notes:
        k = n.pitch - C.MIN_PITCH
        a = int(round(n.onset * fps))
        b = max(a + 1, int(round(n.offset * fps)))
        if a >= n_frames:
            continue
        frame[a:b, k] = 1
        onset[a, k] = 1
        vel[a, k] = n.velocity
    return frame, onset, vel


def _notes_from_json(rows) -> list[Note]:
    return [Note(float(r[0]), float(r[1]), int(r[2]), int(r[3]), key_offset=float(r[4]) if len(r) > 4 else None)
            for r in rows if float(r[1]) > float(r[0])]


def dataset_splits(root: str | os.PathLike) -> list[str]:
    root = Path(root)
    return [d.name for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("shard-*.json"))]


def frontend_key(frontend) -> str:
    return hashlib.sha256(json.dumps(frontend.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def load_split(root: str | os.PathLike, split: str, frontend, *, limit_seconds: float | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> list[Recording]:
    """Every shard of ``root/split`` as Recordings (features computed once, cached in root/.cache)."""
    from pianonotes.audio import load_audio

    root = Path(root)
    files = sorted((root / split).glob("shard-*.json"))
    if not files:
        raise PianonotesError(f"no shards in {root / split}; make a dataset with `pianonotes data synth`")
    cache = root / ".cache" / f"features-{frontend_key(frontend)}" / split
    recs: list[Recording] = []
    total = 0.0
    for i, js in enumerate(files):
        labels = json.loads(js.read_text())
        notes = _notes_from_json(labels["notes"])
        cpath = cache / (js.stem + ".npy")
        if cpath.exists():
            feats = np.load(cpath)
        else:
            audio = load_audio(js.with_suffix(".flac"), frontend.sample_rate)
            feats = frontend(audio).astype(np.float16)
            try:
                cache.mkdir(parents=True, exist_ok=True)
                tmp = cpath.with_suffix(".tmp.npy")
                np.save(tmp, feats)
                os.replace(tmp, cpath)
            except OSError:
                pass  # a read-only dataset still trains, only slower next time
        frame, onset, vel = targets_from_notes(notes, len(feats), frontend.fps)
        recs.append(Recording(f"{split}/{js.stem}", feats, frame, onset, vel, notes))
        total += len(feats) / frontend.fps
        if on_progress:
            on_progress(i + 1, len(files))
        if limit_seconds is not None and total >= limit_seconds:
            break
    return recs


def recording_from_audio(audio_path: str | os.PathLike, midi_path: str | os.PathLike | None, frontend) -> Recording:
    """A Recording from an audio file and (optionally) its MIDI ground truth."""
    from pianonotes.audio import load_audio
    from pianonotes.notes import read_midi

    audio = load_audio(audio_path, frontend.sample_rate)
    feats = frontend(audio).astype(np.float16)
    notes = read_midi(midi_path) if midi_path else []
    frame, onset, vel = targets_from_notes(notes, len(feats), frontend.fps)
    return Recording(Path(audio_path).stem, feats, frame, onset, vel, notes)


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


def batch_arrays(recs: Sequence[Recording], positions: np.ndarray, length: int, past: int, future: int):
    """Inputs (B, past+length+future, F) float32 and targets (B, length, 88) for window positions."""
    n_feat = recs[0].features.shape[1]
    B = len(positions)
    x = np.zeros((B, past + length + future, n_feat), np.float32)
    fr = np.zeros((B, length, C.N_KEYS), np.float32)
    on = np.zeros_like(fr)
    ve = np.zeros_like(fr)
    for i, (r, s) in enumerate(positions):
        rec = recs[int(r)]
        a, b = s - past, s + length + future
        lo, hi = max(a, 0), min(b, rec.n_frames)
        if hi > lo:
            x[i, lo - a: hi - a] = rec.features[lo:hi]
        e = min(s + length, rec.n_frames)
        if e > s:
            fr[i, : e - s] = rec.frame[s:e]
            on[i, : e - s] = rec.onset[s:e]
            ve[i, : e - s] = rec.velocity[s:e] / 127.0
    return x, fr, on, ve


def combo_vocab(recs: Sequence[Recording], max_classes: int) -> np.ndarray:
    """The key combinations seen in training, most frequent first, silence as class 0: (K, 88) uint8."""
    counts: dict[bytes, int] = {}
    for rec in recs:
        packed = np.packbits(rec.frame, axis=1)
        u, c = np.unique(packed, axis=0, return_counts=True)
        for row, n in zip(u, c):
            counts[row.tobytes()] = counts.get(row.tobytes(), 0) + int(n)
    silence = np.packbits(np.zeros((1, C.N_KEYS), np.uint8), axis=1)[0].tobytes()
    counts.pop(silence, None)
    order = sorted(counts, key=lambda k: (-counts[k], k))[: max_classes - 1]
    rows = [silence] + order
    return np.unpackbits(np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), -1), axis=1)[:, : C.N_KEYS]


class ComboLookup:
    """Key-set -> class index for a vocabulary (built once; used every training step)."""

    def __init__(self, vocab: np.ndarray):
        packed = np.packbits(vocab.astype(np.uint8), axis=1)
        self.lookup = {row.tobytes(): i for i, row in enumerate(packed)}

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        flat = np.packbits(frame.reshape(-1, C.N_KEYS).astype(np.uint8), axis=1)
        out = np.array([self.lookup.get(row.tobytes(), -100) for row in flat], dtype=np.int64)
        return out.reshape(frame.shape[:-1])


def combo_targets(frame: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    """Class index per frame (B, T) int64; -100 (ignored) for combinations outside the vocabulary."""
    return ComboLookup(vocab)(frame)

