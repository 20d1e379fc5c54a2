"""The server's work without the web framework: the model, takes, recordings and uploads.

Everything here is plain Python and threads, so it is tested without a socket too. A take is a
``listen`` journal folder (``live.takes_dir()/<id>/``: ``take.json``, ``audio.f32``, ``events.jsonl``)
plus ``out/take.<fmt>`` built by :func:`pianonotes.export.write_notes`. Take ids are folder names made
by :class:`pianonotes.live.Journal`; a client id is only ever compared with the names listed in that
folder, never joined into a path unchecked.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pianonotes import constants
from pianonotes import serve
from pianonotes.errors import PianonotesError
from pianonotes.notes import Note

_ID = re.compile(r"[0-9]{8}-[0-9]{6}(-[0-9]{1,4})?")
MEDIA_TYPES = {
    "mid": "audio/midi",
    "musicxml": "application/vnd.recordare.musicxml+xml",
    "pdf": "application/pdf",
    "svg": "image/svg+xml",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
PCM_FORMATS = {"f32le": np.dtype("<f4"), "s16le": np.dtype("<i2")}
_BUILD_LOCK = threading.Lock()
_JOURNAL_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one client may ask of the server."""

    max_upload_bytes: int = int(serve.MAX_UPLOAD_MB * 1e6)
    max_upload_seconds: float = serve.MAX_UPLOAD_MINUTES * 60
    max_take_seconds: float = serve.MAX_TAKE_MINUTES * 60
    max_recordings: int = serve.MAX_RECORDINGS
    max_block_seconds: float = serve.MAX_BLOCK_SECONDS
    resume_seconds: float = serve.RESUME_SECONDS


# ---------------------------------------------------------------------------------------------- model
@dataclasses.dataclass
class Model:
    """The loaded checkpoint, shared by every connection (each gets its own Engine)."""

    transcriber: Any  # pianonotes.transcribe.Transcriber
    path: Path  # the checkpoint's config JSON (journaled so recovery uses the same model)

    @property
    def sample_rate(self) -> int:
        return int(self.transcriber.frontend.sample_rate)

    def engine(self):
        return self.transcriber.engine()

    @property
    def lookahead_ms(self) -> float:
        """How far past a frame's time its output depends on audio (network + front end), in ms."""
        cfg = self.transcriber.config  # an inference.ModelConfig: load_network fills in the context
        if cfg.lookahead_seconds is not None:
            return 1000.0 * float(cfg.lookahead_seconds)
        fe = self.transcriber.frontend
        return 1000.0 * ((cfg.future_frames or 0) / float(fe.fps) + float(fe.lookahead_seconds))

    @property
    def decode(self) -> dict[str, float]:
        o = self.transcriber.options
        return {"onset_threshold": o.onset_threshold, "frame_threshold": o.frame_threshold,
                "min_note_seconds": o.min_note_seconds}


def load_model(path: str | os.PathLike | None = None) -> Model:
    """The one place the server builds its model: the shipped checkpoint, or ``path``.

    Uses the same public constructor as ``transcribe`` (``Transcriber.from_checkpoint``), on the CPU, so
    a recording, an upload and ``pianonotes transcribe`` run identical engines.
    """
    from pianonotes.nn import checkpoint
    from pianonotes.transcribe import Transcriber

    cfg_path, _ = checkpoint.resolve(path)
    # one inference thread per recording (each LiveSession worker calls the network itself):
    # connections run in parallel, and no runtime thread pool spins between the 20 ms updates
    model = Model(Transcriber.from_checkpoint(cfg_path, device="cpu", threads=1), cfg_path)
    _warm_up(model)
    return model


def _warm_up(model: Model) -> None:
    """Run one second of silence through a throwaway engine and the resampler once, so that the first
    take does not pay for the runtime's first run and soxr's import and first filter (5 ms, measured)."""
    from pianonotes.audio import StreamResampler

    StreamResampler(48000, model.sample_rate).push(np.zeros(48000, np.float32))
    eng = model.engine()
    eng.push(np.zeros(model.sample_rate, np.float32))
    eng.finish()


# --------------------------------------------------------------------------------------------- names
def display_name(raw: str | None, default: str = "upload") -> str:
    """A client's file name made safe to show and to use as a score title (never as a path)."""
    text = unicodedata.normalize("NFC", raw or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if ch.isprintable() and ch not in "<>\"'`")
    text = text.strip().strip(".")[:120]
    return text or default


