"""Transcribe audio files with the streaming engine (bounded memory, chunk-size independent)."""

from __future__ import annotations

import dataclasses
import glob
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from pianonotes import constants
from pianonotes.decode import Activations, DecodeOptions
from pianonotes.errors import PianonotesError
from pianonotes.notes import Note, PedalEvent

BLOCK_SECONDS = 30.0


@dataclasses.dataclass
class Transcription:
    """One recording transcribed: what :meth:`Transcriber.transcribe_file` (and ``transcribe_blocks``)
    return. Note and pedal times are seconds from the start of the file (an excerpt keeps them absolute:
    ``time_offset``)."""

    source: str  # the file (or the caller's label for the blocks)
    notes: list[Note]  # sorted by onset; each with its sounding end and, v2 models, its key release
    seconds: float  # duration of the audio transcribed (the excerpt's), in seconds
    compute_seconds: float  # wall-clock seconds the front end, network and decoder took
    # with keep_activations: the network's probabilities at the model's frame rate, (T, 88) float16 per
    # head (v2's pedal (T, 1)), with the decoding options used
    activations: Activations | None = None
    pedals: list[PedalEvent] = dataclasses.field(default_factory=list)  # the sustain pedal (v2 models)

    @property
    def x_real_time(self) -> float:
        return self.seconds / max(self.compute_seconds, 1e-9)


