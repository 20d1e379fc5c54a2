"""Recordings in memory: a front end's features and frame targets for every recording of a dataset split.

A :class:`Recording` holds features (T, F) float16 and targets at the same frame rate:
``frame`` (T, 88) key down, ``onset`` (T, 88) onset frame, ``velocity`` (T, 88) uint8 at onsets.
Features are cached on disk per front end, so a second run starts in seconds. Also: labelled
recordings in a folder (``NAME.flac`` + ``NAME.mid``/``.tsv``) for evaluation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.features import FrontEnd
from pianonotes.notes import Note


@dataclasses.dataclass
class Recording:
    """One labelled recording at the front end's frame rate (``fps`` frames per second: 50 for
    AudioNet's front end, 20 for MSMD's); T frames, frame ``t`` covering ``t / fps`` seconds on. Key
    columns are MIDI pitches 21-108 (column ``pitch - 21``).
    """

    name: str  # where it came from: "SPLIT/SHARD" in a dataset, the file stem, an MSMD performance name
    features: np.ndarray | None  # (T, F) float16 front-end features; None when only ``audio`` is kept
    #                              (training with online acoustics computes them per window)
    frame: np.ndarray  # (T, 88) uint8 0/1: the key sounds (its note extended by the sustain pedal)
    onset: np.ndarray  # (T, 88) uint8 0/1: a note starts in this frame
    velocity: np.ndarray  # (T, 88) uint8 MIDI velocity 1-127 at onset frames, 0 elsewhere
    notes: list[Note]  # the labels (seconds), sorted
    key: np.ndarray | None = None  # (T, 88) uint8 0/1: the key is held down (not extended by the pedal)
    pedal: np.ndarray | None = None  # (T,) uint8 0/1: the sustain pedal is down
    pedals: list = dataclasses.field(default_factory=list)  # sustain intervals, PedalEvents in seconds
    audio: np.ndarray | None = None  # (n,) int16 mono audio at the front end's sample rate (optional)
    has_pedal_labels: bool = False  # key/pedal come from real pedal labels (else the pedal loss skips it)

    @property
    def n_frames(self) -> int:
        return len(self.frame)

    def note_table(self) -> np.ndarray:
        """(n, 5) float64: onset s, sounding offset s, key release s, pitch, velocity."""
        if getattr(self, "_table", None) is None:
            self._table = np.array([[n.onset, n.offset, n.release, n.pitch, n.velocity] for n in self.notes],
                                   np.float64).reshape(-1, 5)
        return self._table

    def pedal_table(self) -> np.ndarray:
        if getattr(self, "_ptable", None) is None:
            self._ptable = np.array([[p.start, p.end] for p in self.pedals], np.float64).reshape(-1, 2)
        return self._ptable


def key_and_pedal_targets(notes: Sequence[Note], pedals, n_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Key-down (T, 88) uint8 from key releases and pedal-down (T,) uint8 from the pedal intervals."""
    key = np.zeros((n_frames, constants.N_KEYS), np.uint8)
    for n in notes:
        a = int(round(n.onset * fps))
        b = max(a + 1, int(round(n.release * fps)))
        if a < n_frames:
            key[a:b, n.pitch - constants.MIN_PITCH] = 1
    ped = np.zeros(n_frames, np.uint8)
    for p in pedals:
        a, b = int(round(p.start * fps)), int(round(p.end * fps))
        ped[max(a, 0):max(min(b, n_frames), 0)] = 1
    return key, ped


