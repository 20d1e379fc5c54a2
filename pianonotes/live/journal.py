"""The crash-safe journal of a take, in ``<cache>/takes/<timestamp>/``:

* ``audio.f32``: the audio as raw float32, little-endian, mono, at ``sample_rate`` (take.json also names the
  file, ``audio``, and its format, ``audio_format`` ``"f32le"``). No header: after a crash the samples are
  simply the file's size // 4, so there is nothing to repair.
* ``events.jsonl``: one JSON object a line, note starts and finished notes.
* ``take.json``: model, outputs requested, sample rate, status (written atomically).

Takes journaled before format ``pianonotes-take-v2`` hold ``audio.wav`` (float32 WAV) instead;
:func:`take_audio_path`, :func:`read_journal_audio` and :func:`iter_journal_audio` read both (libsndfile reads a
WAV whose header a crash left at zero length to the end of the file).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pianonotes.errors import PianonotesError
from pianonotes.fileio import cache_dir
from pianonotes.notes import Note

JOURNAL_FLUSH_SECONDS = 0.5  # events reach the OS, and the audio (in the OS per block) the disk, this often
KEEP_TAKES = 10  # completed takes kept in the cache; older ones are pruned at the start of a take
MEMORY_AUDIO_SAMPLES = 2 * 3600 * 16000  # float32 samples kept for --record once the journal fails: 460 MB (2 h at 16 kHz, 40 min at 48)
TAKE_FORMAT = "pianonotes-take-v2"
AUDIO_FILE = "audio.f32"  # raw float32, little-endian, mono: samples = size // 4
AUDIO_FORMAT = "f32le"
LEGACY_AUDIO_FILE = "audio.wav"  # float32 WAV, takes journaled before pianonotes-take-v2
_SAMPLE_BYTES = 4


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
    What reached the disk before the failure stays there for ``pianonotes recover``.
    """

    def __init__(self, folder: str | os.PathLike | None, sample_rate: int,
                 meta: dict[str, Any] | None = None, *, keep_audio: bool | None = None):
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
        self.meta.update({"format": TAKE_FORMAT, "sample_rate": self.sample_rate, "audio": AUDIO_FILE,
                          "audio_format": AUDIO_FORMAT, "channels": 1,
                          "status": "recording", "started": _dt.datetime.now().isoformat(timespec="seconds")})
        self.keep_audio = bool(self.meta.get("record")) if keep_audio is None else bool(keep_audio)
        self.audio_path = self.folder / AUDIO_FILE
        self.events_path = self.folder / "events.jsonl"
        self._audio = self._events = None
        try:
            self._write_meta()
            self._audio = open(self.audio_path, "xb", buffering=0)  # unbuffered: each block reaches the OS whole
            self._events = open(self.events_path, "a", encoding="utf-8")
        except (PianonotesError, OSError) as exc:
            if self._audio is not None:
                _quietly(self._audio.close)
            shutil.rmtree(self.folder, ignore_errors=True)
            reason = str(exc) if isinstance(exc, PianonotesError) else _write_failure(exc, self.folder.parent)
            raise PianonotesError(f"cannot start the take journal in {self.folder}: {reason}; free some space "
                                  "or set PIANONOTES_CACHE to another folder") from exc
        self.samples = 0  # audio samples written whole to the journal audio
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
        for f in (self._audio, self._events):
            if f is not None:
                _quietly(f.close)  # what cannot be flushed is lost from the journal, not from the take
        self._audio = self._events = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def write_audio(self, audio: np.ndarray) -> None:
        if not len(audio):
            return
        if self._audio is not None and not self._closed:
            try:
                self._append(audio)
                self.samples += len(audio)
                return
            except Exception as exc:  # OSError (ENOSPC, EIO, a vanished folder), ...
                self._failed(exc)
        if self.keep_audio and self.error is not None:
            room = MEMORY_AUDIO_SAMPLES - self.memory_samples
            kept = np.array(audio[:max(0, room)], np.float32)
            if len(kept):
                self._memory.append(kept)
                self.memory_samples += len(kept)
            self.lost_samples += len(audio) - len(kept)

    def _append(self, audio: np.ndarray) -> None:
        """Write the samples to the audio file, all of them or raise (a short write is retried, so a full
        disk raises ENOSPC after writing what fitted)."""
        data = memoryview(np.ascontiguousarray(audio, "<f4").reshape(-1)).cast("B")
        while len(data):
            n = self._audio.write(data)
            if not n:
                raise OSError(errno.EIO, "the journal audio file took no bytes")
            data = data[n:]

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
        if self._audio is None or self._closed or not (force or now - self._last_flush >= JOURNAL_FLUSH_SECONDS):
            return
        try:
            os.fsync(self._audio.fileno())  # the audio is in the OS already (unbuffered); this is the disk
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
        for f in (self._audio, self._events):
            if f is not None:
                try:
                    f.close()
                except Exception as exc:
                    self._failed(exc)
        self._audio = self._events = None
        self._closed = True
        if self.error is not None:
            extra["journal_error"] = self.error
        self.update_meta(status=status, seconds=round(self.samples / self.sample_rate, 3), **extra)

    def audio_blocks(self, block: int = 1 << 18) -> Iterator[np.ndarray]:
        """The take's audio: what the journal audio holds (only the blocks written whole), then what was
        kept in memory after the journal failed. Call after :meth:`close`."""
        if self.samples:
            yield from iter_journal_audio(self.audio_path, block, limit=self.samples)
        yield from self._memory

    def warning(self) -> str | None:
        """One line for the user when the journal failed (None when it did not)."""
        if self.error is None:
            return None
        kept = "" if not self.keep_audio else (
            f"; the recording lacks the last {self.lost_samples / self.sample_rate:.1f} s (memory limit)"
            if self.lost_samples else "; the recording was kept in memory")
        return (f"{self.error}; the take went on and its outputs hold all of it{kept}, but `pianonotes recover` "
                f"could only rebuild the first {self.journaled_samples() / self.sample_rate:.1f} s")

    def journaled_samples(self) -> int:
        """Samples the journal audio holds (what ``pianonotes recover`` reads: also the part of a block cut short)."""
        try:
            on_disk = self.audio_path.stat().st_size // _SAMPLE_BYTES
        except OSError:
            on_disk = 0
        return max(self.samples, on_disk)


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:
        pass