def expand_inputs(items: Sequence[str], *, recursive: bool = False) -> list[Path]:
    """Files, globs and folders to a sorted list of audio files. Raises for anything that matches nothing."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(q for q in p.glob(pattern) if q.is_file() and q.suffix.lower() in constants.AUDIO_EXTENSIONS)
            if not found:
                raise PianonotesError(
                    f"no audio files ({', '.join(constants.AUDIO_EXTENSIONS)}) in folder {p}"
                    + ("" if recursive else "; use --recursive to search subfolders"))
            out += found
        elif p.exists():
            out.append(p)
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(q) for q in glob.glob(item, recursive=recursive) if Path(q).is_file())
            if not found:
                raise PianonotesError(f"no files match {item}")
            out += found
        else:
            raise PianonotesError(f"{item}: no such file or folder")
    seen, unique = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


class Transcriber:
    """A network with its config and decoding options; transcribes files, audio blocks or features.

    Make one with :meth:`from_checkpoint` (``Transcriber(path, ...)`` is the same). The options are
    fixed at construction: pass ``overrides`` (``onset_threshold``, ``frame_threshold``,
    ``min_note_seconds``; None keeps the checkpoint's calibrated value) or whole ``options``.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, device: str = "auto", backend: str = "auto",
                 threads: int | None = None, options: DecodeOptions | None = None,
                 overrides: dict | None = None, chunk_frames: int = 2000):
        from pianonotes.inference import load_network

        self.network, self.config = load_network(model_path, device=device, backend=backend, threads=threads)
        self.device = self.network.device
        self._options = options if options is not None else self.config.decode_options(**(overrides or {}))
        self.chunk_frames = chunk_frames
        self.frontend = self.config.make_frontend()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, *, device: str = "auto", backend: str = "auto",
                        threads: int | None = None, options: DecodeOptions | None = None,
                        overrides: dict | None = None, chunk_frames: int = 2000) -> "Transcriber":
        """Load a checkpoint (JSON, safetensors or stem; None: the shipped AudioNet).

        ``backend``: 'auto' (ONNX Runtime when the checkpoint has an ONNX export, else PyTorch), 'onnx' or
        'torch'. ``device``: auto | cpu | cuda. ``threads``: ONNX Runtime threads (None: one per core).
        """
        return cls(path, device=device, backend=backend, threads=threads, options=options, overrides=overrides,
                   chunk_frames=chunk_frames)

    @property
    def options(self) -> DecodeOptions:
        return self._options

    @property
    def backend(self) -> str:
        """'onnx' or 'torch'."""
        return self.network.backend

    @property
    def model(self):
        """The torch module (torch backend only; None on ONNX Runtime)."""
        from pianonotes.inference import TorchNetwork

        return self.network.model if isinstance(self.network, TorchNetwork) else None

    def notice(self) -> str | None:
        """A one-line hint for the user when the network runs on the slower PyTorch fallback."""
        if self.backend == "torch" and self.config.onnx is None and self.config.path is not None:
            stem = self.config.path.with_suffix("")
            return f"{stem} has no ONNX export, so PyTorch ran it (slow start-up): pianonotes export-onnx {stem}"
        return None

    def infer_features(self, feats: np.ndarray) -> dict[str, np.ndarray]:
        """Probabilities for (T, n_features) features of one recording from its start: {'frame', 'onset',
        'velocity', other heads}, (T, 88); spectrum-matched first when the checkpoint says so, as
        :meth:`engine` does."""
        from pianonotes.engine import infer_features

        match = self.config.make_matcher(self.frontend)
        if match is not None:
            feats = match.push(feats)
        return infer_features(self.network, feats, chunk_frames=self.chunk_frames)

    def engine(self, *, time_offset: float = 0.0):
        from pianonotes.engine import Engine

        return Engine(self.network, self.config, options=self.options, chunk_frames=self.chunk_frames,
                      time_offset=time_offset)

    def transcribe_blocks(self, blocks: Iterable[np.ndarray], *, source: str = "", time_offset: float = 0.0,
                          keep_activations: bool = False,
                          on_progress: Callable[[float], None] | None = None) -> Transcription:
        t0 = time.perf_counter()
        eng = self.engine(time_offset=time_offset)
        notes: list[Note] = []
        acts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for block in blocks:
            upd = eng.push(block)
            notes += upd.notes
            if keep_activations:
                acts.append(_kept(upd))
            if on_progress:
                on_progress(eng.samples_in / eng.sample_rate)
        upd = eng.finish()
        notes += upd.notes
        if keep_activations:
            acts.append(_kept(upd))
        seconds = eng.samples_in / eng.sample_rate
        activations = None
        if keep_activations:
            extra = {k: np.concatenate([a[3][k] for a in acts]) for k in acts[0][3]}
            activations = Activations(*(np.concatenate([a[i] for a in acts]) for i in range(3)), fps=eng.fps,
                                      source=source, decode_defaults=dataclasses.asdict(self.options), extra=extra)
        return Transcription(source, sorted(notes), seconds, time.perf_counter() - t0, activations,
                             list(eng.decoder.pedals))

    def transcribe_file(self, path: str | os.PathLike, *, start: float | None = None, end: float | None = None,
                        keep_activations: bool = False,
                        on_progress: Callable[[float], None] | None = None) -> Transcription:
        """Notes of one audio file (``start``/``end`` in seconds select an excerpt; times stay absolute)."""
        from pianonotes.audio import audio_info, iter_audio_blocks, load_audio

        sr = self.frontend.sample_rate
        if start is not None or end is not None:
            if start is not None and end is not None and end <= start:
                raise PianonotesError(f"--end ({end}) must be after --start ({start})")
            length = audio_info(path)[2]
            if start is not None and start >= length:
                raise PianonotesError(f"--start {start:g} s is past the end of {Path(path).name} "
                                      f"({length:.1f} s long); give a start within the recording")
            audio = load_audio(path, sr, start=start, end=end)
            blocks: Iterable[np.ndarray] = (audio[i: i + int(BLOCK_SECONDS * sr)]
                                            for i in range(0, len(audio), int(BLOCK_SECONDS * sr)))
        else:
            blocks = iter_audio_blocks(path, sr, BLOCK_SECONDS)
        return self.transcribe_blocks(blocks, source=str(path), time_offset=start or 0.0,
                                      keep_activations=keep_activations, on_progress=on_progress)


