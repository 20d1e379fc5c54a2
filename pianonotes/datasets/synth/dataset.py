"""``pianonotes data synth``: a dataset folder of rendered shards, deterministic and resumable.

Layout::

    OUT/manifest.json                 config, sources, licenses, soundfonts, augmentation, seed, totals
    OUT/<split>/shard-00000.flac      mono 16 kHz audio (several clips, each followed by a silent tail)
    OUT/<split>/shard-00000.json      labels (sounding notes with key releases, pedal), clips, provenance

A shard counts as done once its JSON exists; both files are written atomically (FLAC first), so an
interrupted run resumes where it stopped and never counts a half-written shard.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import zlib
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.datasets.synth import sources
from pianonotes.datasets.synth.augment import AugmentConfig, augment
from pianonotes.datasets.synth.performance import Performance
from pianonotes.datasets.synth.render import check_soundfont, fluidsynth_binary, layout, render
from pianonotes.datasets.synth.textures import generate

PIANO_PROGRAMS = (0, 0, 1, 2)  # GM: acoustic grand (twice as likely), bright acoustic, electric grand


@dataclasses.dataclass
class SynthConfig:
    hours: float = 1.0  # training audio
    eval_minutes: float = 10.0  # each of validation and test
    splits: tuple[str, ...] = sources.SPLITS
    soundfonts: tuple[str, ...] = ("fluidr3", "fluidr3mono", "timgm6mb")
    midi_dir: str | None = None  # default: the shared corpus
    weights: dict = dataclasses.field(default_factory=lambda: {"corpus": 0.55, "music21": 0.1, "textures": 0.35})
    clip_seconds: tuple[float, float] = (10.0, 30.0)
    shard_seconds: float = 120.0
    tempo: tuple[float, float] = (0.8, 1.25)
    transpose: int = 3
    seed: int = 0
    sample_rate: int = constants.SAMPLE_RATE
    evaluation_only: bool = False  # may use the reserved MuseScore soundfont; never for training
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    velocity_scale: tuple[float, float] = (0.75, 1.25)  # per clip; (0.35, 1.3) reaches pp playing
    pianos_dir: str | None = None  # decoded sampled pianos (default: the cache, `pianonotes data pianos`)
    # Every corpus piece of the training split once, cut into consecutive clips (``hours`` is then not used
    # for the training split: its length follows from the corpus and the corpus weight).
    whole_split: bool = False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["augment"] = self.augment.to_dict()
        if not self.whole_split:  # datasets made before the option keep their config (and resume)
            d.pop("whole_split")
        return d


def soundfont_path(name: str, *, evaluation_only: bool = False) -> str:
    """The file of a soundfont name (or path); a sampled piano's name (``salamander``, ``iowa``) stands
    for itself and is checked by :func:`sampled_piano`."""
    from pianonotes.datasets.synth.pianos import PIANOS

    if name in PIANOS:
        return name
    reserved_msg = ("the MuseScore General soundfont is reserved for evaluation on an unseen piano "
                    f"(--evaluation-only); choose from {', '.join(list(constants.TRAIN_SOUNDFONTS) + list(constants.HELDOUT_SOUNDFONTS))}")
    if evaluation_only and name in constants.RESERVED_SOUNDFONTS:
        path = constants.RESERVED_SOUNDFONTS[name]
        if not Path(path).is_file():
            raise PianonotesError(f"{path} not found; install it (Debian: {constants.RESERVED_SOUNDFONT_PACKAGE})")
        digest = soundfont_sha256(path)
        allowed = {p for p in {**constants.TRAIN_SOUNDFONTS, **constants.HELDOUT_SOUNDFONTS}.values() if Path(p).is_file()}
        if digest not in constants.RESERVED_SOUNDFONT_SHA256 and digest in {soundfont_sha256(p) for p in allowed}:
            real = os.path.realpath(path)
            raise PianonotesError(f"{path} is {real}, a training soundfont, not MuseScore General: install "
                                  f"{constants.RESERVED_SOUNDFONT_PACKAGE} (Debian) so the unseen piano is really unseen")
        return path
    if name in constants.RESERVED_SOUNDFONTS or "musescore" in name.lower():
        raise PianonotesError(reserved_msg)
    path = {**constants.TRAIN_SOUNDFONTS, **constants.HELDOUT_SOUNDFONTS}.get(name, name)
    check_soundfont(path)
    if soundfont_sha256(path) in constants.RESERVED_SOUNDFONT_SHA256:  # the reserved piano under another name
        raise PianonotesError(f"{path} is the reserved MuseScore General soundfont (same content); " + reserved_msg)
    return path


@functools.lru_cache(maxsize=32)
def _sha256_cached(real: str, size: int, mtime: float) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(real, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def soundfont_sha256(path: str) -> str:
    """The content hash of a soundfont (links resolved; cached per file version)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return _sha256_cached(real, st.st_size, st.st_mtime)


