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
format of the dataset's code repository (its ``valid`` key is read as the ``validation`` split, the one
name this package uses; ``validation:`` is accepted too), or a deterministic split from a hash of the
piece name.

:class:`MsmdOptions` is what ``pianonotes train --msmd`` passes down (folder, split, preset, filters,
caps); :class:`MsmdPerformance` is one rendered performance of a piece (not to be confused with
:class:`pianonotes.datasets.synth.performance.Performance`, a MIDI performance to render).

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

from pianonotes import constants
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
SPLIT_NAMES = ("train", "validation", "test")
# The split files of the dataset's code repository name the validation split "valid".
SPLIT_FILE_ALIASES = {"valid": "validation"}
SPLIT_SALT = "pianonotes-msmd-split-v1"
HASH_SPLIT_FRACTIONS = {"test": 0.20, "validation": 0.05}  # rest: train (the dataset's all_split: 354/19/94)

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
class MsmdPerformance:
    """One rendered MSMD performance: its folder, its parsed name and its feature files by kind
    (``spec``, ``midi``, ``notes``, optionally ``onsets``; see the module doc for their shapes)."""

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
    pieces: dict[str, list[MsmdPerformance]]
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
    pieces: dict[str, list[MsmdPerformance]] = {}
    for piece_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        counts["pieces"] += 1
        perf_root = piece_dir / "performances"
        perf_dirs = sorted(d for d in perf_root.iterdir() if d.is_dir()) if perf_root.is_dir() else []
        usable: list[MsmdPerformance] = []
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
                usable.append(MsmdPerformance(d, parsed, files))
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

    def accepts(self, perf: MsmdPerformance | PerformanceName) -> bool:
        p = perf.parsed if isinstance(perf, MsmdPerformance) else perf
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


def _soundfont_list(value, name: str) -> tuple[str, ...] | None:
    """A comma list or a sequence of soundfont names as a tuple (None for none)."""
    if value is None:
        return None
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise PianonotesError(f"MSMD option {name} is {value!r}; give soundfont names (a comma list)")
    out = tuple(v.strip() for v in items if v.strip())
    return out or None


# The options and the command-line flags that set them (for the error messages).
_FLAGS = {"root": "--msmd", "split_file": "--split", "preset": "--preset", "soundfonts": "--soundfonts",
          "tempo_min": "--tempo-min", "tempo_max": "--tempo-max", "eval_soundfonts": "--eval-soundfonts",
          "eval_tempo_min": "eval_tempo_min", "eval_tempo_max": "eval_tempo_max",
          "limit_hours": "--limit-hours", "val_seconds": "val_seconds"}