def transcribe(path: str | os.PathLike, *, model: str | os.PathLike | None = None,
               options: DecodeOptions | None = None, device: str = "auto") -> list[Note]:
    """Convenience: the notes of one file with the shipped (or given) model."""
    return Transcriber.from_checkpoint(model, device=device, options=options).transcribe_file(path).notes


# ------------------------------------------------------------------------------------------- batches
@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """What every file of a ``transcribe`` batch shares (picklable: it travels to worker processes)."""

    model: str | None = None  # checkpoint; None: the shipped one
    device: str = "auto"
    overrides: tuple[tuple[str, float | None], ...] = ()  # decoding thresholds, None = the checkpoint's
    start: float | None = None
    end: float | None = None
    bpm: float | None = None
    time_signature: str | None = None  # None: estimated
    overwrite: bool = False
    roll: bool = False
    save_activations: str | None = None  # one input only
    from_activations: bool = False  # inputs are .npz activations: decode without the network
    note_length: str = "key"  # what note ends mean in MIDI/CSV/JSON: "key" (+ CC64) or "sounding"
    rhythm: str = "fine"  # what the score may write: a constants.RHYTHM_GRIDS name


@dataclasses.dataclass
class FileResult:
    """One input's outcome: the notes' count and where they went, or the error that stopped it."""

    path: Path
    notes: int = 0
    seconds: float = 0.0
    x_real_time: float = 0.0
    written: list[Path] = dataclasses.field(default_factory=list)
    error: str | None = None


def default_jobs() -> int:
    """Worker processes for a batch: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# A worker process costs about 0.4 CPU seconds to start (imports, model): by default a batch gets one
# more worker per this much audio (at ~150x real time per core, about a second of work).
WORKER_MIN_SECONDS = 120.0


def _kept(upd) -> tuple:
    """One update's probabilities as float16 for saved activations: frame, onset, velocity, other heads."""
    return (upd.frame.astype(np.float16), upd.onset.astype(np.float16), upd.velocity.astype(np.float16),
            {k: v.astype(np.float16) for k, v in upd.extra.items() if k in ("key", "pedal")})