_SAMPLE_SETS: dict = {}


def sampled_piano(name: str, root: str | None = None):
    """The decoded sample set of a sampled piano, loaded once per process."""
    from pianonotes.datasets.synth import pianos

    key = (name, root)
    if key not in _SAMPLE_SETS:
        _SAMPLE_SETS[key] = pianos.load(name, root)
    return _SAMPLE_SETS[key]


@dataclasses.dataclass(frozen=True)
class ShardJob:
    split: str
    index: int
    out: str


def plan(cfg: SynthConfig, out: Path) -> list[ShardJob]:
    jobs = []
    for split in cfg.splits:
        if split == "train" and cfg.whole_split:
            jobs += [ShardJob(split, i, str(out)) for i in range(len(cover_plan(cfg)))]
            continue
        seconds = cfg.hours * 3600 if split == "train" else cfg.eval_minutes * 60
        n = max(1, math.ceil(seconds / cfg.shard_seconds)) if seconds > 0 else 0
        jobs += [ShardJob(split, i, str(out)) for i in range(n)]
    return jobs


@dataclasses.dataclass(frozen=True)
class Segment:
    """One clip of a corpus piece in ``whole_split`` mode: ``seconds`` of it from ``start`` (both in the
    piece's own time, before tempo variation). A piece's segments are consecutive and do not overlap, so
    every note onset of the piece falls in exactly one of them."""

    ref: str  # the piece's MIDI path
    start: float
    seconds: float


def corpus_segments(pieces: Sequence[sources.Piece], cfg: SynthConfig) -> list[Segment]:
    """Every training piece cut into consecutive clips of ``clip_seconds`` (a short tail joins the clip
    before it), in a seeded random order."""
    lo, hi = cfg.clip_seconds
    segs: list[Segment] = []
    for piece in sorted((p for p in pieces if p.split == "train"), key=lambda p: p.ref):
        total = float(piece.seconds)
        if total <= 0:
            raise PianonotesError(f"the corpus manifest gives no length for {piece.ref}; --whole-split needs "
                                  "the seconds column of manifest.csv")
        rng = np.random.default_rng([cfg.seed, 7, zlib.crc32(_rel(piece.ref).encode())])
        start, cuts = 0.0, []
        while start < total:
            length = float(rng.uniform(lo, hi))
            if total - (start + length) < lo / 2:  # a short tail: this clip runs to the end
                length = total - start
            cuts.append((start, length))
            start += length
        segs += [Segment(piece.ref, round(s, 4), round(n, 4)) for s, n in cuts]
    order = np.random.default_rng([cfg.seed, 8]).permutation(len(segs))
    return [segs[i] for i in order]


def _corpus_share(cfg: SynthConfig) -> float:
    total = sum(w for w in cfg.weights.values() if w > 0)
    share = cfg.weights.get("corpus", 0) / total if total else 0.0
    if share <= 0:
        raise PianonotesError("--whole-split renders the corpus: give it a weight above 0 (--weights corpus=...)")
    return share


_COVER_PLANS: dict[str, tuple[tuple[Segment, ...], ...]] = {}


def _make_cover_plan(cfg: SynthConfig) -> tuple[tuple[Segment, ...], ...]:
    segs = corpus_segments(_pieces(cfg)["corpus"], cfg)
    per_shard = cfg.shard_seconds * _corpus_share(cfg)
    shards: list[list[Segment]] = [[]]
    filled = 0.0
    for seg in segs:
        if shards[-1] and filled + seg.seconds / 2 > per_shard:  # closest to the corpus share of a shard
            shards.append([])
            filled = 0.0
        shards[-1].append(seg)
        filled += seg.seconds
    return tuple(tuple(s) for s in shards if s)


