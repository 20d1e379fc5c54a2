"""Live transcription: audio capture, the inference worker, and the crash-safe journal of a take.

The pipeline (the same for the microphone and for ``--input FILE``)::

    source thread / PortAudio callback --(bounded queue of audio blocks)--> worker thread
        worker, every ``LIVE_UPDATE_SECONDS``: drain the queue, resample to the engine's rate,
        append the audio to the journal WAV, run the shared streaming :class:`~pianonotes.engine.Engine`,
        journal the note events, publish a :class:`Snapshot` for the view.

The PortAudio callback only copies the block into the queue; when the queue is full the block is
dropped and counted, never blocking the audio thread. A file source played ``fast`` waits for room
instead, so nothing is dropped and the notes equal offline transcription of the file.

The journal of a take lives in ``<cache>/takes/<timestamp>/`` (``<cache>`` is ``$PIANONOTES_CACHE`` or
``~/.cache/pianonotes``): ``audio.wav`` (float32 mono at the engine's rate, or with ``--record`` at the
source's own rate, ``sample_rate`` in take.json; written in blocks and flushed every
``JOURNAL_FLUSH_SECONDS``), ``events.jsonl`` (note starts and finished notes) and ``take.json``
(model, outputs requested, status). After a crash or SIGKILL at most about one second is lost;
:func:`recover` rebuilds the take from it.

sounddevice and the network's runtime (ONNX Runtime) are imported inside functions; torch never is
(unless a checkpoint has no ONNX export).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import json
import math
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from pianonotes import constants as C
from pianonotes.audio import StreamResampler  # noqa: F401 (lived here; callers still import it from live)
from pianonotes.errors import PianonotesError
from pianonotes.fileio import cache_dir
from pianonotes.notes import Note

JOURNAL_FLUSH_SECONDS = 0.5  # the audio and events journal reach the OS at least this often
QUEUE_SECONDS = 10.0  # audio the capture queue holds before blocks are dropped
FILE_BLOCK_SECONDS = 0.02  # block size a file source emits (like a microphone's period)
ROLL_SECONDS = 6.0  # notes kept for the view's piano roll
KEEP_TAKES = 10  # completed takes kept in the cache; older ones are pruned at the start of a take
MEMORY_AUDIO_SAMPLES = 2 * 3600 * 16000  # float32 samples kept for --record once the journal fails: 460 MB (2 h at 16 kHz, 40 min at 48)
COMMON_RATES = (16000, 22050, 32000, 44100, 48000, 8000, 11025, 88200, 96000)
PORTAUDIO_HINT = ("PortAudio library not found; install it (Debian/Ubuntu: apt-get install libportaudio2, "
                  "macOS: brew install portaudio)")


# ------------------------------------------------------------------------------------------ devices
def import_sounddevice():
    """``sounddevice``, or a PianonotesError with an install hint when PortAudio is missing."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError('PortAudio library not found')
        raise PianonotesError(PORTAUDIO_HINT) from exc
    except ImportError as exc:
        raise PianonotesError("the sounddevice package is missing; pip install sounddevice") from exc
    return sd


@dataclasses.dataclass(frozen=True)
class InputDevice:
    """An audio input: PortAudio index, name, input channels, default rate (Hz), host API."""

    index: int
    name: str
    channels: int
    default_samplerate: float
    hostapi: str = ""
    is_default: bool = False


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel (empty list when there is none)."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
    except sd.PortAudioError as exc:
        raise PianonotesError(f"cannot list audio devices: {exc}") from exc
    default_in = _default_input_index(sd)
    out = []
    for d in devices:
        if int(d.get("max_input_channels", 0)) > 0:
            api = apis[d["hostapi"]]["name"] if 0 <= d.get("hostapi", -1) < len(apis) else ""
            out.append(InputDevice(int(d["index"]), str(d["name"]), int(d["max_input_channels"]),
                                   float(d["default_samplerate"]), api, int(d["index"]) == default_in))
    return out