def choose_jobs(requested: int | None, durations: Sequence[float]) -> int:
    """Worker processes for a batch of files lasting ``durations`` seconds: ``requested`` (at most one per
    file), or by default one per core but no more than one per ``WORKER_MIN_SECONDS`` of audio."""
    if requested is not None:
        return max(1, min(int(requested), len(durations)))
    return max(1, min(default_jobs(), len(durations), int(sum(durations) // WORKER_MIN_SECONDS)))


def process_file(transcriber: Transcriber | None, path: Path, outputs: Sequence[Path], settings: BatchSettings,
                 on_progress: Callable[[float], None] | None = None,
                 on_export: Callable[[str, float], None] | None = None) -> FileResult:
    """Transcribe (or re-decode) one input and write its outputs; a PianonotesError becomes the result's
    ``error`` so that a batch goes on. ``on_progress(seconds)`` hears the audio transcribed so far;
    ``on_export(stage, fraction)`` then hears the outputs being written, each stage from 0.0 to 1.0
    ("plan", "score", "musicxml", "midi", "engrave", "pages": :func:`pianonotes.export.write_notes`;
    "roll" for ``--roll``)."""
    from pianonotes.export import write_all, write_piano_roll
    from pianonotes.notes import check_note_length, rhythm_grid, with_note_length

    try:
        check_note_length(settings.note_length)
        if not settings.overwrite:
            for o in outputs:
                if o.exists():
                    raise PianonotesError(f"{o} exists; pass --overwrite to replace it")
        if settings.from_activations:
            acts = Activations.load(path)
            options = DecodeOptions.for_model(acts.decode_defaults, **dict(settings.overrides))
            notes, pedals = acts.decode(options), acts.decode_pedal(options)
            seconds, xrt = len(acts.frame) / acts.fps, 0.0
            title = path.name[: -len(".npz")] if path.name.endswith(".npz") else path.stem
        else:
            prefetch = _prefetch_writers(outputs)
            try:
                res = transcriber.transcribe_file(path, start=settings.start, end=settings.end,
                                                  keep_activations=settings.save_activations is not None,
                                                  on_progress=on_progress)
            finally:
                if prefetch is not None:
                    prefetch.join()
            notes, pedals, seconds, xrt = res.notes, res.pedals, res.seconds, res.x_real_time
            if settings.save_activations:
                res.activations.save(settings.save_activations)
            title = path.stem
        # one beat/meter/key analysis for every score and MIDI output of this input
        written: list[Path] = write_all(outputs, notes, title=title.replace("_", " "), bpm=settings.bpm,
                                        time_signature=settings.time_signature, overwrite=settings.overwrite,
                                        pedals=pedals, note_length=settings.note_length, progress=on_export,
                                        grid=rhythm_grid(settings.rhythm))
        if settings.roll:  # named after the (first) output: -o scores/take.mid -> scores/take.roll.png
            rp = outputs[0].with_name(f"{outputs[0].stem}.roll.png")
            if on_export is not None:
                on_export("roll", 0.0)
            write_piano_roll(rp, with_note_length(notes, pedals, settings.note_length), title=title)
            written.append(rp)
            if on_export is not None:
                on_export("roll", 1.0)
        return FileResult(path, len(notes), seconds, xrt, [Path(w) for w in written])
    except PianonotesError as exc:
        return FileResult(path, error=str(exc))


# Modules that writing an output imports on first use (mido brings importlib.metadata and email: 45 ms).
_WRITER_MODULES = {"midi": ("numpy.fft", "pianonotes.export.midi", "mido"), "musicxml": ("numpy.fft", "music21"),
                   "engraved": ("numpy.fft", "music21")}


def _prefetch_writers(outputs: Sequence[Path]):
    """Import the modules that writing ``outputs`` will need on a background thread, while the file is
    transcribed: decoding, the FFTs and ONNX Runtime release the GIL, so these imports (which hold it)
    take the other core instead of adding to the wall time. The started thread, or None."""
    import sys
    import threading

    from pianonotes.export import FORMATS

    names = [m for o in outputs for m in _WRITER_MODULES.get(FORMATS.get(Path(o).suffix.lower(), ""), ())]
    names = [m for m in dict.fromkeys(names) if m not in sys.modules]
    if not names:
        return None

    def load() -> None:
        import importlib

        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # the writer imports it again and reports the error
                return

    thread = threading.Thread(target=load, name="pianonotes-prefetch", daemon=True)
    thread.start()
    return thread


_WORKER: dict = {}


def _worker_init(settings: BatchSettings, threads: int) -> None:
    try:
        _WORKER["transcriber"] = Transcriber.from_checkpoint(settings.model, device=settings.device, threads=threads,
                                                             overrides=dict(settings.overrides))
    except PianonotesError as exc:
        _WORKER["error"] = str(exc)


def _worker_ready() -> None:
    """A no-op task: its result comes once the worker process is up (the initializer has run)."""


def _worker_file(path: Path, outputs: list[Path], settings: BatchSettings) -> FileResult:
    if "error" in _WORKER:
        return FileResult(path, error=_WORKER["error"])
    return process_file(_WORKER.get("transcriber"), path, outputs, settings)


def run_batch(plan: dict[Path, list[Path]], settings: BatchSettings, *, jobs: int = 1,
              transcriber: Transcriber | None = None,
              on_progress: Callable[[Path, float], None] | None = None,
              on_export: Callable[[Path, str, float], None] | None = None) -> Iterator[FileResult]:
    """Process every input of ``plan`` ({input: outputs}); yields each :class:`FileResult` when it is done.

    ``jobs`` > 1 transcribes that many files at a time: this process and ``jobs - 1`` worker processes,
    each with the model loaded once (cores / jobs ONNX Runtime threads), taking the next file as they
    finish one; the files' outputs are the same as with one process. This process starts on the files
    at once, while the workers start (about 0.4 CPU seconds each), and does the rest itself if a worker
    dies. With one job the files run here, through ``transcriber`` (loaded from ``settings`` when None).
    ``on_progress(path, seconds)`` reports audio seconds done within the current file,
    ``on_export(path, stage, fraction)`` how far writing its outputs has got (:func:`process_file`; both
    with one job only).
    """
    files = list(plan)
    jobs = max(1, min(int(jobs), len(files)))
    if jobs == 1 or settings.from_activations:
        if transcriber is None and not settings.from_activations:
            transcriber = Transcriber.from_checkpoint(settings.model, device=settings.device,
                                                      overrides=dict(settings.overrides))
        for path in files:
            cb = (lambda sec, path=path: on_progress(path, sec)) if on_progress else None
            ex = (lambda stage, f, path=path: on_export(path, stage, f)) if on_export else None
            yield process_file(transcriber, path, plan[path], settings, cb, ex)
        return
    yield from _run_parallel(plan, settings, jobs)


def _run_parallel(plan: dict[Path, list[Path]], settings: BatchSettings, jobs: int) -> Iterator[FileResult]:
    import multiprocessing
    import queue
    import threading
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, default_jobs() // jobs)
    try:  # this process's own share, with as many ONNX Runtime threads as each worker
        here = Transcriber.from_checkpoint(settings.model, device=settings.device, threads=threads,
                                           overrides=dict(settings.overrides))
    except PianonotesError as exc:
        for path in plan:
            yield FileResult(path, error=str(exc))
        return
    todo = deque(plan)
    lock = threading.Lock()
    done: queue.Queue = queue.Queue()
    stop = threading.Event()

    def take() -> Path | None:
        with lock:
            return todo.popleft() if todo and not stop.is_set() else None

    def feed() -> None:
        """One worker's files, one at a time (a thread here per worker process); each file taken ends as
        one item on ``done``: its result, or the exception for the main thread to raise. Files are taken
        only once the worker has started (model loaded), so that none waits for it meanwhile."""
        try:
            pool.submit(_worker_ready).result()
        except BaseException:  # a broken pool or an interrupted start: this process does the files
            return
        while (path := take()) is not None:
            try:
                try:
                    fut = pool.submit(_worker_file, path, list(plan[path]), settings)
                except BrokenProcessPool:  # a worker died on another file: this process does this one
                    with lock:
                        todo.appendleft(path)
                    done.put(None)  # wakes the main thread, which may be waiting for results
                    return
                try:
                    done.put(fut.result())
                except BrokenProcessPool:
                    done.put(FileResult(path, error="its worker process died (out of memory?); run it again alone"))
                    return
            except BaseException as exc:  # handed to the main thread, which raises it
                done.put(exc)
                return

    ctx = multiprocessing.get_context("spawn")  # no state (threads, sessions, locks) inherited from here
    pool = ProcessPoolExecutor(jobs - 1, mp_context=ctx, initializer=_worker_init, initargs=(settings, threads))
    feeders = [threading.Thread(target=feed, name=f"pianonotes-worker-{i}", daemon=True) for i in range(jobs - 1)]
    try:
        for t in feeders:
            t.start()
        n_left = len(plan)
        while n_left:
            path = take()
            if path is not None:  # this process's next file, while the workers do theirs
                n_left -= 1
                yield process_file(here, path, plan[path], settings)
            items = [done.get()] if path is None else []  # nothing left to take: wait for the workers
            while True:  # and whatever else they finished meanwhile
                try:
                    items.append(done.get_nowait())
                except queue.Empty:
                    break
            for item in items:
                if isinstance(item, BaseException):
                    raise item
                if item is not None:
                    n_left -= 1
                    yield item
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        for t in feeders:
            t.join()
