"""A live take: the worker that drains a source, runs the streaming engine, journals and publishes snapshots for the view."""

from __future__ import annotations

import collections
import dataclasses
import math
import queue
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from pianonotes import constants
from pianonotes.audio import StreamResampler
from pianonotes.errors import PianonotesError
from pianonotes.live.journal import Journal
from pianonotes.live.sources import QUEUE_SECONDS, MicrophoneSource, _Source
from pianonotes.notes import Note

@dataclasses.dataclass
class Snapshot:
    """What the view shows, published by the worker (times in seconds of audio since the start)."""

    elapsed: float = 0.0
    level_db: float = -120.0  # RMS of the last update, dBFS
    peak: float = 0.0
    active: tuple[tuple[int, float, float], ...] = ()  # (pitch, onset, confidence) sounding now
    recent: tuple[Note, ...] = ()  # finished notes that ended in the last constants.ROLL_SECONDS
    n_notes: int = 0
    dropped: int = 0
    latency_ms: float | None = None  # median processing latency: lookahead-completing block to screen
    onset_latency_ms: float | None = None  # median onset-audio-to-screen latency
    version: int = 0
    done: bool = False
    warning: str | None = None  # set as soon as something goes wrong that does not stop the take (the journal)


@dataclasses.dataclass
class NoteEvent:
    """A note start, as shown by ``--plain``: time (s), pitch, velocity (1-127), confidence."""

    time: float
    pitch: int
    velocity: int
    confidence: float


@dataclasses.dataclass
class TakeResult:
    """A finished take, as :meth:`LiveSession.finish` returns it."""

    notes: list[Note]  # every note of the take, sorted; times in seconds of audio since the take's start
    seconds: float  # audio the engine received, in seconds (at the engine's sample rate)
    dropped: int  # audio blocks lost: the queue was full, or the device reported an input overflow
    folder: Path | None  # the take's journal folder (None without a journal)
    error: str | None = None  # why the take ended early (a device unplugged...), else None
    # per note shown, in milliseconds: from the block that completed its look-ahead to the screen, and
    # from the arrival of its onset's audio to the screen (both measured by mark_shown)
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    onset_latencies_ms: list[float] = dataclasses.field(default_factory=list)
    worker_cpu_seconds: float = 0.0  # CPU time the worker thread used, in seconds
    wall_seconds: float = 0.0  # wall-clock seconds from start() to finish()