def cover_plan(cfg: SynthConfig) -> tuple[tuple[Segment, ...], ...]:
    """``whole_split``: the corpus segments of each training shard (about ``shard_seconds`` times the
    corpus weight each; the other sources fill the rest of the shard)."""
    key = json.dumps(cfg.to_dict(), sort_keys=True)
    if key not in _COVER_PLANS:
        _COVER_PLANS[key] = _make_cover_plan(cfg)
    return _COVER_PLANS[key]


def shard_paths(job: ShardJob) -> tuple[Path, Path]:
    base = Path(job.out) / job.split / f"shard-{job.index:05d}"
    return base.with_suffix(".flac"), base.with_suffix(".json")


def is_done(job: ShardJob) -> bool:
    flac, js = shard_paths(job)
    return flac.exists() and js.exists()


def _pieces(cfg: SynthConfig) -> dict[str, list[sources.Piece]]:
    pieces: dict[str, list[sources.Piece]] = {"corpus": [], "music21": []}
    if cfg.weights.get("corpus", 0) > 0:
        folder = cfg.midi_dir or sources.default_corpus_dir()
        if folder is None:
            raise PianonotesError("no MIDI corpus found; pass --midi-dir or set the corpus weight to 0")
        pieces["corpus"] = sources.corpus_pieces(folder)
    if cfg.weights.get("music21", 0) > 0:
        pieces["music21"] = sources.music21_pieces()
    return pieces


@functools.lru_cache(maxsize=64)
def _load_cached(piece: sources.Piece) -> Performance:
    return sources.load_piece(piece)


