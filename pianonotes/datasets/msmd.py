"""The Multimodal Sheet Music Dataset (MSMD; Dorfer et al., TISMIR 2018) as training data.

The archive ``msmd_aug_v1-1_no-audio.zip`` (Zenodo record 2597505) unpacks to one folder of piece
folders ``<Composer>__<opus>__<file>``; each piece holds ``performances/<piece>_tempo-<int(1000*ratio)>_
<soundfont>/features/`` with, per performance (files matched by suffix, as the dataset's own loader does):

* ``*_spec.npy``: float32 (92, T) log-filtered spectrogram at 20 frames/s (the front end below);
* ``*_midi.npy``: uint8 (128, T) MIDI pitch x frame, counts of sounding notes (target: ``> 0``);
* ``*_notes.npy``: float64 (N, 5) onset (s), pitch, duration (s), velocity, channel;
* ``*_onsets.npy``: float32 (N,) onset frames, ``ceil(onset / 0.05)``.

The spectrogram is often one frame longer than the MIDI matrix: both are cut to the shorter. Empty
``features/`` folders and pieces without performances are skipped and counted, never fatal.

Splits are by piece, never by frame: a YAML file ``{train: [...], valid: [...], test: [...]}`` in the
format of the dataset's code repository, or a deterministic split from a hash of the piece name.

:class:`MsmdFrontEnd` recomputes the dataset's features from audio (madmom 0.16.1's
``LogarithmicFilteredSpectrogram`` as the dataset's code configured it), so a network trained on MSMD
transcribes a user's recording.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from pianonotes import constants as C
from pianonotes.errors import PianonotesError
from pianonotes.features.msmd import MsmdFrontEnd
from pianonotes.fileio import cache_dir

# ---------------------------------------------------------------------------------------- the dataset
FPS = 20.0  # frames per second of every frame-wise MSMD feature
N_BANDS = 92  # spectrogram bands
FOLDER_NAME = "msmd_aug_v1-1_no-audio"
ARCHIVE_NAME = f"{FOLDER_NAME}.zip"
ZENODO_RECORD = 2597505
ARCHIVE_URL = f"https://zenodo.org/records/{ZENODO_RECORD}/files/{ARCHIVE_NAME}?download=1"
ARCHIVE_APPROX_BYTES = 8_900_000_000  # about 8.9 GB zipped; the server's Content-Length is checked exactly
LICENSE = "CC BY-SA 4.0"
ATTRIBUTION = (
    "Multimodal Sheet Music Dataset (MSMD), M. Dorfer, J. Hajič jr., A. Arzt, H. Frostel, G. Widmer: "
    "Learning Audio-Sheet Music Correspondences for Cross-Modal Retrieval and Piece Identification, "
    f"TISMIR 1(1), 2018; https://zenodo.org/records/{ZENODO_RECORD}"
)
SPLIT_NAMES = ("train", "valid", "test")
SPLIT_SALT = "pianonotes-msmd-split-v1"
HASH_SPLIT_FRACTIONS = {"test": 0.20, "valid": 0.05}  # rest: train (the dataset's all_split: 354/19/94)

_SUFFIXES = {"spec": "_spec.npy", "midi": "_midi.npy", "notes": "_notes.npy", "onsets": "_onsets.npy"}
_REQUIRED = ("spec", "midi", "notes")


def default_root() -> Path:
    """Where ``pianonotes train --msmd`` looks for (and downloads) the dataset: ``msmd`` in the cache root
    (:func:`pianonotes.fileio.cache_dir`: ``$PIANONOTES_CACHE``, ``$XDG_CACHE_HOME/pianonotes`` or
    ``~/.cache/pianonotes``)."""
    return cache_dir() / "msmd"


# ------------------------------------------------------------------------------------- performance names
@dataclasses.dataclass(frozen=True)
class PerformanceName:
    """A performance folder name ``<piece>_tempo-<int(1000*ratio)>_<soundfont>``, parsed."""

    piece: str
    tempo_code: int  # int(1000 * ratio): 1000 is the score's tempo
    soundfont: str

    @property
    def tempo(self) -> float:
        """Tempo ratio (1.0: as notated)."""
        return self.tempo_code / 1000.0

    @property
    def name(self) -> str:
        return f"{self.piece}_tempo-{self.tempo_code}_{self.soundfont}"


def parse_performance_name(name: str) -> PerformanceName:
    """Split a performance folder name on its last ``_tempo-`` and then on the first ``_`` after it
    (soundfont names contain ``_`` and ``-``, e.g. ``acoustic_piano_imis_1``, ``grand-piano-YDP-20160804``).

    Raises PianonotesError for a name not in that form.
    """
    piece, sep, tail = name.rpartition("_tempo-")
    code, sep2, soundfont = tail.partition("_")
    if not sep or not piece or not sep2 or not soundfont or not code.isdigit():
        raise PianonotesError(f"'{name}' is not an MSMD performance name (<piece>_tempo-<int>_<soundfont>)")
    return PerformanceName(piece, int(code), soundfont)


@dataclasses.dataclass(frozen=True)
class Performance:
    """One performance folder with its feature files (by kind: spec, midi, notes, onsets)."""

    folder: Path
    parsed: PerformanceName
    files: Mapping[str, Path]

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def piece(self) -> str:
        return self.parsed.piece

    @property
    def tempo(self) -> float:
        return self.parsed.tempo

    @property
    def soundfont(self) -> str:
        return self.parsed.soundfont


@dataclasses.dataclass
class Scan:
    """What :func:`scan` found: usable performances by piece, and counts of what it skipped."""

    root: Path
    pieces: dict[str, list[Performance]]
    counts: dict[str, int]


def find_root(path: str | os.PathLike) -> Path:
    """The folder holding the piece folders: ``path`` itself, or ``path/msmd_aug_v1-1_no-audio``."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise PianonotesError(
            f"MSMD folder {p} not found; pass the unpacked {FOLDER_NAME} folder, or download it "
            f"(about 8.9 GB) with `pianonotes train --msmd download`")
    inner = p / FOLDER_NAME
    if inner.is_dir() and not _looks_like_pieces(p):
        return inner
    return p