def targets_from_notes(notes: Sequence[Note], n_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame, onset and velocity targets (T, 88) uint8 at ``fps`` frames per second.

    A note is down in frames round(onset*fps) .. round(offset*fps)-1 (at least one frame); its onset is
    frame round(onset*fps).
    """
    frame = np.zeros((n_frames, constants.N_KEYS), np.uint8)
    onset = np.zeros_like(frame)
    vel = np.zeros_like(frame)
    for n in notes:
        k = n.pitch - constants.MIN_PITCH
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


def frontend_key(frontend) -> str:
    return hashlib.sha256(json.dumps(frontend.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def load_split(root: str | os.PathLike, split: str, frontend, *, limit_seconds: float | None = None,
               on_progress: Callable[[int, int], None] | None = None, keep_audio: bool = False) -> list[Recording]:
    """Every shard of ``root/split`` as Recordings (features computed once, cached in root/.cache).

    With ``keep_audio=True`` the recordings keep their audio (int16) instead of features, for training with
    online acoustics (:func:`audio_batch`)."""
    from pianonotes.audio import load_audio
    from pianonotes.notes import PedalEvent

    root = Path(root)
    files = sorted((root / split).glob("shard-*.json"))
    if not files:
        raise PianonotesError(f"no shards in {root / split}; make a dataset with `pianonotes data synth`")
    cache = root / ".cache" / f"features-{frontend_key(frontend)}" / split
    recs: list[Recording] = []
    total = 0.0
    for i, js in enumerate(files):
        notes, pedals = _shard_labels(js, PedalEvent)
        cpath = cache / (js.stem + ".npy")
        if keep_audio:
            wav = load_audio(js.with_suffix(".flac"), frontend.sample_rate)
            pcm = (np.clip(wav, -1, 1) * 32767).astype(np.int16)
            n_frames = frontend.n_frames(len(pcm))
            frame, onset, vel = targets_from_notes(notes, n_frames, frontend.fps)
            key, ped = key_and_pedal_targets(notes, pedals, n_frames, frontend.fps)
            recs.append(Recording(f"{split}/{js.stem}", None, frame, onset, vel, notes, key, ped, pedals, pcm, True))
            total += n_frames / frontend.fps
            if on_progress:
                on_progress(i + 1, len(files))
            if limit_seconds is not None and total >= limit_seconds:
                break
            continue
        feats = _cached_features(cpath, frontend)
        if feats is None:  # not cached yet, or the cached file is damaged: computed afresh
            audio = load_audio(js.with_suffix(".flac"), frontend.sample_rate)
            feats = frontend(audio).astype(np.float16)
            _cache_features(cpath, feats)
        frame, onset, vel = targets_from_notes(notes, len(feats), frontend.fps)
        key, ped = key_and_pedal_targets(notes, pedals, len(feats), frontend.fps)
        recs.append(Recording(f"{split}/{js.stem}", feats, frame, onset, vel, notes, key, ped, pedals, None, True))
        total += len(feats) / frontend.fps
        if on_progress:
            on_progress(i + 1, len(files))
        if limit_seconds is not None and total >= limit_seconds:
            break
    return recs


def _shard_labels(js: Path, pedal_event) -> tuple[list[Note], list]:
    """The notes and pedal intervals of a shard's JSON; PianonotesError naming the shard when it is damaged."""
    try:
        labels = json.loads(js.read_text())
        notes = _notes_from_json(labels["notes"])
        pedals = [pedal_event(float(a), float(b)) for a, b in labels.get("pedals", []) if float(b) > float(a)]
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        raise PianonotesError(f"dataset shard {js} is damaged ({why}); delete it and its .flac, then run "
                              "`pianonotes data synth` on the folder again to re-render it") from exc
    return notes, pedals


def _cached_features(path: Path, frontend: FrontEnd) -> np.ndarray | None:
    """The cached features at ``path``, or None when there are none or they are unusable (cut short,
    not an array, another front end's width): the caller computes them again and replaces the file."""
    try:
        feats = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if feats.ndim != 2 or feats.dtype != np.float16 or feats.shape[1] != frontend.n_features:
        return None
    return feats


def _cache_features(path: Path, feats: np.ndarray) -> None:
    """Write a feature cache file atomically through a temp name unique to this process, so that two
    processes filling the same cache never write into one temp file."""
    from pianonotes.fileio import atomic_path

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            np.save(tmp, feats)
    except (OSError, PianonotesError):
        pass  # a read-only or full dataset disk still trains, only slower next time


def recording_from_audio(audio_path: str | os.PathLike, midi_path: str | os.PathLike | None, frontend) -> Recording:
    """A Recording from an audio file and (optionally) its MIDI ground truth."""
    from pianonotes.audio import load_audio

    audio = load_audio(audio_path, frontend.sample_rate)
    feats = frontend(audio).astype(np.float16)
    notes = read_labels(midi_path) if midi_path else []
    frame, onset, vel = targets_from_notes(notes, len(feats), frontend.fps)
    key, ped = key_and_pedal_targets(notes, [], len(feats), frontend.fps)
    return Recording(Path(audio_path).stem, feats, frame, onset, vel, notes, key, ped)


def labelled_audio_pairs(folder: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(audio, labels) pairs of a folder of recordings with same-named labels: ``NAME.flac`` beside
    ``NAME.mid``/``NAME.midi``/``NAME.tsv``, or an ``audio/`` folder beside ``midi/`` or ``tsv/`` (the
    layout of ``real-dev``). TSV labels are ``onset offset pitch velocity`` in seconds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PianonotesError(f"{folder} is not a folder of recordings with labels")
    audio_dir = folder / "audio" if (folder / "audio").is_dir() else folder
    label_dirs = [d for d in (folder / "midi", folder / "tsv", audio_dir) if d.is_dir()]
    pairs = []
    for a in sorted(audio_dir.iterdir()):
        if a.suffix.lower() not in constants.AUDIO_EXTENSIONS:
            continue
        for d in label_dirs:
            hit = next((d / (a.stem + ext) for ext in (".mid", ".midi", ".tsv") if (d / (a.stem + ext)).is_file()), None)
            if hit:
                pairs.append((a, hit))
                break
    if not pairs:
        raise PianonotesError(f"{folder} holds no audio file with a same-named .mid or .tsv label file")
    return pairs


def read_labels(path: str | os.PathLike) -> list[Note]:
    """Notes from a MIDI file (pedal-extended offsets) or a TSV of onset, offset, pitch, velocity."""
    from pianonotes.notes import read_midi

    path = Path(path)
    if path.suffix.lower() != ".tsv":
        return read_midi(path)
    return _read_tsv_labels(path)


TSV_HELP = ("give onset, offset, pitch and an optional velocity column (seconds, seconds, MIDI 21-108, 1-127), "
            "separated by tabs or spaces, with an optional header line")


def _read_tsv_labels(path: Path) -> list[Note]:
    """``onset offset pitch [velocity]`` rows (whitespace-separated; ``#`` comments, an optional header
    line). Any row that is not that (two columns, text, a fractional or out-of-range pitch, NaN) is an
    error naming the file and line: a file of the wrong layout once scored as a piece without notes.
    Zero-length notes are dropped, velocities clamped to 1-127 (as before); more columns are ignored."""
    import math

    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise PianonotesError(f"cannot read labels {path}: {exc.strerror or exc}") from None

    def bad(n: int, why: str) -> PianonotesError:
        return PianonotesError(f"{path}: line {n} is not `onset offset pitch [velocity]` ({why}); {TSV_HELP}")

    notes, first = [], True
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            values = [float(f) for f in fields[:4]]
        except ValueError:
            if first and len(fields) >= 3:  # a header line (onset offset pitch ...)
                first = False
                continue
            raise bad(n, f"{len(fields)} column{'s' if len(fields) != 1 else ''}" if len(fields) < 3
                      else f"'{line.strip()[:60]}' is not numbers") from None
        first = False
        if len(values) < 3:
            raise bad(n, f"{len(values)} column{'s' if len(values) != 1 else ''}")
        if not all(math.isfinite(v) for v in values):
            raise bad(n, "NaN or infinite values")
        onset, offset, pitch = values[:3]
        velocity = values[3] if len(values) > 3 else constants.DEFAULT_VELOCITY
        if onset < 0:
            raise bad(n, f"onset {onset:g} s is negative")
        if pitch != int(pitch) or not constants.MIN_PITCH <= pitch <= constants.MAX_PITCH:
            raise bad(n, f"pitch {pitch:g} is not a piano key's MIDI number")
        if offset > onset:
            notes.append(Note(onset, offset, int(pitch), int(min(max(velocity, 1), 127))))
    return notes


def labelled_recordings(folder: str | os.PathLike, frontend, *, seconds_per_file: float | None = None) -> list[Recording]:
    """Recordings (features + targets) of :func:`labelled_audio_pairs`, optionally only the first
    ``seconds_per_file`` of each (labels cut to it)."""
    from pianonotes.audio import load_audio

    recs = []
    for audio_path, label_path in labelled_audio_pairs(folder):
        audio = load_audio(audio_path, frontend.sample_rate)
        notes = read_labels(label_path)
        if seconds_per_file:
            audio = audio[: int(seconds_per_file * frontend.sample_rate)]
            end = len(audio) / frontend.sample_rate
            notes = [n for n in notes if n.onset < end - 0.05]
        feats = frontend(audio).astype(np.float16)
        frame, onset, vel = targets_from_notes(notes, len(feats), frontend.fps)
        key, ped = key_and_pedal_targets(notes, [], len(feats), frontend.fps)
        recs.append(Recording(audio_path.stem, feats, frame, onset, vel, notes, key, ped))
    return recs