def make_shard(job: ShardJob, cfg: SynthConfig, pieces: dict[str, list[sources.Piece]]) -> dict:
    """Render one shard and write it atomically; returns its summary."""
    from pianonotes.audio import write_audio
    from pianonotes.fileio import write_text_atomic

    split_id = sources.SPLITS.index(job.split) if job.split in sources.SPLITS else 9
    rng = np.random.default_rng([cfg.seed, split_id, job.index])
    sf_name = str(rng.choice(list(cfg.soundfonts)))
    sf_path = soundfont_path(sf_name, evaluation_only=cfg.evaluation_only)
    avail = {k: [p for p in v if p.split == job.split] for k, v in pieces.items()}
    weights = {k: w for k, w in cfg.weights.items() if w > 0 and (k == "textures" or avail.get(k))}
    if not weights:
        raise PianonotesError(f"no sources for split {job.split}")
    names = sorted(weights)
    probs = np.array([weights[k] for k in names], float)
    probs /= probs.sum()
    clips: list[Performance] = []
    info: list[dict] = []
    total = 0.0
    covered = cfg.whole_split and job.split == "train"
    if covered:  # this shard's share of every training piece; the other sources fill the rest
        by_ref = {p.ref: p for p in avail.get("corpus", [])}
        for seg in cover_plan(cfg)[job.index]:
            piece = by_ref[seg.ref]
            perf = _load_cached(piece).excerpt(seg.start, seg.seconds)
            perf, var = perf.varied(rng, tempo=cfg.tempo, transpose=cfg.transpose,
                                    velocity_scale=tuple(cfg.velocity_scale), velocity_jitter=6.0)
            total += perf.duration
            if len(perf.keys) == 0:  # a silent stretch of the piece: nothing to label
                continue
            meta = {"source": "corpus", "corpus": piece.corpus, "piece": _rel(piece.ref), "start": seg.start,
                    "license": piece.license, **var, "program": int(rng.choice(PIANO_PROGRAMS))}
            clips.append(perf)
            info.append(meta)
        others = [k for k in names if k != "corpus"]
        if others:
            probs = np.array([weights[k] for k in others], float)
            probs /= probs.sum()
        names = others
    while names and total < cfg.shard_seconds:
        src = names[int(rng.choice(len(names), p=probs))]
        length = float(rng.uniform(*cfg.clip_seconds))
        if src == "textures":
            perf, kind = generate(rng, length)
            meta = {"source": "textures", "texture": kind, "license": "generated (CC0)"}
        else:
            cand = avail[src]
            piece = cand[int(rng.integers(len(cand)))]
            full = _load_cached(piece)
            perf, start = sources.random_excerpt(full, rng, length)
            meta = {"source": src, "corpus": piece.corpus, "piece": _rel(piece.ref), "start": round(start, 3),
                    "license": piece.license}
        perf, var = perf.varied(rng, tempo=cfg.tempo, transpose=cfg.transpose,
                                velocity_scale=tuple(cfg.velocity_scale), velocity_jitter=6.0)
        if len(perf.keys) == 0:
            continue
        meta.update(var)
        meta["program"] = int(rng.choice(PIANO_PROGRAMS))
        clips.append(perf)
        info.append(meta)
        total += perf.duration
    if covered:  # the corpus clips and the fill in a random order
        order = rng.permutation(len(clips))
        clips, info = [clips[i] for i in order], [info[i] for i in order]
    keys, pedals, starts, length = layout(clips)
    for meta, s, clip in zip(info, starts, clips):
        meta["offset"] = round(s, 4)
        meta["seconds"] = round(clip.duration, 4)
    from pianonotes.datasets.synth.pianos import PIANOS

    if sf_name in PIANOS:
        from pianonotes.datasets.synth.sampler import render_sampled

        audio, drawn = render_sampled(keys, pedals, length, sampled_piano(sf_name, cfg.pianos_dir), rng,
                                      sample_rate=cfg.sample_rate)
        for meta in info:
            meta.pop("program", None)
            meta.update(drawn)
    else:
        audio = render(keys, pedals, length, sf_path, info[0]["program"], cfg.sample_rate,
                       programs_at=[(s, m["program"]) for s, m in zip(starts, info)])
    # augmentation per clip (each clip with its tail gets its own chain)
    bounds = [int(round(s * cfg.sample_rate)) for s in starts] + [len(audio)]
    for i, meta in enumerate(info):
        a, b = bounds[i], bounds[i + 1]
        audio[a:b], meta["augment"] = augment(audio[a:b], cfg.sample_rate, rng, cfg.augment)
    perf = Performance(np.array(keys, float).reshape(-1, 4), pedals, length)
    notes = perf.sounding_notes()
    labels = {
        "split": job.split,
        "index": job.index,
        "seed": [cfg.seed, split_id, job.index],
        "sample_rate": cfg.sample_rate,
        "seconds": round(length, 4),
        "soundfont": {"name": sf_name, "path": sf_path},
        "notes": [[round(n.onset, 6), round(n.offset, 6), n.pitch, n.velocity, round(n.release, 6)] for n in notes],
        "pedals": [[round(p.start, 6), round(p.end, 6)] for p in pedals],
        "clips": info,
    }
    flac, js = shard_paths(job)
    flac.parent.mkdir(parents=True, exist_ok=True)
    write_audio(flac, audio, cfg.sample_rate, format="FLAC", subtype="PCM_24")
    write_text_atomic(js, json.dumps(labels, separators=(",", ":")))
    return {"split": job.split, "index": job.index, "seconds": length, "notes": len(notes)}


def _rel(path: str) -> str:
    corpus = sources.default_corpus_dir()
    try:
        return str(Path(path).relative_to(corpus)) if corpus else path
    except ValueError:
        return path


def _worker(args):
    job, cfg, pieces = args
    if _PARENT is not None and os.getppid() != _PARENT:  # the parent died: render nothing more
        os._exit(1)
    try:
        return make_shard(job, cfg, pieces)
    except PianonotesError as exc:
        return {"error": str(exc), "split": job.split, "index": job.index}
    except OSError as exc:  # a full or vanished disk under the renderer (the shard itself is written atomically)
        return {"error": f"rendering {job.split} shard {job.index} failed: {exc.strerror or exc}; free some space "
                         "and run the same command again to resume", "split": job.split, "index": job.index}


_PARENT: int | None = None  # in a render worker: the pid of the process that started it