def download_name(title: str, fmt: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", title).strip(" ._") or "take"
    return f"{stem[:80]}.{fmt}"


# --------------------------------------------------------------------------------------------- takes
class TakeStore:
    """Take folders in ``live.takes_dir()``: listing, lookup by id, building and serving outputs."""

    def __init__(self, model: Model):
        self.model = model
        self._lock = threading.Lock()
        self.building: set[str] = set()

    @property
    def root(self) -> Path:
        from pianonotes.live.journal import takes_dir

        return takes_dir()

    def folder(self, take_id: str) -> Path:
        """The folder of take ``take_id``; PianonotesError (-> 404) for anything else."""
        if not isinstance(take_id, str) or not _ID.fullmatch(take_id):
            raise PianonotesError(f"no take {take_id!r}")
        for p in self._folders():
            if p.name == take_id:
                return p
        raise PianonotesError(f"no take {take_id!r}; it may have been pruned from the cache")

    def _folders(self) -> list[Path]:
        from pianonotes.live.journal import list_takes

        return list_takes()

    def meta(self, folder: Path) -> dict[str, Any]:
        from pianonotes.live.recovery import take_meta

        return take_meta(folder)

    def info(self, folder: Path) -> dict[str, Any]:
        """What the page shows of a take."""
        from pianonotes.live.journal import take_audio_path

        meta = self.meta(folder)
        status = meta.get("status", "?")
        if folder.name in self.building:
            status = "building"
        elif status == "recording" and not _recording_alive(folder.name):
            status = "interrupted"  # the server (or listen) died during the take: recover it
        out = folder / "out"
        downloads = [f for f in serve.OUTPUT_FORMATS if (out / f"take.{f}").exists()]
        pages = 0
        while (out / ("take.svg" if pages == 0 else f"take-{pages + 1}.svg")).exists():
            pages += 1
        return {"id": folder.name, "title": meta.get("title") or folder.name, "kind": meta.get("kind", "listen"),
                "status": status, "seconds": meta.get("seconds"), "notes": meta.get("notes"),
                "interrupted": bool(meta.get("interrupted")), "started": meta.get("started"),
                "downloads": downloads, "pages": pages, "errors": meta.get("build_errors") or {},
                "recoverable": take_audio_path(folder).exists() and (
                    status in ("interrupted", "finished", "failed")
                    or (status == "complete" and bool(meta.get("interrupted")) and not meta.get("recovered")))}

    def list(self) -> list[dict[str, Any]]:
        out = []
        for p in reversed(self._folders()):
            try:
                out.append(self.info(p))
            except PianonotesError:
                continue
        return out

    def output(self, take_id: str, fmt: str, page: int = 1) -> tuple[Path, str, str]:
        """(file, media type, download name) of one output; PianonotesError when there is none."""
        if fmt not in serve.OUTPUT_FORMATS:
            raise PianonotesError(f"unknown format {fmt!r}; use one of {', '.join(serve.OUTPUT_FORMATS)}")
        folder = self.folder(take_id)
        from pianonotes.export import page_path

        name = "take." + fmt
        path = page_path(folder / "out" / name, int(page)) if fmt == "svg" else folder / "out" / name
        if not path.is_file():
            raise PianonotesError(f"take {take_id} has no {fmt} output" + (f" page {page}" if page > 1 else ""))
        title = self.meta(folder).get("title") or take_id
        return path, MEDIA_TYPES[fmt], download_name(str(title), fmt)

    def build(self, folder: Path, notes: list[Note], *, title: str, pedals: list | None = None,
              **meta: Any) -> dict[str, Any]:
        """Write every output format of a take (the same writer as ``transcribe``; ``pedals``: the decoded
        sustain pedal, None where unknown) and mark it complete.

        A format that fails (PDF without cairo, say) is reported in ``errors``; the others are kept.
        """
        from pianonotes.live.recovery import take_meta

        with self._lock:
            self.building.add(folder.name)
        try:
            out = folder / "out"
            if out.exists():
                shutil.rmtree(out)
            out.mkdir()
            errors = _engrave(out, list(notes), title, list(pedals) if pedals is not None else None)
            m = take_meta(folder)
            m.update(meta)
            m.update(status="complete", title=title, notes=len(notes), build_errors=errors)
            from pianonotes.fileio import write_text_atomic

            write_text_atomic(folder / "take.json", json.dumps(m, indent=2, sort_keys=True))
        finally:
            with self._lock:
                self.building.discard(folder.name)
        return self.info(folder)

    def recover(self, take_id: str) -> dict[str, Any]:
        """Rebuild an interrupted take from its journal (re-transcribing its audio like
        ``pianonotes recover``), then its outputs."""
        from pianonotes.live.recovery import recover

        folder = self.folder(take_id)
        if _recording_alive(take_id):
            raise PianonotesError(f"take {take_id} is still recording")
        meta = self.meta(folder)
        rec = recover(folder, model=self.model.path)
        return self.build(folder, rec.notes, title=str(meta.get("title") or take_id), recovered=rec.method,
                          seconds=round(rec.seconds, 3), pedals=rec.pedals)


def new_journal(sample_rate: int, meta: dict[str, Any]):
    """A new take folder (live.Journal), one thread at a time: Journal names folders by the second and
    two takes started in the same second from two threads would otherwise race for one name."""
    from pianonotes.live.journal import Journal

    with _JOURNAL_LOCK:
        return Journal(None, sample_rate, meta)


# --------------------------------------------------------------------------------------- engraving
_ENGRAVER = None


def write_all_formats(out_dir: str, notes: list[Note], title: str, pedals: list | None = None) -> dict[str, str]:
    """Every output format of a take into ``out_dir``/take.<fmt> with :func:`pianonotes.export.write_notes`
    (what ``transcribe`` writes: key releases, and the decoded sustain ``pedals`` as CC64 in the MIDI);
    returns {format: error} for the formats that failed."""
    from pianonotes.export import write_notes

    errors: dict[str, str] = {}
    for fmt in serve.OUTPUT_FORMATS:
        path = Path(out_dir) / f"take.{fmt}"
        try:
            write_notes(path, notes, title=title, overwrite=True, pedals=pedals)
        except PianonotesError as exc:
            errors[fmt] = str(exc).replace(str(path), path.name)
    return errors


def _engrave(out: Path, notes: list[Note], title: str, pedals: list | None = None) -> dict[str, str]:
    """:func:`write_all_formats` in one long-lived worker process, one take at a time.

    verovio loads its fonts for the first thread that makes a toolkit only (a toolkit made in another
    thread cannot engrave), and music21 is not thread-safe, so the server's threads never engrave
    themselves; the separate process also keeps a crash in either library away from the server."""
    global _ENGRAVER
    import concurrent.futures
    import multiprocessing

    with _BUILD_LOCK:
        if _ENGRAVER is None:
            _ENGRAVER = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        pool = _ENGRAVER
    try:
        return pool.submit(write_all_formats, str(out), notes, title, pedals).result()
    except concurrent.futures.process.BrokenProcessPool as exc:
        with _BUILD_LOCK:
            if _ENGRAVER is pool:
                _ENGRAVER = None
        raise PianonotesError("the score engraver crashed while writing this take; its journal is kept: "
                              "recover the take to try again") from exc


# -------------------------------------------------------------------------------------- recordings
_LIVE: dict[str, "Recording"] = {}
_LIVE_LOCK = threading.Lock()


def _recording_alive(take_id: str) -> bool:
    with _LIVE_LOCK:
        return take_id in _LIVE


def live_recordings() -> int:
    with _LIVE_LOCK:
        return len(_LIVE)


class _ProbeEngine:
    """An :class:`pianonotes.engine.Engine` as LiveSession uses it (the same push/finish and the
    attributes below, passed through), keeping the latest frame's key probabilities for the page."""

    def __init__(self, engine):
        from pianonotes.engine import Engine

        if not isinstance(engine, Engine):
            raise TypeError(f"_ProbeEngine wraps an Engine, not {type(engine).__name__}")
        self._engine = engine
        self.last_frame = np.zeros(constants.N_KEYS, np.float32)  # (88,) float32 key probabilities

    # what LiveSession reads of its engine
    @property
    def sample_rate(self) -> int:
        return self._engine.sample_rate

    @property
    def frontend(self):
        return self._engine.frontend

    @property
    def latency_frames(self) -> int:
        return self._engine.latency_frames

    @property
    def samples_in(self) -> int:
        return self._engine.samples_in

    @property
    def frames_out(self) -> int:
        return self._engine.frames_out

    @property
    def decoder(self):
        return self._engine.decoder

    def push(self, audio):
        upd = self._engine.push(audio)
        if upd.n_frames:
            self.last_frame = upd.frame[-1].copy()
        return upd

    def finish(self):
        upd = self._engine.finish()
        self.last_frame = np.zeros(constants.N_KEYS, np.float32)
        return upd


def _source_class():
    from pianonotes.live.sources import _Source

    class SocketSource(_Source):
        """Blocks the WebSocket handler hands over; like a microphone, a full queue drops (and counts)."""

        def __init__(self, samplerate: int):
            super().__init__()
            self.samplerate = int(samplerate)
            self.label = f"browser ({self.samplerate / 1000:g} kHz)"
            self.ended = False

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

        def feed(self, block: np.ndarray) -> None:
            if self.ended:
                return
            try:
                self.queue.put_nowait((time.monotonic(), block))
            except queue.Full:
                self.dropped += 1

        def end(self) -> None:
            if self.ended:
                return
            self.ended = True
            while True:
                try:
                    self.queue.put(None, timeout=0.1)
                    return
                except queue.Full:  # the worker is behind; it will make room
                    continue

    return SocketSource


class Recording:
    """One take recorded over a socket: LiveSession + journal, fed with PCM messages.

    Thread use: ``feed``/``end`` from the socket's receiving side, ``poll`` from its sending side,
    ``finish`` once (blocking: waits for the worker, then writes the outputs).
    """

    def __init__(self, store: TakeStore, *, sample_rate: int, fmt: str = "f32le", title: str = "",
                 limits: Limits = Limits()):
        from pianonotes.live.session import LiveSession

        if fmt not in PCM_FORMATS:
            raise PianonotesError(f"unknown sample format {fmt!r}; send one of {', '.join(PCM_FORMATS)}")
        lo, hi = serve.CLIENT_RATES
        if not isinstance(sample_rate, (int, float)) or not lo <= sample_rate <= hi or sample_rate != int(sample_rate):
            raise PianonotesError(f"sample rate {sample_rate!r} is not supported; use {lo}-{hi} Hz")
        with _LIVE_LOCK:
            if len(_LIVE) >= limits.max_recordings:
                raise PianonotesError(f"the server already records {len(_LIVE)} takes (the limit); "
                                      "stop one and try again")
        self.store = store
        self.limits = limits
        self.dtype = PCM_FORMATS[fmt]
        self.client_rate = int(sample_rate)
        self.max_block = int(limits.max_block_seconds * self.client_rate) * self.dtype.itemsize
        self.title = display_name(title, default="") or time.strftime("take %Y-%m-%d %H:%M")
        model = store.model
        self.engine = _ProbeEngine(model.engine())
        self.source = _source_class()(self.client_rate)
        meta = {"model": str(model.path), "decode": model.decode, "outputs": [], "record": None,
                "source": self.source.label, "kind": "browser", "title": self.title, "served_live": True,
                "client_sample_rate": self.client_rate}
        self.journal = new_journal(self.engine.sample_rate, meta)
        self.id = self.journal.folder.name
        self.session = LiveSession(self.engine, self.source, journal=self.journal,
                                        max_seconds=limits.max_take_seconds, update_seconds=serve.UPDATE_SECONDS)
        self._sent: set[tuple[int, float]] = set()
        self._last_version = -1
        self.received_samples = 0
        self.result = None
        self._state = "connected"  # connected | detached (socket lost, may resume) | ending
        self._state_lock = threading.Lock()
        self._resumed = threading.Event()
        self.generation = 0
        self.socket: Any = None  # the WebSocket that owns the take now (set by the web app)
        import secrets

        self.resume_key = secrets.token_urlsafe(16)
        with _LIVE_LOCK:
            _LIVE[self.id] = self
        try:
            self.session.start()
        except Exception:
            self._forget()
            raise

    def _forget(self) -> None:
        with _LIVE_LOCK:
            _LIVE.pop(self.id, None)

    @property
    def sample_rate(self) -> int:
        return int(self.engine.sample_rate)

    def feed(self, data: bytes) -> None:
        """One binary message: mono PCM samples in the format announced at the start."""
        if len(data) % self.dtype.itemsize:
            raise PianonotesError(f"an audio message of {len(data)} bytes is not a whole number of "
                                  f"{self.dtype.itemsize}-byte samples")
        if len(data) > self.max_block:
            raise PianonotesError(f"an audio message may hold at most {self.limits.max_block_seconds:g} s "
                                  "of audio; send smaller blocks")
        block = np.frombuffer(data, self.dtype)
        if self.dtype.kind == "i":
            block = block.astype(np.float32) / 32768.0
        else:
            block = block.astype(np.float32)
            if not np.all(np.isfinite(block)):
                raise PianonotesError("the audio holds NaN or infinite samples")
        self.received_samples += len(block)
        self.source.feed(block)

    def end(self) -> None:
        """No more audio: the worker processes what it has, then ends the take."""
        self.source.end()

    # ---- a dropped socket, and the page reconnecting to the same take
    # Each socket that owns the take holds a generation number; a page that reconnects (with the take's
    # resume key) takes the take over, even from a socket the server has not yet seen die.
    def detach(self, generation: int) -> None:
        """The socket of ``generation`` went away without a stop: wait for the page to come back."""
        with self._state_lock:
            if self._state == "connected" and self.generation == generation:
                self._state = "detached"
                self._resumed.clear()

    def wait_resumed(self, generation: int) -> bool:
        """After :meth:`detach`: True when a new socket took the take over (it is no longer this
        socket's), False when ``resume_seconds`` ran out (the take is then this socket's to finish)."""
        self._resumed.wait(self.limits.resume_seconds)
        with self._state_lock:
            if self.generation != generation:
                return True
            self._state = "ending"
            return False

    def attach(self, key: str) -> int:
        """A reconnected page takes the take over; returns its generation."""
        import secrets

        with self._state_lock:
            if not secrets.compare_digest(str(key).encode(), self.resume_key.encode()):
                raise PianonotesError("wrong resume key for this take; start a new take")
            if self._state == "ending":
                raise PianonotesError(f"take {self.id} is being saved; start a new take")
            self._state = "connected"
            self.generation += 1
            self._resumed.set()
            return self.generation

    def owns(self, generation: int) -> bool:
        return self.generation == generation

    def mark_ending(self) -> None:
        with self._state_lock:
            self._state = "ending"

    @property
    def done(self) -> bool:
        return self.session.done

    def wait_update(self, timeout: float) -> bool:
        return self.session.wait_update(timeout)

    def poll(self) -> dict[str, Any] | None:
        """The live view's next message (None when nothing changed): sounding keys, key probabilities,
        note starts and finished notes since the last poll, level, latency."""
        snap = self.session.snapshot()
        starts = self.session.events()
        if snap.version == self._last_version and not starts:
            return None
        self._last_version = snap.version
        finished = []
        for n in snap.recent:
            key = (n.pitch, round(n.onset, 4))
            if key not in self._sent:
                self._sent.add(key)
                finished.append(_note_list(n))
        keys = np.round(np.clip(self.engine.last_frame, 0, 1) * 100).astype(int).tolist()
        return {"type": "update", "elapsed": round(snap.elapsed, 3), "received": self.received_samples,
                "level_db": round(snap.level_db, 1) if math.isfinite(snap.level_db) else -120.0,
                "peak": round(snap.peak, 4),
                "active": [[p, round(on, 3), round(conf, 3)] for p, on, conf in snap.active],
                "keys": keys,
                "starts": [[round(e.time, 4), e.pitch, e.velocity, round(e.confidence, 3)] for e in starts],
                "notes": finished, "n_notes": snap.n_notes, "dropped": snap.dropped,
                "latency_ms": None if snap.latency_ms is None else round(snap.latency_ms, 1),
                "onset_latency_ms": None if snap.onset_latency_ms is None else round(snap.onset_latency_ms, 1),
                "warning": snap.warning}  # e.g. the journal's disk is full: the take goes on, the page says so

    def mark_shown(self) -> None:
        self.session.mark_shown()

    def finish(self, *, interrupted: bool = False, timeout: float = 120.0) -> dict[str, Any]:
        """End the take (waits for the worker), close the journal and build the outputs."""
        from pianonotes.live.session import percentile

        self.source.end()
        try:
            result = self.session.finish(timeout=timeout)
            self.result = result
            lat, olat = result.latencies_ms, result.onset_latencies_ms
            stats = {"dropped_blocks": result.dropped, "interrupted": interrupted, "error": result.error,
                     "seconds": round(result.seconds, 3),
                     "worker_cpu_seconds": round(result.worker_cpu_seconds, 3),
                     "wall_seconds": round(result.wall_seconds, 3),
                     "latency_ms_p50": percentile(lat, 50), "latency_ms_p95": percentile(lat, 95),
                     "onset_latency_ms_p50": percentile(olat, 50),
                     "onset_latency_ms_p95": percentile(olat, 95)}
            self.journal.update_meta(**stats)
            return self.store.build(self.journal.folder, result.notes, title=self.title,
                                    pedals=list(self.session.engine.decoder.pedals), **stats)
        finally:
            self._forget()


def resume(take_id: str, key: str) -> tuple[Recording, int]:
    """The recording of ``take_id`` and the new socket's generation, for a page that reconnects after
    its socket dropped (``key``: the resume key the take's first socket was given)."""
    with _LIVE_LOCK:
        rec = _LIVE.get(take_id) if isinstance(take_id, str) else None
    if rec is None:
        raise PianonotesError(f"take {take_id!r} is not recording any more (it is saved: see the takes); "
                              "start a new take")
    return rec, rec.attach(key)


def _note_list(n: Note) -> list:
    return [round(n.onset, 4), round(n.offset, 4), n.pitch, n.velocity, round(n.confidence, 3)]


def notes_payload(notes: list[Note]) -> list[list]:
    return [_note_list(n) for n in notes]


def take_notes(store: TakeStore, take_id: str) -> list[list]:
    """The notes of a complete take, from its JSON output (what the page's piano roll draws)."""
    from pianonotes.export import read_events

    path, _, _ = store.output(take_id, "json")
    return notes_payload(read_events(path))


# ------------------------------------------------------------------------------------------ uploads
def transcribe_upload(store: TakeStore, body_path: Path, name: str, *, limits: Limits = Limits(),
                      on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Transcribe one uploaded file (already on disk at a server-chosen ``body_path``) into a new take.

    The audio goes through ``Transcriber.transcribe_blocks`` in ``transcribe``'s block size, and is
    journaled like a recording. Errors name the client's file, never the server's path.
    """
    from pianonotes.audio import audio_info, iter_audio_blocks
    from pianonotes.transcribe import BLOCK_SECONDS

    title = display_name(name)
    try:
        _, _, seconds = audio_info(body_path)
    except PianonotesError as exc:
        raise PianonotesError(_client_message(str(exc), body_path, title)) from exc
    if seconds <= 0:
        raise PianonotesError(f"{title} holds no audio samples; record or export it again")
    if seconds > limits.max_upload_seconds:
        raise PianonotesError(f"{title} is {seconds / 60:.1f} minutes long; the limit is "
                              f"{limits.max_upload_seconds / 60:g} minutes (pianonotes serve "
                              "--max-upload-minutes)")
    model = store.model
    sr = model.sample_rate
    meta = {"model": str(model.path), "decode": model.decode, "outputs": [], "record": None,
            "source": "upload", "kind": "upload", "title": Path(title).stem or title}
    journal = new_journal(sr, meta)
    try:
        def blocks():
            for block in iter_audio_blocks(body_path, sr, BLOCK_SECONDS):
                journal.write_audio(block)
                yield block

        res = model.transcriber.transcribe_blocks(blocks(), source=title, on_progress=on_progress)
        journal.close(status="finished", notes=len(res.notes))
    except PianonotesError as exc:
        journal.close(status="failed", error=str(exc))
        shutil.rmtree(journal.folder, ignore_errors=True)
        raise PianonotesError(_client_message(str(exc), body_path, title)) from exc
    except BaseException:
        journal.close(status="failed")
        raise
    return store.build(journal.folder, res.notes, title=meta["title"], seconds=round(res.seconds, 3),
                       compute_seconds=round(res.compute_seconds, 3), pedals=res.pedals)


def _client_message(msg: str, path: Path, title: str) -> str:
    return msg.replace(str(path), title).replace(path.name, title)


def upload_dir() -> Path:
    """A fresh private folder for one request body (removed by the caller)."""
    return Path(tempfile.mkdtemp(prefix="pianonotes-upload-"))


def upload_suffix(name: str) -> str:
    """The temp file's suffix: the client's extension if it is a known audio one (helps MP3 probing)."""
    ext = Path(display_name(name)).suffix.lower()
    return ext if ext in constants.AUDIO_EXTENSIONS else ".audio"