def _default_input_index(sd) -> int:
    try:
        dev = sd.default.device
        idx = dev[0] if isinstance(dev, (list, tuple)) or hasattr(dev, "__getitem__") else dev
        return int(idx) if idx is not None else -1
    except (TypeError, ValueError, IndexError):
        return -1


def resolve_device(spec: str | int | None) -> InputDevice:
    """The input device named by ``spec``: None (the default), an index, or part of its name."""
    devices = list_input_devices()
    if not devices:
        raise PianonotesError("no audio input device found; connect a microphone (or check that this user "
                              "may use the sound card), then run `pianonotes devices`")
    if spec is None or str(spec).strip() == "":
        for d in devices:
            if d.is_default:
                return d
        return devices[0]
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        for d in devices:
            if d.index == int(text):
                return d
        raise PianonotesError(f"no input device with index {text}; run `pianonotes devices` to list them")
    exact = [d for d in devices if d.name.lower() == text.lower()]
    matches = exact or [d for d in devices if text.lower() in d.name.lower()]
    if not matches:
        raise PianonotesError(f"no input device matching '{text}'; run `pianonotes devices` to list them")
    if len(matches) > 1:
        names = ", ".join(f"{d.index}: {d.name}" for d in matches[:5])
        raise PianonotesError(f"'{text}' matches several input devices ({names}); give the index instead")
    return matches[0]


def choose_samplerate(device: InputDevice, requested: int | None, engine_rate: int) -> int:
    """A capture rate the device accepts: ``requested`` if given (else an error listing the rates that
    work), otherwise the engine's rate, the device's default rate, or another common rate."""
    sd = import_sounddevice()

    def ok(rate: float) -> bool:
        try:
            sd.check_input_settings(device=device.index, channels=1, dtype="float32", samplerate=rate)
            return True
        except Exception:  # PortAudioError or ValueError('Invalid sample rate')
            return False

    if requested is not None:
        if ok(requested):
            return int(requested)
        working = [r for r in sorted(set(COMMON_RATES)) if ok(r)]
        hint = f"rates that work: {', '.join(map(str, working))}" if working else "no common rate works"
        raise PianonotesError(f"input device '{device.name}' does not support {requested} Hz; {hint}")
    for rate in (engine_rate, int(device.default_samplerate), *COMMON_RATES):
        if rate > 0 and ok(rate):
            return int(rate)
    raise PianonotesError(f"input device '{device.name}' accepts none of the common sample rates; "
                          "choose another with --input-device")