@dataclasses.dataclass(frozen=True)
class MsmdOptions:
    """What ``pianonotes train --msmd`` trains and validates on; checked when made (one PianonotesError
    naming the option). The checkpoint records it as ``train_config.msmd`` (:meth:`to_dict`, read back
    by :meth:`from_dict`).

    A filter option left None takes the preset's value; a cap left None means no cap.
    """

    #: The dataset folder: the unpacked ``msmd_aug_v1-1_no-audio`` folder or the folder holding it.
    root: str
    #: Split YAML ``{train, valid (or validation), test}`` of piece names; None: the hash split by piece.
    split_file: str | None = None
    #: A key of :data:`PRESETS`: ``all`` (every soundfont and tempo) or ``authors`` (the authors' protocol).
    preset: str = "all"
    #: Training performances: only these soundfonts (a comma list is accepted and split).
    soundfonts: tuple[str, ...] | None = None
    #: Training performances: the tempo-ratio range, inclusive (1.0: the score's tempo; 0.9: 10 % slower).
    tempo_min: float | None = None
    tempo_max: float | None = None
    #: Validation and test performances: only these soundfonts, and their tempo-ratio range.
    eval_soundfonts: tuple[str, ...] | None = None
    eval_tempo_min: float | None = None
    eval_tempo_max: float | None = None
    #: Training audio cap, in hours (a subset spread over all pieces); None: all of it.
    limit_hours: float | None = None
    #: Validation audio cap, in seconds; None: the whole validation split.
    val_seconds: float | None = None

    def __post_init__(self):
        fix = object.__setattr__  # frozen: normalized once, here
        if isinstance(self.root, os.PathLike):
            fix(self, "root", os.fspath(self.root))
        if not isinstance(self.root, str) or not self.root.strip():
            raise PianonotesError("no MSMD folder given: pass --msmd PATH (the unpacked dataset)")
        if isinstance(self.split_file, os.PathLike):
            fix(self, "split_file", os.fspath(self.split_file))
        if self.split_file is not None and (not isinstance(self.split_file, str) or not self.split_file):
            raise PianonotesError(f"MSMD split file {self.split_file!r}: give the path of a split YAML")
        if self.preset not in PRESETS:
            raise PianonotesError(f"unknown MSMD preset '{self.preset}'; choose one of {', '.join(PRESETS)}")
        for name in ("soundfonts", "eval_soundfonts"):
            fix(self, name, _soundfont_list(getattr(self, name), _FLAGS[name]))
        for name in ("tempo_min", "tempo_max", "eval_tempo_min", "eval_tempo_max"):
            fix(self, name, _number(getattr(self, name), _FLAGS[name], "a tempo ratio above 0 (1.0: as notated)"))
        for name, unit in (("limit_hours", "hours"), ("val_seconds", "seconds")):
            fix(self, name, _number(getattr(self, name), _FLAGS[name], f"a number of {unit} above 0"))
        for lo, hi in (("tempo_min", "tempo_max"), ("eval_tempo_min", "eval_tempo_max")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise PianonotesError(f"MSMD tempo range {a}-{b} is empty; min must not exceed max")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (soundfont tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MsmdOptions":
        """From :meth:`to_dict` (or the dict older checkpoints wrote: the same keys, some left out, a
        null preset)."""
        if not isinstance(d, Mapping):
            raise PianonotesError(f"MSMD options must be a mapping, not {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise PianonotesError(f"unknown MSMD option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        kw = dict(d)
        kw.setdefault("root", "")  # the missing folder is the one-line error of __post_init__
        if kw.get("preset") is None:
            kw.pop("preset", None)
        return cls(**kw)


def _number(value, flag: str, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise PianonotesError(f"MSMD {flag} {value!r}: give {what}")
    return float(value)


def resolve_filters(opts: MsmdOptions) -> tuple[str, Filter, Filter]:
    """(preset name, train filter, evaluation filter): the preset's filters with the explicit overrides
    of ``opts`` (``soundfonts``, ``tempo_min``, ``tempo_max`` for training; ``eval_soundfonts``,
    ``eval_tempo_min``, ``eval_tempo_max`` for validation and test)."""
    preset = PRESETS[opts.preset]
    tr = _override(preset.train, opts.soundfonts, opts.tempo_min, opts.tempo_max)
    ev = _override(preset.evaluate, opts.eval_soundfonts, opts.eval_tempo_min, opts.eval_tempo_max)
    return opts.preset, tr, ev


def _override(f: Filter, soundfonts: tuple[str, ...] | None, tmin: float | None, tmax: float | None) -> Filter:
    out = dataclasses.replace(
        f, soundfonts=soundfonts if soundfonts is not None else f.soundfonts,
        tempo_min=tmin if tmin is not None else f.tempo_min,
        tempo_max=tmax if tmax is not None else f.tempo_max)
    if out.tempo_min > out.tempo_max:
        raise PianonotesError(
            f"MSMD tempo range {out.tempo_min}-{out.tempo_max} is empty; min must not exceed max")
    return out


# ------------------------------------------------------------------------------------------------ splits
def load_split_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """A split YAML ``{train: [piece...], valid: [...], test: [...]}`` as ``{train, validation, test}``
    (the dataset's ``valid`` key is the ``validation`` split; ``validation:`` is read too; missing keys:
    empty lists)."""
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
    keys = (*SPLIT_NAMES, *SPLIT_FILE_ALIASES)
    if not isinstance(data, dict) or not any(k in data for k in keys):
        raise PianonotesError(f"split file {p} must map train/valid/test to lists of piece names")
    for alias, name in SPLIT_FILE_ALIASES.items():
        if alias in data and name in data:
            raise PianonotesError(f"split file {p} has both '{alias}' and '{name}' (the same split); keep one")
        if alias in data:
            data = {(name if k == alias else k): v for k, v in data.items()}
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
    """The split ('train', 'validation' or 'test') of a piece in the default split: a hash of its name
    alone, so adding or removing pieces never moves another piece."""
    h = int.from_bytes(hashlib.sha256(f"{SPLIT_SALT}:{piece}".encode()).digest()[:8], "big") / 2.0 ** 64
    if h < HASH_SPLIT_FRACTIONS["test"]:
        return "test"
    if h < HASH_SPLIT_FRACTIONS["test"] + HASH_SPLIT_FRACTIONS["validation"]:
        return "validation"
    return "train"


def split_pieces(pieces: Iterable[str], split_file: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Assign pieces to train/validation/test by ``split_file`` (pieces it omits are left out) or by hash."""
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
def load_performance(perf: MsmdPerformance):
    """One performance as a :class:`pianonotes.datasets.recordings.Recording` at 20 frames/s.

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
    frame = np.ascontiguousarray(midi[constants.MIN_PITCH: constants.MAX_PITCH + 1, :T].T > 0).astype(np.uint8)
    onset = np.zeros_like(frame)
    velocity = np.zeros_like(frame)
    notes = []
    dt = 1.0 / FPS
    for onset_s, pitch, dur, vel in notes_arr[:, :4]:
        p = int(round(pitch))
        if not (constants.MIN_PITCH <= p <= constants.MAX_PITCH) or not dur > 0:
            continue
        v = int(min(127, max(1, round(vel))))
        notes.append(Note(float(onset_s), float(onset_s + dur), p, v))
        f = int(np.ceil(onset_s / dt))
        if 0 <= f < T:
            onset[f, p - constants.MIN_PITCH] = 1
            velocity[f, p - constants.MIN_PITCH] = v
    notes.sort()
    return Recording(perf.name, features, frame, onset, velocity, notes)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PianonotesError(f"cannot read {path}: {exc}; the download may be damaged") from exc


def select(scan_result: Scan, pieces: Iterable[str], flt: Filter) -> list[MsmdPerformance]:
    """Performances of ``pieces`` that pass ``flt``, in a stable order."""
    out = []
    for p in sorted(pieces):
        out.extend(perf for perf in scan_result.pieces.get(p, []) if flt.accepts(perf))
    return out


def training_data(opts: MsmdOptions, on_event: Callable[[str, dict], None] | None = None):
    """Train and validation recordings for ``pianonotes train --msmd`` (see :class:`MsmdOptions`).

    Returns (train recordings, validation recordings (the ``validation`` split), front end config, data
    description); ``on_event('loading', {'done', 'total'})`` after each performance is loaded.
    """
    if not isinstance(opts, MsmdOptions):
        raise PianonotesError(f"MSMD options must be MsmdOptions, not {type(opts).__name__}")
    sc = scan(opts.root)
    preset, train_f, eval_f = resolve_filters(opts)
    split_file = opts.split_file
    parts = split_pieces(sc.pieces, split_file)
    train_perfs = select(sc, parts["train"], train_f)
    val_perfs = select(sc, parts["validation"], eval_f)
    if not train_perfs:
        raise PianonotesError(
            f"no MSMD training performances in {sc.root} with preset '{preset}' "
            f"(soundfonts {train_f.soundfonts or 'all'}, tempo {train_f.tempo_min}-{train_f.tempo_max}); "
            "check the folder, the split file and the filters")
    limit = opts.limit_hours * 3600 if opts.limit_hours is not None else None
    if limit is not None:  # a capped subset spread over all pieces, not the first ones alphabetically
        train_perfs.sort(key=lambda p: hashlib.sha256(f"{SPLIT_SALT}:{p.name}".encode()).digest())
    val_limit = opts.val_seconds
    total = len(train_perfs) + len(val_perfs)
    done = 0

    def load_all(perfs: list[MsmdPerformance], cap: float | None) -> list:
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
        "validation_pieces": len({p.piece for p in val_perfs[: len(val)]}),
        "validation_performances": len(val),
        "test_pieces": len(parts["test"]),
        "soundfonts": sorted({p.soundfont for p in train_perfs[: len(train)]}),
        "train_hours": round(sum(r.n_frames for r in train) / FPS / 3600, 3),
        "validation_hours": round(sum(r.n_frames for r in val) / FPS / 3600, 3),
    }
    return train, val, MsmdFrontEnd().to_dict(), desc


def _split_description(split_file) -> dict[str, Any]:
    if split_file is None:
        return {"kind": "hash", "salt": SPLIT_SALT, "fractions": dict(HASH_SPLIT_FRACTIONS)}
    p = Path(split_file)
    return {"kind": "file", "file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