class LiveSession:
    """Runs a source through the engine in a worker thread, journaling and publishing snapshots.

    ``start()``, then poll ``snapshot()`` / ``events()`` from the UI thread and call ``mark_shown()``
    after each screen update; ``stop()`` (any thread) ends the take; ``finish()`` returns the result.
    ``max_seconds`` stops after exactly that much audio (for sources without a clock).
    """

    def __init__(self, engine, source: _Source, *, journal: Journal | None = None,
                 max_seconds: float | None = None, update_seconds: float = constants.LIVE_UPDATE_SECONDS,
                 queue_seconds: float = QUEUE_SECONDS):
        self.engine = engine
        self.source = source
        self.journal = journal
        self.update_seconds = update_seconds
        self.sr = int(engine.sample_rate)
        self.max_samples = None if max_seconds is None else int(round(max_seconds * self.sr))
        block_guess = max(1, int(0.01 * source.samplerate))  # blocks are rarely under 10 ms
        maxsize = max(8, int(queue_seconds * source.samplerate / block_guess))
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        source.attach(self.queue)
        self.resampler = StreamResampler(source.samplerate, self.sr)
        # a journal at the source's own rate (``listen --record``: the recording keeps the device's
        # native rate) gets the audio as it came; otherwise the engine's resampled audio
        self._journal_native = (journal is not None and journal.sample_rate == int(source.samplerate)
                                and journal.sample_rate != self.sr)
        self._max_native = None if max_seconds is None else int(round(max_seconds * source.samplerate))
        self._native_in = 0  # source samples journaled (native journal only)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._snap = Snapshot()
        self._events: collections.deque[NoteEvent] = collections.deque(maxlen=10_000)
        self._notes: list[Note] = []
        self._recent: collections.deque[Note] = collections.deque()
        self._arrivals: collections.deque[tuple[int, float]] = collections.deque()  # (end sample, arrival)
        self._pending: list[tuple[float, float]] = []  # (arrival of lookahead block, arrival of onset block)
        self.latencies_ms: list[float] = []
        self.onset_latencies_ms: list[float] = []
        self._announced: set[tuple[int, float]] = set()
        self._thread: threading.Thread | None = None
        self._t_start = 0.0
        self._cpu = 0.0
        self.error: str | None = None
        self._finished = threading.Event()
        self._updated = threading.Event()
        fe = engine.frontend
        self._lookahead_samples = int(engine.latency_frames * fe.hop + fe.lookahead)

    # ---- control
    def start(self) -> None:
        self.source.start()
        self._t_start = time.monotonic()
        self._thread = threading.Thread(target=self._work, name="pianonotes-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def wait_update(self, timeout: float) -> bool:
        """Wait until the worker publishes a new snapshot (True) or ``timeout`` seconds pass."""
        got = self._updated.wait(timeout)
        self._updated.clear()
        return got

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snap

    def events(self) -> list[NoteEvent]:
        """Note starts since the last call."""
        out = []
        with self._lock:
            while self._events:
                out.append(self._events.popleft())
        return out

    def mark_shown(self, now: float | None = None) -> None:
        """The view has drawn the latest snapshot: turn pending note arrivals into latencies."""
        now = time.monotonic() if now is None else now
        with self._lock:
            pending, self._pending = self._pending, []
        for t_ready, t_onset in pending:
            self.latencies_ms.append((now - t_ready) * 1000.0)
            self.onset_latencies_ms.append((now - t_onset) * 1000.0)

    # ---- worker
    def _arrival(self, sample: int) -> float:
        for end, t in self._arrivals:
            if sample < end:
                return t
        return self._arrivals[-1][1] if self._arrivals else time.monotonic()

    def _work(self) -> None:
        cpu0 = time.thread_time()
        ended = False
        try:
            while not ended:
                tick = time.monotonic()
                blocks, ended = self._drain(tick + self.update_seconds)
                if blocks:
                    self._process(blocks)
                if self._stop.is_set():
                    ended = True
                if isinstance(self.source, MicrophoneSource):
                    self.source.poll()
                rest = tick + self.update_seconds - time.monotonic()
                if not ended and rest > 0 and self.queue.empty():
                    self._stop.wait(rest)
            self.source.stop()
            if not self.source.fast and not self._at_limit():
                # audio captured before the stop is part of the take
                rest, _ = self._drain(0.0, until_empty=True)
                if rest:
                    self._process(rest)
            # the resampler holds back the last few ms of a resampled stream (soxr): they are part of the take
            tail = self.resampler.flush()
            if self.max_samples is not None:
                tail = tail[:max(0, self.max_samples - self.engine.samples_in)]
            if len(tail):
                if self.journal is not None and not self._journal_native:
                    self.journal.write_audio(tail)
                self._arrivals.append((self.engine.samples_in + len(tail), time.monotonic()))
                self._handle_notes(self.engine.push(tail).notes)
            final = self.engine.finish()
            self._handle_notes(final.notes, announce=False)
        except PianonotesError as exc:
            self.error = str(exc)
        except Exception as exc:  # the take so far is still saved by the caller
            self.error = f"live transcription failed: {type(exc).__name__}: {exc}"
        finally:
            self.source.stop()
            if self.journal is not None:
                try:
                    self.journal.maybe_flush(force=True)
                except Exception:
                    pass
            self._cpu = time.thread_time() - cpu0
            if self.error is None and self.source.error:
                self.error = self.source.error
            self._publish(done=True)
            self._finished.set()

    def _at_limit(self) -> bool:
        return self.max_samples is not None and self.engine.samples_in >= self.max_samples

    def _drain(self, deadline: float, *, until_empty: bool = False) -> tuple[list[tuple[float, np.ndarray]], bool]:
        """Blocks waiting in the queue (waits for the first one until ``deadline``); True at the end.
        After a stop, only ``until_empty`` keeps taking blocks (the final drain: nothing captured is lost)."""
        blocks: list[tuple[float, np.ndarray]] = []
        while True:
            try:
                timeout = max(0.0, deadline - time.monotonic()) if not blocks else 0.0
                item = self.queue.get(timeout=timeout) if timeout > 0 else self.queue.get_nowait()
            except queue.Empty:
                return blocks, False
            if item is None:
                return blocks, True
            blocks.append(item)
            if self._stop.is_set() and not until_empty:
                return blocks, False

    def _process(self, blocks: list[tuple[float, np.ndarray]]) -> None:
        pieces, native = [], []
        pos = self.engine.samples_in
        for arrival, block in blocks:
            if self._journal_native:
                kept = block if self._max_native is None else block[:max(0, self._max_native - self._native_in)]
                self._native_in += len(kept)
                native.append(kept)
            audio = self.resampler.push(block)
            if self.max_samples is not None:
                room = self.max_samples - pos
                if len(audio) >= room:
                    audio = audio[:max(0, room)]
                    self._stop.set()
            if len(audio):
                pos += len(audio)
                self._arrivals.append((pos, arrival))
                pieces.append(audio)
            if self._stop.is_set() and self.max_samples is not None and pos >= self.max_samples:
                break
        if native:  # before any early return: the resampler may hold back the first samples
            self.journal.write_audio(native[0] if len(native) == 1 else np.concatenate(native))
        if not pieces:
            return
        audio = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        if self.journal is not None and not self._journal_native:
            self.journal.write_audio(audio)
        upd = self.engine.push(audio)
        self._handle_notes(upd.notes)
        tail = audio[-max(1, int(self.update_seconds * self.sr)):]
        rms = float(np.sqrt(np.mean(np.square(tail, dtype=np.float64))))
        level_db = 20 * math.log10(max(rms, 1e-6))
        peak = float(np.max(np.abs(tail)))
        self._check_onsets()
        # forget arrival times older than any frame still to be decided
        keep_from = self.engine.frames_out * self.engine.frontend.hop - self.sr
        while len(self._arrivals) > 1 and self._arrivals[0][0] < keep_from:
            self._arrivals.popleft()
        if self.journal is not None:
            self.journal.maybe_flush()
        self._publish(level_db=level_db, peak=peak)

    def _announce(self, pitch: int, onset: float, conf: float, velocity: int) -> None:
        onset_sample = int(round(onset * self.sr))
        t_onset = self._arrival(onset_sample)
        t_ready = self._arrival(onset_sample + self._lookahead_samples - 1)
        with self._lock:
            self._events.append(NoteEvent(onset, pitch, velocity, conf))
            self._pending.append((t_ready, t_onset))
        if self.journal is not None:
            self.journal.note_on(pitch, onset, conf)

    def _check_onsets(self) -> None:
        dec = self.engine.decoder
        active = dec.active()
        # notes announced but neither sounding nor finished were too short to keep: forget them
        self._announced &= {(pitch, round(onset, 4)) for pitch, onset, _ in active}
        for pitch, onset, conf in active:
            key = (pitch, round(onset, 4))
            if key in self._announced:
                continue
            self._announced.add(key)
            vel = float(dec.active_vel[pitch - constants.MIN_PITCH])
            velocity = int(np.clip(round(vel * 127), 1, 127)) if vel > 0 else constants.DEFAULT_VELOCITY
            self._announce(pitch, onset, conf, velocity)

    def _handle_notes(self, notes: Sequence[Note], *, announce: bool = True) -> None:
        for n in notes:
            key = (n.pitch, round(n.onset, 4))
            if key in self._announced:
                self._announced.discard(key)
            elif announce:  # began and ended between two updates
                self._announce(n.pitch, n.onset, n.confidence, n.velocity)
            self._notes.append(n)
            self._recent.append(n)
            if self.journal is not None:
                self.journal.note(n)

    def _publish(self, *, level_db: float | None = None, peak: float | None = None,
                 done: bool = False) -> None:
        elapsed = self.engine.samples_in / self.sr
        while self._recent and self._recent[0].offset < elapsed - constants.ROLL_SECONDS:
            self._recent.popleft()
        old = self._snap
        lat = _median(self.latencies_ms[-200:])
        olat = _median(self.onset_latencies_ms[-200:])
        snap = Snapshot(
            elapsed=elapsed,
            level_db=old.level_db if level_db is None else level_db,
            peak=old.peak if peak is None else peak,
            active=tuple(self.engine.decoder.active()) if not done else (),
            recent=tuple(self._recent),
            n_notes=len(self._notes) + (0 if done else len(self._announced)),
            dropped=self.source.dropped + self.source.overflows,
            latency_ms=lat, onset_latency_ms=olat, version=old.version + 1, done=done,
            warning=self._warning())
        with self._lock:
            self._snap = snap
        self._updated.set()

    def _warning(self) -> str | None:
        """The journal's failure (a full cache disk), from the update it happened in: the take goes on."""
        error = self.journal.error if self.journal is not None else None
        return None if error is None else f"{error}; the take goes on and its outputs will hold all of it"

    # ---- result
    def finish(self, timeout: float | None = None) -> TakeResult:
        """Stop (if not stopped), wait for the worker, close the journal and return the take."""
        self.stop()
        self._finished.wait(timeout)
        notes = sorted(self._notes)
        if self.journal is not None:
            self.journal.close(status="finished", notes=len(notes), error=self.error,
                               dropped_blocks=self.source.dropped)
        return TakeResult(notes, self.engine.samples_in / self.sr, self.source.dropped + self.source.overflows,
                          self.journal.folder if self.journal else None, self.error,
                          list(self.latencies_ms), list(self.onset_latencies_ms), self._cpu,
                          time.monotonic() - self._t_start)


def _median(xs: Sequence[float]) -> float | None:
    return float(np.median(xs)) if len(xs) else None


def percentile(xs: Sequence[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if len(xs) else None