# -------------------------------------------------------------------------------------------- sources
class _Source:
    """Feeds (arrival monotonic seconds, float32 mono block) items into a bounded queue; None ends."""

    samplerate: int
    label: str

    def __init__(self) -> None:
        self.dropped = 0  # blocks lost because the queue was full (or PortAudio reported an overflow)
        self.error: str | None = None  # set when the source failed (device unplugged...)
        self.queue: queue.Queue = queue.Queue()

    def attach(self, q: queue.Queue) -> None:
        self.queue = q

    def start(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def failed(self) -> bool:
        return self.error is not None


class MicrophoneSource(_Source):
    """PortAudio capture; the callback only copies the block into the queue (dropped when full)."""

    def __init__(self, device: InputDevice, samplerate: int, *, blocksize: int = 0):
        super().__init__()
        self.device = device
        self.samplerate = int(samplerate)
        self.blocksize = blocksize
        self.label = f"{device.name} ({self.samplerate / 1000:g} kHz)"
        self._stream = None
        self._stopping = False
        self.overflows = 0

    def _callback(self, indata, frames, time_info, status) -> None:
        if self._stopping:
            return
        if status and status.input_overflow:
            self.overflows += 1
        try:
            self.queue.put_nowait((time.monotonic(), indata[:, 0].copy()))
        except queue.Full:
            self.dropped += 1

    def _finished(self) -> None:
        if not self._stopping and self.error is None:
            self.error = f"input device '{self.device.name}' stopped (unplugged or taken by another program)"
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass

    def start(self) -> None:
        sd = import_sounddevice()
        try:
            self._stream = sd.InputStream(device=self.device.index, channels=1, dtype="float32",
                                          samplerate=self.samplerate, blocksize=self.blocksize,
                                          callback=self._callback, finished_callback=self._finished)
            self._stream.start()
        except sd.PortAudioError as exc:
            msg = str(exc)
            busy = "navailable" in msg or "busy" in msg
            why = "busy (used by another program?) or unplugged" if busy else msg
            raise PianonotesError(f"cannot open input device '{self.device.name}': {why}") from exc

    def poll(self) -> None:
        """Notice a stream that stopped without telling us (some host APIs never call back)."""
        s = self._stream
        if s is not None and not self._stopping and self.error is None:
            try:
                active = s.active
            except Exception:
                active = False
            if not active:
                self.error = (f"input device '{self.device.name}' stopped "
                              "(unplugged or taken by another program)")
                try:
                    self.queue.put_nowait(None)
                except queue.Full:
                    pass

    def stop(self) -> None:
        self._stopping = True
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # an unplugged device can fail to close; the take is saved regardless
                pass
            self._stream = None


class FileSource(_Source):
    """Plays an audio file into the pipeline at real-time pace (like a microphone: a full queue drops
    blocks) or, with ``fast``, as fast as the worker consumes it (nothing dropped)."""

    def __init__(self, path: str | os.PathLike, samplerate: int, *, fast: bool = False,
                 block_seconds: float = FILE_BLOCK_SECONDS):
        from pianonotes.audio import audio_info

        super().__init__()
        self.path = Path(path)
        audio_info(self.path)  # fails early with a clear message
        self.samplerate = int(samplerate)
        self.fast = fast
        self.block = max(1, int(round(block_seconds * self.samplerate)))
        self.label = f"{self.path.name} ({'fast' if fast else 'real time'})"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pianonotes-file-source", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from pianonotes.audio import iter_audio_blocks

        t0 = time.monotonic()
        sent = 0
        try:
            for chunk in iter_audio_blocks(self.path, self.samplerate, block_seconds=10.0):
                for i in range(0, len(chunk), self.block):
                    if self._stop.is_set():
                        return
                    block = chunk[i: i + self.block]
                    if self.fast:
                        while not self._stop.is_set():
                            try:
                                self.queue.put((time.monotonic(), block), timeout=0.1)
                                break
                            except queue.Full:
                                continue
                    else:
                        due = t0 + (sent + len(block)) / self.samplerate
                        delay = due - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)
                            if self._stop.is_set():
                                return
                        try:
                            self.queue.put_nowait((time.monotonic(), block))
                        except queue.Full:
                            self.dropped += 1
                    sent += len(block)
        except PianonotesError as exc:
            self.error = str(exc)
        finally:
            while True:
                try:
                    self.queue.put(None, timeout=0.1)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        break

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)


# -------------------------------------------------------------------------------------------- journal
def takes_dir() -> Path:
    return cache_dir() / "takes"


def list_takes() -> list[Path]:
    """Take folders in the cache, oldest first."""
    root = takes_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "take.json").exists())


def latest_take() -> Path:
    takes = list_takes()
    if not takes:
        raise PianonotesError(f"no takes to recover in {takes_dir()}")
    return takes[-1]