def _worker_init(parent: int) -> None:
    """In each render worker: end with the parent. Linux delivers SIGTERM when the parent dies
    (PR_SET_PDEATHSIG); elsewhere the worker checks before each shard."""
    global _PARENT
    _PARENT = parent
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(1)


def synthesize(out: str | os.PathLike, cfg: SynthConfig, *, workers: int = 1,
               on_progress: Callable[[dict, int, int], None] | None = None) -> dict:
    """Render the dataset described by ``cfg`` into ``out`` (resuming any earlier run there).

    Returns the manifest. Raises PianonotesError on the first failing shard (shards already written stay).
    """
    from pianonotes.datasets.synth.pianos import PIANOS

    out = Path(out)
    if any(sf not in PIANOS for sf in cfg.soundfonts):
        fluidsynth_binary()
    for sf in cfg.soundfonts:
        soundfont_path(sf, evaluation_only=cfg.evaluation_only)
        if sf in PIANOS:
            sampled_piano(sf, cfg.pianos_dir)  # loaded before the workers fork: shared, and fails early
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PianonotesError(f"cannot write to {out}: {exc.strerror}; choose a writable folder") from exc
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise PianonotesError(f"{manifest_path} is damaged ({exc}); render into a new folder, or delete the "
                                  "manifest to resume with these settings") from exc
        if old.get("config") != json.loads(json.dumps(cfg.to_dict())):
            raise PianonotesError(f"{out} holds a dataset made with other settings; use a new folder")
    pieces = _pieces(cfg)
    manifest = _manifest(cfg, pieces)
    from pianonotes.fileio import write_text_atomic

    write_text_atomic(manifest_path, json.dumps(manifest, indent=2))
    jobs = plan(cfg, out)
    todo = [j for j in jobs if not is_done(j)]
    done = len(jobs) - len(todo)
    if on_progress:
        on_progress({}, done, len(jobs))
    results: Iterable[dict]
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
        pool = ctx.Pool(workers, initializer=_worker_init, initargs=(os.getpid(),))
        results = pool.imap_unordered(_worker, [(j, cfg, pieces) for j in todo])
    else:
        pool = None
        results = (_worker((j, cfg, pieces)) for j in todo)
    try:
        for res in results:
            if "error" in res:
                raise PianonotesError(res["error"])
            done += 1
            if on_progress:
                on_progress(res, done, len(jobs))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    manifest["totals"] = summarize(out)
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2))
    return manifest


def summarize(out: Path) -> dict:
    totals = {}
    for split in sources.SPLITS:
        files = sorted((out / split).glob("shard-*.json"))
        secs = notes = 0.0
        for f in files:
            try:
                d = json.loads(f.read_text())
                secs += float(d["seconds"])
                notes += len(d["notes"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise PianonotesError(f"dataset shard {f} is damaged ({type(exc).__name__}: {exc}); delete it and "
                                      "its .flac, then run the same command again to render it afresh") from exc
        if files:
            totals[split] = {"shards": len(files), "hours": round(secs / 3600, 3), "notes": int(notes)}
    return totals


def _manifest(cfg: SynthConfig, pieces: dict[str, list[sources.Piece]]) -> dict:
    from pianonotes.datasets.synth.pianos import PIANOS

    licenses = sorted({p.license for v in pieces.values() for p in v} | {"generated textures: CC0"})
    return {
        "format": "pianonotes-synth-v1",
        "config": json.loads(json.dumps(cfg.to_dict())),
        "soundfonts": {name: soundfont_path(name, evaluation_only=cfg.evaluation_only) for name in cfg.soundfonts},
        "evaluation_only": cfg.evaluation_only,
        "sources": {k: len(v) for k, v in pieces.items()},
        "licenses": licenses,
        "attribution": "piano-midi.de files: Bernd Krueger, www.piano-midi.de (CC BY-SA 3.0 DE); "
                       "POP909: MIT (POP909-Dataset); music21 corpus; generated textures",
        "renderer": "FluidSynth (reverb and chorus off) for soundfonts, pianonotes.datasets.synth.sampler for sampled "
                    "pianos; augmentation in pianonotes.datasets.synth.augment",
        "pianos": {name: PIANOS[name] for name in cfg.soundfonts if name in PIANOS},
    }