def _looks_like_pieces(p: Path) -> bool:
    return any((d / "performances").is_dir() for d in p.iterdir() if d.is_dir())


def _feature_files(features: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    try:
        entries = sorted(f for f in features.iterdir() if f.is_file() and not f.name.startswith("."))
    except OSError:
        return files
    for kind, suffix in _SUFFIXES.items():
        hits = [f for f in entries if f.name.endswith(suffix)]
        if len(hits) > 1:
            raise PianonotesError(f"{features}: more than one file ends with {suffix}; remove the extra one")
        if hits:
            files[kind] = hits[0]
    return files


def scan(root: str | os.PathLike) -> Scan:
    """Index the dataset without loading arrays. Never fails on a missing or empty part: counts it."""
    root = find_root(root)
    counts = dict(pieces=0, pieces_without_performances=0, performances=0, performances_without_features=0,
                  performances_incomplete=0, performances_bad_name=0)
    pieces: dict[str, list[Performance]] = {}
    for piece_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        counts["pieces"] += 1
        perf_root = piece_dir / "performances"
        perf_dirs = sorted(d for d in perf_root.iterdir() if d.is_dir()) if perf_root.is_dir() else []
        usable: list[Performance] = []
        for d in perf_dirs:
            counts["performances"] += 1
            try:
                parsed = parse_performance_name(d.name)
            except PianonotesError:
                counts["performances_bad_name"] += 1
                continue
            files = _feature_files(d / "features")
            if not files:
                counts["performances_without_features"] += 1
            elif not all(k in files for k in _REQUIRED):
                counts["performances_incomplete"] += 1
            else:
                usable.append(Performance(d, parsed, files))
        if not perf_dirs:
            counts["pieces_without_performances"] += 1
        if usable:
            pieces[piece_dir.name] = usable
    if counts["pieces"] == 0:
        raise PianonotesError(f"{root} holds no MSMD piece folders; pass the unpacked {FOLDER_NAME} folder")
    return Scan(root, pieces, counts)


# ------------------------------------------------------------------------------------- filters, presets
@dataclasses.dataclass(frozen=True)
class Filter:
    """Which performances to use: soundfonts (None: all) and an inclusive tempo-ratio range."""

    soundfonts: tuple[str, ...] | None = None
    tempo_min: float = 0.0
    tempo_max: float = math.inf

    def accepts(self, perf: Performance | PerformanceName) -> bool:
        p = perf.parsed if isinstance(perf, Performance) else perf
        if self.soundfonts is not None and p.soundfont not in self.soundfonts:
            return False
        eps = 1e-9
        return self.tempo_min - eps <= p.tempo <= self.tempo_max + eps

    def to_dict(self) -> dict[str, Any]:
        return {"soundfonts": list(self.soundfonts) if self.soundfonts is not None else None,
                "tempo_min": self.tempo_min,
                "tempo_max": None if math.isinf(self.tempo_max) else self.tempo_max}


@dataclasses.dataclass(frozen=True)
class Preset:
    """Performances to train on, and those to validate and test on (an unseen piano, say)."""

    train: Filter
    evaluate: Filter
    description: str


PRESETS: dict[str, Preset] = {
    "all": Preset(Filter(), Filter(), "every soundfont and tempo, for training and evaluation"),
    "authors": Preset(
        Filter(("acoustic_piano_imis_1", "ElectricPiano", "YamahaGrandPiano"), 0.90, 1.10),
        Filter(("grand-piano-YDP-20160804",), 1.0, 1.0),
        "the dataset authors' protocol: train on acoustic_piano_imis_1, ElectricPiano and YamahaGrandPiano "
        "at tempo 0.90-1.10; validate and test on grand-piano-YDP-20160804 at tempo 1.0",
    ),
}


def _soundfont_list(value) -> tuple[str, ...] | None:
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(s.strip() for s in items if str(s).strip())
    return out or None


def resolve_filters(opts: Mapping[str, Any]) -> tuple[str, Filter, Filter]:
    """(preset name, train filter, evaluation filter) from options: ``preset`` then explicit overrides
    ``soundfonts``, ``tempo_min``, ``tempo_max`` (training) and ``eval_soundfonts``, ``eval_tempo_min``,
    ``eval_tempo_max`` (validation and test)."""
    name = opts.get("preset") or "all"
    if name not in PRESETS:
        raise PianonotesError(f"unknown MSMD preset '{name}'; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    tr, ev = preset.train, preset.evaluate
    tr = _override(tr, opts.get("soundfonts"), opts.get("tempo_min"), opts.get("tempo_max"))
    ev = _override(ev, opts.get("eval_soundfonts"), opts.get("eval_tempo_min"), opts.get("eval_tempo_max"))
    return name, tr, ev


def _override(f: Filter, soundfonts, tmin, tmax) -> Filter:
    sf = _soundfont_list(soundfonts)
    out = dataclasses.replace(
        f, soundfonts=sf if sf is not None else f.soundfonts,
        tempo_min=float(tmin) if tmin is not None else f.tempo_min,
        tempo_max=float(tmax) if tmax is not None else f.tempo_max)
    if out.tempo_min > out.tempo_max:
        raise PianonotesError(
            f"MSMD tempo range {out.tempo_min}-{out.tempo_max} is empty; min must not exceed max")
    return out


# ------------------------------------------------------------------------------------------------ splits
def load_split_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """A split YAML ``{train: [piece...], valid: [...], test: [...]}`` (missing keys: empty lists)."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - pyyaml is in the train extra
        raise PianonotesError("reading a split file needs PyYAML: pip install 'pianonotes[train]'") from exc
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PianonotesError(f"cannot read split file {p}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise PianonotesError(f"split file {p} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not any(k in data for k in SPLIT_NAMES):
        raise PianonotesError(f"split file {p} must map train/valid/test to lists of piece names")
    out: dict[str, list[str]] = {}
    for k in SPLIT_NAMES:
        v = data.get(k) or []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise PianonotesError(f"split file {p}: '{k}' must be a list of piece names")
        out[k] = list(v)
    seen: dict[str, str] = {}
    for k in SPLIT_NAMES:
        for piece in out[k]:
            if piece in seen and seen[piece] != k:
                raise PianonotesError(f"split file {p}: piece {piece} is in both {seen[piece]} and {k}")
            seen[piece] = k
    return out


def hash_split(piece: str) -> str:
    """The split ('train', 'valid' or 'test') of a piece in the default split: a hash of its name alone,
    so adding or removing pieces never moves another piece."""
    h = int.from_bytes(hashlib.sha256(f"{SPLIT_SALT}:{piece}".encode()).digest()[:8], "big") / 2.0 ** 64
    if h < HASH_SPLIT_FRACTIONS["test"]:
        return "test"
    if h < HASH_SPLIT_FRACTIONS["test"] + HASH_SPLIT_FRACTIONS["valid"]:
        return "valid"
    return "train"


def split_pieces(pieces: Iterable[str], split_file: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Assign pieces to train/valid/test by ``split_file`` (pieces it omits are left out) or by hash."""
    pieces = sorted(pieces)
    out: dict[str, list[str]] = {k: [] for k in SPLIT_NAMES}
    if split_file is not None:
        spec = load_split_file(split_file)
        where = {p: k for k in SPLIT_NAMES for p in spec[k]}
        for p in pieces:
            if p in where:
                out[where[p]].append(p)
    else:
        for p in pieces:
            out[hash_split(p)].append(p)
    return out


# --------------------------------------------------------------------------------------------- loading
def load_performance(perf: Performance):
    """One performance as a :class:`pianonotes.nn.data.Recording` at 20 frames/s.

    features: the stored spectrogram (T, 92) float16; frame: MIDI matrix ``> 0`` for keys 21-108; onset
    and velocity at frame ``ceil(onset / 0.05)`` of each note (the frame the dataset's MIDI matrix and
    onsets file use); notes from the notes array (pitches outside the piano dropped).
    """
    from pianonotes.datasets.recordings import Recording
    from pianonotes.notes import Note

    spec = _load_npy(perf.files["spec"])
    midi = _load_npy(perf.files["midi"])
    notes_arr = _load_npy(perf.files["notes"])
    if spec.ndim != 2 or spec.shape[0] != N_BANDS:
        raise PianonotesError(
            f"{perf.files['spec']}: expected a ({N_BANDS}, T) spectrogram, got {spec.shape}")
    if midi.ndim != 2 or midi.shape[0] != 128:
        raise PianonotesError(f"{perf.files['midi']}: expected a (128, T) MIDI matrix, got {midi.shape}")
    notes_arr = np.asarray(notes_arr, np.float64).reshape(-1, notes_arr.shape[-1] if notes_arr.size else 5)
    if notes_arr.shape[1] < 4:
        raise PianonotesError(f"{perf.files['notes']}: expected (N, 5) note events, got {notes_arr.shape}")
    T = min(spec.shape[1], midi.shape[1])
    features = np.ascontiguousarray(spec[:, :T].T).astype(np.float16)
    frame = np.ascontiguousarray(midi[C.MIN_PITCH: C.MAX_PITCH + 1, :T].T > 0).astype(np.uint8)
    onset = np.zeros_like(frame)
    velocity = np.zeros_like(frame)
    notes = []
    dt = 1.0 / FPS
    for onset_s, pitch, dur, vel in notes_arr[:, :4]:
        p = int(round(pitch))
        if not (C.MIN_PITCH <= p <= C.MAX_PITCH) or not dur > 0:
            continue
        v = int(min(127, max(1, round(vel))))
        notes.append(Note(float(onset_s), float(onset_s + dur), p, v))
        f = int(np.ceil(onset_s / dt))
        if 0 <= f < T:
            onset[f, p - C.MIN_PITCH] = 1
            velocity[f, p - C.MIN_PITCH] = v
    notes.sort()
    return Recording(perf.name, features, frame, onset, velocity, notes)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PianonotesError(f"cannot read {path}: {exc}; the download may be damaged") from exc


def select(scan_result: Scan, pieces: Iterable[str], flt: Filter) -> list[Performance]:
    """Performances of ``pieces`` that pass ``flt``, in a stable order."""
    out = []
    for p in sorted(pieces):
        out.extend(perf for perf in scan_result.pieces.get(p, []) if flt.accepts(perf))
    return out


def training_data(opts: Mapping[str, Any], on_event: Callable[[str, dict], None] | None = None):
    """Train and validation recordings for ``pianonotes train --msmd``.

    ``opts``: ``root`` (dataset folder), ``split_file`` (YAML or None: hash split by piece), ``preset``
    ('authors' or 'all'; default 'all'), optional filter overrides (see :func:`resolve_filters`),
    ``limit_hours`` (training audio cap) and ``val_seconds`` (validation audio cap).

    Returns (train recordings, validation recordings ('valid' split), front end config, data description).
    """
    if not opts.get("root"):
        raise PianonotesError("no MSMD folder given: pass --msmd PATH (the unpacked dataset)")
    sc = scan(opts["root"])
    preset, train_f, eval_f = resolve_filters(opts)
    split_file = opts.get("split_file")
    parts = split_pieces(sc.pieces, split_file)
    train_perfs = select(sc, parts["train"], train_f)
    val_perfs = select(sc, parts["valid"], eval_f)
    if not train_perfs:
        raise PianonotesError(
            f"no MSMD training performances in {sc.root} with preset '{preset}' "
            f"(soundfonts {train_f.soundfonts or 'all'}, tempo {train_f.tempo_min}-{train_f.tempo_max}); "
            "check the folder, the split file and the filters")
    limit = float(opts["limit_hours"]) * 3600 if opts.get("limit_hours") else None
    if limit is not None:  # a capped subset spread over all pieces, not the first ones alphabetically
        train_perfs.sort(key=lambda p: hashlib.sha256(f"{SPLIT_SALT}:{p.name}".encode()).digest())
    val_limit = float(opts["val_seconds"]) if opts.get("val_seconds") else None
    total = len(train_perfs) + len(val_perfs)
    done = 0

    def load_all(perfs: list[Performance], cap: float | None) -> list:
        nonlocal done
        recs = []
        seconds = 0.0
        for perf in perfs:
            if cap is not None and seconds >= cap:
                break
            rec = load_performance(perf)
            recs.append(rec)
            seconds += rec.n_frames / FPS
            done += 1
            if on_event:
                on_event("loading", {"done": done, "total": total})
        return recs

    train = load_all(train_perfs, limit)
    val = load_all(val_perfs, val_limit)
    counts = dict(sc.counts)
    in_split = set().union(*parts.values())
    counts["pieces_usable"] = len(sc.pieces)
    counts["pieces_not_in_split"] = len(set(sc.pieces) - in_split)
    if split_file is not None:  # pieces the split names that this copy lacks (or that have no features)
        named = load_split_file(split_file)
        counts["split_pieces_missing"] = sum(p not in sc.pieces for k in SPLIT_NAMES for p in named[k])
    desc = {
        "dataset": f"MSMD ({FOLDER_NAME})",
        "format": "msmd",
        "root": str(sc.root.resolve()),
        "source": ARCHIVE_URL,
        "license": LICENSE,
        "licenses": [LICENSE],
        "attribution": ATTRIBUTION,
        "split": _split_description(split_file),
        "preset": preset,
        "train_filter": train_f.to_dict(),
        "eval_filter": eval_f.to_dict(),
        "counts": counts,
        "train_pieces": len({p.piece for p in train_perfs[: len(train)]}),
        "train_performances": len(train),
        "valid_pieces": len({p.piece for p in val_perfs[: len(val)]}),
        "valid_performances": len(val),
        "test_pieces": len(parts["test"]),
        "soundfonts": sorted({p.soundfont for p in train_perfs[: len(train)]}),
        "train_hours": round(sum(r.n_frames for r in train) / FPS / 3600, 3),
        "valid_hours": round(sum(r.n_frames for r in val) / FPS / 3600, 3),
    }
    return train, val, MsmdFrontEnd().to_dict(), desc


def _split_description(split_file) -> dict[str, Any]:
    if split_file is None:
        return {"kind": "hash", "salt": SPLIT_SALT, "fractions": dict(HASH_SPLIT_FRACTIONS)}
    p = Path(split_file)
    return {"kind": "file", "file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