def _prune_takes(keep: int = KEEP_TAKES) -> None:
    takes = list_takes()
    for p in takes[: max(0, len(takes) - keep)]:
        try:
            meta = json.loads((p / "take.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("status") in ("complete", "recovered"):
            shutil.rmtree(p, ignore_errors=True)


class Journal:
    """The on-disk record of a take, written as it happens (see the module docstring).

    Only the constructor raises. A write that fails later (a full or vanished cache disk) never stops
    the take: the journal records why in :attr:`error` (:meth:`warning` says it in one line), stops
    writing, and keeps the rest of the audio in memory when the take is to be recorded (``keep_audio``,
    by default when ``meta`` names a ``record``), so :meth:`audio_blocks` still yields the whole take.
    What reached the disk before the failure stays there for ``--recover``.
    """

    def __init__(self, folder: str | os.PathLike | None, sample_rate: int,
                 meta: dict[str, Any] | None = None, *, keep_audio: bool | None = None):
        import soundfile as sf

        if folder is None:
            root = takes_dir()
            try:
                root.mkdir(parents=True, exist_ok=True)
                _prune_takes()
            except OSError as exc:
                raise PianonotesError(f"cannot create the take cache {root}: {exc.strerror}; "
                                      "set PIANONOTES_CACHE to a writable folder") from exc
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            folder = root / stamp
            n = 1
            while folder.exists():
                n += 1
                folder = root / f"{stamp}-{n}"
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise PianonotesError(f"cannot create the take folder {self.folder}: {exc.strerror}") from exc
        self.sample_rate = int(sample_rate)
        self.meta = dict(meta or {})
        self.meta.update({"format": "pianonotes-take-v1", "sample_rate": self.sample_rate,
                          "status": "recording", "started": _dt.datetime.now().isoformat(timespec="seconds")})
        self.keep_audio = bool(self.meta.get("record")) if keep_audio is None else bool(keep_audio)
        self.audio_path = self.folder / "audio.wav"
        self.events_path = self.folder / "events.jsonl"
        self._wav = self._events = None
        try:
            self._write_meta()
            self._wav = sf.SoundFile(os.fspath(self.audio_path), "w", samplerate=self.sample_rate, channels=1,
                                     format="WAV", subtype="FLOAT")
            self._events = open(self.events_path, "a", encoding="utf-8")
        except (PianonotesError, OSError, RuntimeError) as exc:
            if self._wav is not None:
                _quietly(self._wav.close)
            shutil.rmtree(self.folder, ignore_errors=True)
            reason = str(exc) if isinstance(exc, PianonotesError) else _write_failure(exc, self.folder.parent)
            raise PianonotesError(f"cannot start the take journal in {self.folder}: {reason}; free some space "
                                  "or set PIANONOTES_CACHE to another folder") from exc
        self.samples = 0  # audio samples that reached the journal WAV
        self.error: str | None = None  # why journaling stopped (None while it works)
        self._memory: list[np.ndarray] = []  # audio after a failure, when keep_audio
        self.memory_samples = 0
        self.lost_samples = 0  # audio neither journaled nor kept (past MEMORY_AUDIO_SAMPLES)
        self._last_flush = time.monotonic()
        self._closed = False

    def _write_meta(self) -> None:
        from pianonotes.fileio import write_text_atomic

        write_text_atomic(self.folder / "take.json", json.dumps(self.meta, indent=2, sort_keys=True))

    def _failed(self, exc: BaseException) -> None:
        """A journal write failed: remember the first reason and stop writing (the take goes on)."""
        if self.error is None:
            held = self.journaled_samples() / self.sample_rate
            self.error = (f"the take journal in {self.folder} failed after {held:.1f} s of audio "
                          f"({_write_failure(exc, self.folder)})")
        for f in (self._wav, self._events):
            if f is not None:
                _quietly(f.close)  # what cannot be flushed is lost from the journal, not from the take
        self._wav = self._events = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def write_audio(self, audio: np.ndarray) -> None:
        if not len(audio):
            return
        if self._wav is not None and not self._closed:
            try:
                self._wav.write(audio)
                self.samples += len(audio)
                return
            except Exception as exc:  # LibsndfileError on a full disk, OSError, ...
                self._failed(exc)
        if self.keep_audio and self.error is not None:
            room = MEMORY_AUDIO_SAMPLES - self.memory_samples
            kept = np.array(audio[:max(0, room)], np.float32)
            if len(kept):
                self._memory.append(kept)
                self.memory_samples += len(kept)
            self.lost_samples += len(audio) - len(kept)

    def _event(self, ev: dict[str, Any]) -> None:
        if self._events is not None and not self._closed:
            try:
                self._events.write(json.dumps(ev) + "\n")
            except Exception as exc:
                self._failed(exc)

    def note_on(self, pitch: int, onset: float, confidence: float) -> None:
        self._event({"event": "on", "pitch": pitch, "onset": round(onset, 4), "confidence": round(confidence, 4)})

    def note(self, note: Note) -> None:
        self._event({"event": "note", **_note_dict(note)})

    def maybe_flush(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._wav is None or self._closed or not (force or now - self._last_flush >= JOURNAL_FLUSH_SECONDS):
            return
        try:
            self._wav.flush()  # libsndfile updates the WAV header on sync
            self._events.flush()
        except Exception as exc:
            self._failed(exc)
        self._last_flush = now

    def update_meta(self, **extra: Any) -> None:
        """Record more about the take in take.json (e.g. status="complete" once outputs are written).
        A failure is noted in :attr:`error`, never raised: the take itself is already saved."""
        self.meta.update(extra)
        try:
            self._write_meta()
        except PianonotesError as exc:
            if self.error is None:
                self.error = f"the take journal in {self.folder} failed ({exc})"

    def close(self, *, status: str = "complete", **extra: Any) -> None:
        if self._closed:
            return
        for f in (self._wav, self._events):
            if f is not None:
                try:
                    f.close()
                except Exception as exc:
                    self._failed(exc)
        self._wav = self._events = None
        self._closed = True
        if self.error is not None:
            extra["journal_error"] = self.error
        self.update_meta(status=status, seconds=round(self.samples / self.sample_rate, 3), **extra)

    def audio_blocks(self, block: int = 1 << 18) -> Iterator[np.ndarray]:
        """The take's audio: what the journal WAV holds (only what was written whole), then what was kept
        in memory after the journal failed. Call after :meth:`close`."""
        offset = _wav_data_offset(self.audio_path)
        if offset is not None and self.samples:
            with open(self.audio_path, "rb") as f:  # raw: the header of a failed journal may be stale
                f.seek(offset)
                left = self.samples
                while left > 0:
                    data = np.frombuffer(f.read(4 * min(left, block)), "<f4")
                    if not len(data):
                        break
                    yield data.astype(np.float32)
                    left -= len(data)
        yield from self._memory

    def warning(self) -> str | None:
        """One line for the user when the journal failed (None when it did not)."""
        if self.error is None:
            return None
        kept = "" if not self.keep_audio else (
            f"; the recording lacks the last {self.lost_samples / self.sample_rate:.1f} s (memory limit)"
            if self.lost_samples else "; the recording was kept in memory")
        return (f"{self.error}; the take went on and its outputs hold all of it{kept}, but `listen --recover` "
                f"could only rebuild the first {self.journaled_samples() / self.sample_rate:.1f} s")

    def journaled_samples(self) -> int:
        """Samples the journal WAV holds (what ``--recover`` reads: also the part of a block cut short)."""
        offset = _wav_data_offset(self.audio_path)
        try:
            on_disk = (self.audio_path.stat().st_size - offset) // 4 if offset is not None else 0
        except OSError:
            on_disk = 0
        return max(self.samples, on_disk)


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:
        pass


def _write_failure(exc: BaseException, folder: Path) -> str:
    """Why a write in ``folder`` failed, in words (libsndfile only says "System error")."""
    from pianonotes.fileio import disk_full

    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if disk_full(folder):
        return "No space left on device"
    return str(exc).strip().rstrip(".") or type(exc).__name__


def _note_dict(n: Note) -> dict[str, Any]:
    return {"onset": round(n.onset, 6), "offset": round(n.offset, 6), "pitch": n.pitch,
            "velocity": n.velocity, "confidence": n.confidence}


def _wav_data_offset(path: str | os.PathLike) -> int | None:
    """Where the samples of a RIFF/WAVE file start (None: not a WAV file, or no data chunk)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"RIFF" or not f.read(4) or f.read(4) != b"WAVE":
                return None
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return None
                if head[:4] == b"data":
                    return f.tell()
                size = int.from_bytes(head[4:], "little")
                f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


def read_journal_audio(path: str | os.PathLike) -> np.ndarray:
    """The samples of a journal WAV, also when a crash left its header stale (reads to end of file)."""
    path = Path(path)
    raw = path.read_bytes() if path.exists() else b""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return np.zeros(0, np.float32)
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos: pos + 4], int.from_bytes(raw[pos + 4: pos + 8], "little")
        if cid == b"data":
            body = raw[pos + 8:]
            body = body[: len(body) // 4 * 4]
            return np.frombuffer(body, "<f4").astype(np.float32)
        pos += 8 + size + (size & 1)
    return np.zeros(0, np.float32)


# ---------------------------------------------------------------------------------------------- session
@dataclasses.dataclass
class Snapshot:
    """What the view shows, published by the worker (times in seconds of audio since the start)."""

    elapsed: float = 0.0
    level_db: float = -120.0  # RMS of the last update, dBFS
    peak: float = 0.0
    active: tuple[tuple[int, float, float], ...] = ()  # (pitch, onset, confidence) sounding now
    recent: tuple[Note, ...] = ()  # finished notes of the last ROLL_SECONDS
    n_notes: int = 0
    dropped: int = 0
    latency_ms: float | None = None  # median processing latency: lookahead-completing block to screen
    onset_latency_ms: float | None = None  # median onset-audio-to-screen latency
    version: int = 0
    done: bool = False


@dataclasses.dataclass
class NoteEvent:
    """A note start, as shown by ``--plain``: time (s), pitch, velocity (1-127), confidence."""

    time: float
    pitch: int
    velocity: int
    confidence: float


@dataclasses.dataclass
class TakeResult:
    notes: list[Note]
    seconds: float
    dropped: int
    folder: Path | None
    error: str | None = None
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    onset_latencies_ms: list[float] = dataclasses.field(default_factory=list)
    worker_cpu_seconds: float = 0.0
    wall_seconds: float = 0.0


class LiveSession:
    """Runs a source through the engine in a worker thread, journaling and publishing snapshots.

    ``start()``, then poll ``snapshot()`` / ``events()`` from the UI thread and call ``mark_shown()``
    after each screen update; ``stop()`` (any thread) ends the take; ``finish()`` returns the result.
    ``max_seconds`` stops after exactly that much audio (for sources without a clock).
    """

    def __init__(self, engine, source: _Source, *, journal: Journal | None = None,
                 max_seconds: float | None = None, update_seconds: float = C.LIVE_UPDATE_SECONDS,
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
            if not getattr(self.source, "fast", False) and not self._at_limit():
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
            vel = float(dec.active_vel[pitch - C.MIN_PITCH])
            velocity = int(np.clip(round(vel * 127), 1, 127)) if vel > 0 else C.DEFAULT_VELOCITY
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
        while self._recent and self._recent[0].offset < elapsed - ROLL_SECONDS:
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
            dropped=self.source.dropped + getattr(self.source, "overflows", 0),
            latency_ms=lat, onset_latency_ms=olat, version=old.version + 1, done=done)
        with self._lock:
            self._snap = snap
        self._updated.set()

    # ---- result
    def finish(self, timeout: float | None = None) -> TakeResult:
        """Stop (if not stopped), wait for the worker, close the journal and return the take."""
        self.stop()
        self._finished.wait(timeout)
        notes = sorted(self._notes)
        if self.journal is not None:
            self.journal.close(status="finished", notes=len(notes), error=self.error,
                               dropped_blocks=self.source.dropped)
        return TakeResult(notes, self.engine.samples_in / self.sr, self.source.dropped + getattr(
            self.source, "overflows", 0), self.journal.folder if self.journal else None, self.error,
            list(self.latencies_ms), list(self.onset_latencies_ms), self._cpu,
            time.monotonic() - self._t_start)


def _median(xs: Sequence[float]) -> float | None:
    return float(np.median(xs)) if len(xs) else None


def percentile(xs: Sequence[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if len(xs) else None


# ------------------------------------------------------------------------------------------- outputs
def check_outputs(paths: Sequence[str | os.PathLike], *, overwrite: bool = False) -> list[Path]:
    """Validate requested outputs before a take starts (supported extension, folder, existing file)."""
    from pianonotes.export import FORMATS

    out = []
    for p in paths:
        p = Path(p)
        if p.suffix.lower() not in FORMATS:
            raise PianonotesError(f"cannot write '{p.name}': use one of {', '.join(FORMATS)}")
        out.append(_check_writable(p, overwrite))
    return out


def _check_writable(p: Path, overwrite: bool) -> Path:
    """The output's folder exists and an existing file may be replaced."""
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise PianonotesError(f"output folder {folder} does not exist; create it first")
    if p.exists() and not overwrite:
        raise PianonotesError(f"{p} exists; pass --overwrite to replace it")
    return p


def check_record(path: str | os.PathLike | None, *, overwrite: bool = False) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise PianonotesError(f"--record '{p.name}': use a .wav, .flac or .ogg file")
    return _check_writable(p, overwrite)


def write_outputs(notes: Sequence[Note], outputs: Sequence[str | os.PathLike], *, title: str,
                  bpm: float | None = None, time_signature: str | None = None,
                  pedals: Sequence | None = None, note_length: str = "key") -> list[Path]:
    """Write the take to every output atomically, through the same writer as ``transcribe``
    (:func:`pianonotes.export.write_all`: one beat, meter and key analysis for the MIDI and the score;
    ``pedals`` (the engine's ``decoder.pedals``) and ``note_length`` as there)."""
    from pianonotes.export import write_all

    return write_all([Path(p) for p in outputs], list(notes), title=title, bpm=bpm,
                     time_signature=time_signature, overwrite=True, pedals=pedals, note_length=note_length)


def copy_recording(journal_wav: Journal | str | os.PathLike, dest: str | os.PathLike, sample_rate: int) -> Path:
    """Copy the journal audio to ``dest`` atomically, in blocks (converted when not .wav). Given the
    :class:`Journal` of a take, also the audio it kept in memory after a failure."""
    import soundfile as sf

    from pianonotes.fileio import atomic_path

    dest = Path(dest)
    try:
        with atomic_path(dest) as tmp:
            with sf.SoundFile(os.fspath(tmp), "w", samplerate=sample_rate, channels=1,
                              subtype="FLOAT" if dest.suffix.lower() == ".wav" else None) as out:
                blocks = (journal_wav.audio_blocks() if isinstance(journal_wav, Journal)
                          else _journal_blocks(journal_wav))
                for block in blocks:
                    out.write(block)
    except RuntimeError as exc:  # libsndfile's errors (a full disk)
        raise PianonotesError(f"cannot write {dest}: {_write_failure(exc, dest.parent)}; "
                              "check the folder and free space") from exc
    return dest


def _journal_blocks(path: str | os.PathLike, block: int = 1 << 18) -> Iterator[np.ndarray]:
    import soundfile as sf

    try:
        with sf.SoundFile(os.fspath(path)) as f:
            while True:
                data = f.read(block, dtype="float32")
                if not len(data):
                    break
                yield data
    except Exception:  # header of a crashed take: read raw
        yield read_journal_audio(path)


# ------------------------------------------------------------------------------------------- recovery
@dataclasses.dataclass
class RecoveredTake:
    folder: Path
    notes: list[Note]
    seconds: float
    method: str  # "audio" (re-transcribed) or "journal" (note events)
    outputs: list[str]  # outputs the take had asked for
    record: str | None
    pedals: list | None = None  # the sustain pedal when re-transcribed (None: from the note journal)


def take_meta(folder: str | os.PathLike) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / "take.json"
    if not path.exists():
        raise PianonotesError(f"{folder} is not a pianonotes take folder (no take.json)")
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise PianonotesError(f"{path} is corrupt: {exc}") from exc
    if not isinstance(meta, dict):
        raise PianonotesError(f"{path} is corrupt: not a JSON object")
    from pianonotes.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    sr = meta.get("sample_rate", C.SAMPLE_RATE)
    if isinstance(sr, bool) or not isinstance(sr, (int, float)) or not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise PianonotesError(f"{path} is corrupt: sample_rate is {sr!r} (the rate of the take's audio.wav: "
                              f"the model's, {C.SAMPLE_RATE} Hz, or the device's with --record); correct it and run "
                              "--recover again")
    return meta


def journal_notes(folder: str | os.PathLike, *, end: float | None = None) -> list[Note]:
    """Notes from ``events.jsonl``: finished notes, plus notes still sounding at the end of the journal
    (closed at ``end`` seconds). A line cut by a crash is skipped."""
    path = Path(folder) / "events.jsonl"
    done: list[Note] = []
    open_: dict[int, tuple[float, float]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "on":
                open_[int(ev["pitch"])] = (float(ev["onset"]), float(ev.get("confidence", 1.0)))
            elif ev.get("event") == "note":
                n = Note(float(ev["onset"]), float(ev["offset"]), int(ev["pitch"]), int(ev["velocity"]),
                         confidence=float(ev.get("confidence", 1.0)))
                done.append(n)
                if int(ev["pitch"]) in open_ and abs(open_[int(ev["pitch"])][0] - n.onset) < 1e-3:
                    del open_[int(ev["pitch"])]
    if end is not None:
        for pitch, (onset, conf) in open_.items():
            if end > onset:
                done.append(Note(onset, end, pitch, C.DEFAULT_VELOCITY, confidence=conf))
    return sorted(done)


def recover(folder: str | os.PathLike, *, model: str | os.PathLike | None = None, method: str = "auto",
            device: str = "cpu", onset_threshold: float | None = None, frame_threshold: float | None = None,
            min_note_seconds: float | None = None) -> RecoveredTake:
    """Rebuild a take's notes from its journal.

    ``method``: ``"audio"`` re-transcribes the journal WAV with the take's model (or ``model``): the same
    notes the live take would have given for that audio; ``"journal"`` reads the note events; ``"auto"``
    tries the audio first and falls back to the events (no audio, or no model). Thresholds not given are
    the ones the take used.
    """
    folder = Path(folder)
    meta = take_meta(folder)
    sr = int(meta.get("sample_rate", C.SAMPLE_RATE))
    audio = read_journal_audio(folder / "audio.wav")
    seconds = len(audio) / sr
    notes: list[Note] | None = None
    pedals = None
    used = "journal"
    if method not in ("auto", "audio", "journal"):
        raise PianonotesError(f"unknown recovery method '{method}'; use auto, audio or journal")
    if method in ("auto", "audio") and len(audio):
        try:
            from pianonotes.decode import DecodeOptions
            from pianonotes.transcribe import Transcriber

            options = DecodeOptions.for_model(
                {"decode": meta.get("decode") or {}}, onset_threshold=onset_threshold,
                frame_threshold=frame_threshold, min_note_seconds=min_note_seconds) if meta.get("decode") else None
            tr = Transcriber.from_checkpoint(model if model is not None else meta.get("model"), device=device,
                                             options=options, overrides=dict(
                                                 onset_threshold=onset_threshold, frame_threshold=frame_threshold,
                                                 min_note_seconds=min_note_seconds))
            eng = tr.engine()
            if eng.sample_rate != sr:
                from pianonotes.audio import resample

                audio = resample(audio, sr, eng.sample_rate)
            notes = []
            step = eng.sample_rate * 30
            for i in range(0, len(audio), step):
                notes += eng.push(audio[i: i + step]).notes
            notes = sorted(notes + eng.finish().notes)
            pedals = list(eng.decoder.pedals)
            used = "audio"
        except PianonotesError:
            if method == "audio":
                raise
            notes = None
    if notes is None:
        notes = journal_notes(folder, end=seconds if seconds else None)
    return RecoveredTake(folder, notes, seconds, used, list(meta.get("outputs") or []), meta.get("record"), pedals)


def mark_recovered(folder: str | os.PathLike, outputs: Sequence[str | os.PathLike]) -> str | None:
    """Note in take.json that the take was recovered (so it may be pruned). Returns a one-line warning
    when that fails (the disk is still full, say): the outputs are written, the take stays in the cache."""
    from pianonotes.fileio import write_text_atomic

    folder = Path(folder)
    meta = take_meta(folder)
    meta.update(status="recovered", recovered_to=[str(p) for p in outputs])
    try:
        write_text_atomic(folder / "take.json", json.dumps(meta, indent=2, sort_keys=True))
    except PianonotesError as exc:
        return f"{exc}; the take is not marked as recovered, so it stays in {folder.parent}"
    return None