def _write_failure(exc: BaseException, folder: Path) -> str:
    """Why a write in ``folder`` failed, in words (libsndfile, for --record, only says "System error")."""
    from pianonotes.fileio import disk_full

    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if disk_full(folder):
        return "No space left on device"
    return str(exc).strip().rstrip(".") or type(exc).__name__


def _note_dict(n: Note) -> dict[str, Any]:
    return {"onset": round(n.onset, 6), "offset": round(n.offset, 6), "pitch": n.pitch,
            "velocity": n.velocity, "confidence": n.confidence}


def take_audio_path(take: str | os.PathLike) -> Path:
    """The journal audio of take folder ``take``: ``audio.f32``, or the ``audio.wav`` of a take journaled
    before pianonotes-take-v2."""
    take = Path(take)
    if not (take / AUDIO_FILE).exists() and (take / LEGACY_AUDIO_FILE).exists():
        return take / LEGACY_AUDIO_FILE
    return take / AUDIO_FILE


def iter_journal_audio(path: str | os.PathLike, block: int = 1 << 18, *,
                       limit: int | None = None) -> Iterator[np.ndarray]:
    """The samples of a take's journal audio in float32 blocks of up to ``block``; ``path`` is the take
    folder or its audio file (``audio.f32``, or an old take's ``audio.wav``). At most ``limit`` samples.
    A missing or unreadable file holds no samples; a sample cut short by a crash is left out."""
    path = Path(path)
    if path.is_dir():
        path = take_audio_path(path)
    left = float("inf") if limit is None else int(limit)
    if path.suffix.lower() == ".wav":
        yield from _legacy_wav_blocks(path, block, left)
        return
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        while left > 0:
            raw = f.read(_SAMPLE_BYTES * int(min(left, block)))
            data = np.frombuffer(raw[: len(raw) // _SAMPLE_BYTES * _SAMPLE_BYTES], "<f4")
            if not len(data):
                break
            yield data.astype(np.float32)
            left -= len(data)


def _legacy_wav_blocks(path: Path, block: int, left: float) -> Iterator[np.ndarray]:
    import soundfile as sf

    try:
        f = sf.SoundFile(os.fspath(path))
    except Exception:  # missing, not a WAV, no data chunk
        return
    with f:
        while left > 0:
            try:
                data = f.read(int(min(left, block)), dtype="float32", always_2d=True)[:, 0]
            except Exception:
                break
            if not len(data):
                break
            yield np.ascontiguousarray(data)
            left -= len(data)


def read_journal_audio(path: str | os.PathLike) -> np.ndarray:
    """All samples of a take's journal audio (``path``: the take folder or its audio file; see
    :func:`iter_journal_audio`), also after a crash."""
    blocks = list(iter_journal_audio(path))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
