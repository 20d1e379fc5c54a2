"""Where the music comes from: the piano MIDI corpus (data/midi), any MIDI folder, music21's corpus, textures."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.notes import Note, read_midi_with_pedal
from pianonotes.datasets.synth.performance import Performance

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Piece:
    """One source piece: a MIDI path or a music21 corpus name."""

    kind: str  # "midi" | "music21"
    ref: str  # path or corpus name
    corpus: str
    split: str
    license: str
    seconds: float = 0.0


def split_by_name(name: str, val: float = 0.05, test: float = 0.05) -> str:
    """A deterministic piece-level split from a stable hash of the piece name."""
    h = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test else "validation" if h < test + val else "train"


REPO_CORPUS = Path(__file__).resolve().parents[3] / "data" / "midi"  # a checkout's data/midi

#: One line for users without the corpus (an installed package): how to add it.
CORPUS_HINT = ("for the full piano corpus (POP909, piano-midi.de) pass --midi-dir DIR (or set PIANONOTES_MIDI_CORPUS) "
               "with the data/midi folder of a pianonotes checkout")


def default_corpus_dir() -> Path | None:
    """The piano MIDI corpus: ``$PIANONOTES_MIDI_CORPUS``, else ``data/midi`` of the repository this
    package runs from, else ``../shared/data/midi`` beside it; None when there is none (an installed
    package: the corpus is not in the wheel)."""
    env = os.environ.get("PIANONOTES_MIDI_CORPUS")
    if env:
        return Path(env)
    if (REPO_CORPUS / "manifest.csv").exists():
        return REPO_CORPUS
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data" / "midi"
        if (cand / "manifest.csv").exists():
            return cand
    return None


def weights_without_corpus(weights: dict[str, float],
                           midi_dir: str | os.PathLike | None) -> tuple[dict[str, float], str | None]:
    """The source mix to use when no MIDI corpus can be found: the corpus share goes to the other
    sources (music21's corpus, generated textures) and a warning says so and how to add the corpus.
    Returns ``(weights, None)`` unchanged when a corpus is given or found, or not asked for."""
    if midi_dir is not None or weights.get("corpus", 0) <= 0 or default_corpus_dir() is not None:
        return weights, None
    rest = {k: w for k, w in weights.items() if k != "corpus"}
    if sum(w for w in rest.values() if w > 0) <= 0:
        return weights, None  # nothing else to render: synthesize() reports the missing corpus
    return {**rest, "corpus": 0.0}, ("no MIDI corpus found: rendering from the other sources "
                                      "(music21's corpus, generated textures); " + CORPUS_HINT)


def corpus_pieces(folder: str | os.PathLike) -> list[Piece]:
    """Pieces of a MIDI folder: with a ``manifest.csv`` (path, corpus, split, seconds, license) its
    splits are honoured; otherwise every .mid/.midi file below it, split by a hash of its path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PianonotesError(f"MIDI folder {folder} does not exist")
    manifest = folder / "manifest.csv"
    pieces: list[Piece] = []
    if manifest.exists():
        with open(manifest, newline="") as fh:
            for row in csv.DictReader(fh):
                pieces.append(Piece("midi", str(folder / row["path"]), row.get("corpus", "midi"),
                                    row.get("split", "train"), row.get("license", "unknown"),
                                    float(row.get("seconds") or 0)))
    else:
        for p in sorted(folder.rglob("*")):
            if p.suffix.lower() in (".mid", ".midi") and p.is_file():
                rel = str(p.relative_to(folder))
                pieces.append(Piece("midi", str(p), folder.name, split_by_name(rel), "as licensed by its owner"))
    if not pieces:
        raise PianonotesError(f"no MIDI files (.mid, .midi) found in {folder}; point --midi-dir at a folder of MIDI files")
    return pieces


MUSIC21_PIECES = (
    # Multi-voice pieces from music21's bundled corpus, folded into piano range.
    "bach/bwv66.6", "bach/bwv7.7", "bach/bwv10.7", "bach/bwv101.7", "bach/bwv102.7", "bach/bwv103.6",
    "bach/bwv104.6", "bach/bwv108.6", "bach/bwv11.6", "bach/bwv110.7", "bach/bwv111.6", "bach/bwv112.5",
    "bach/bwv113.8", "bach/bwv114.7", "bach/bwv115.6", "bach/bwv116.6", "bach/bwv117.4", "bach/bwv119.9",
    "bach/bwv120.6", "bach/bwv121.6", "bach/bwv122.6", "bach/bwv123.6", "bach/bwv124.6", "bach/bwv125.6",
    "mozart/k155/movement1", "mozart/k156/movement1", "mozart/k80/movement1", "haydn/opus74no1/movement3",
    "beethoven/opus18no1/movement2", "schumann_robert/opus41no1/movement2", "corelli/opus3no1/1grave",
)


def music21_pieces() -> list[Piece]:
    return [Piece("music21", name, "music21", split_by_name(name), "music21 corpus (BSD/LGPL, public-domain scores)")
            for name in MUSIC21_PIECES]


def load_piece(piece: Piece) -> Performance:
    if piece.kind == "midi":
        notes, pedals = read_midi_with_pedal(piece.ref)
        return Performance.from_notes(notes, pedals)
    return _load_music21(piece.ref)


def _load_music21(name: str) -> Performance:
    from music21 import corpus

    try:
        score = corpus.parse(name)
    except Exception as exc:
        raise PianonotesError(f"music21 corpus piece {name} could not be parsed: {exc}") from exc
    bpm = 96.0
    spb = 60.0 / bpm
    keys = []
    for n in score.flatten().notes:
        start = float(n.getOffsetInHierarchy(score)) * spb
        dur = max(float(n.quarterLength), 0.25) * spb
        for p in n.pitches:
            m = p.midi
            while m < constants.MIN_PITCH:
                m += 12
            while m > constants.MAX_PITCH:
                m -= 12
            keys.append((start, start + dur * 0.95, m, 72))
    notes = [Note(a, b, int(m), v) for a, b, m, v in keys if b > a]
    return Performance.from_notes(notes, [])


def random_excerpt(perf: Performance, rng: np.random.Generator, length: float) -> tuple[Performance, float]:
    """A random window of ``length`` seconds that contains notes (starting at a note onset)."""
    if len(perf.keys) == 0:
        return perf, 0.0
    last = max(0.0, perf.duration - length)
    onsets = perf.keys[:, 0]
    cand = onsets[onsets <= last] if (onsets <= last).any() else onsets[:1]
    start = float(rng.choice(cand)) - 0.2
    start = max(0.0, start)
    return perf.excerpt(start, length), start

