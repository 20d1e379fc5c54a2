"""Audio sources of a take: the microphone (PortAudio callback into a bounded queue) and a file played in real time or as fast as the worker takes it."""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path

from pianonotes.errors import PianonotesError
from pianonotes.live.devices import InputDevice, import_sounddevice

QUEUE_SECONDS = 10.0  # audio the capture queue holds before blocks are dropped
FILE_BLOCK_SECONDS = 0.02  # block size a file source emits (like a microphone's period)


class _Source:
    """Feeds (arrival monotonic seconds, float32 mono block) items into a bounded queue; None ends."""

    samplerate: int
    label: str

    def __init__(self) -> None:
        self.dropped = 0  # blocks lost because the queue was full (or PortAudio reported an overflow)
        self.overflows = 0  # input overflows the device reported (a microphone's; 0 for the others)
        self.fast = False  # True: as fast as the worker takes it (a file with --fast), not real time
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


def check_decodes(path: str | os.PathLike) -> None:
    """Decode the whole file once (at its own rate: no resampling; 10 s at a time: bounded memory) and raise
    what :func:`pianonotes.audio.iter_audio_blocks` would raise later: no samples (a header-only WAV), a
    truncated or damaged stream (a FLAC cut short), NaN or infinite samples. A file played into a take
    must fail before the take (its journal, its outputs) exists, not after an empty take was written."""
    from pianonotes.audio import audio_info, iter_audio_blocks

    for _ in iter_audio_blocks(path, audio_info(path)[0], block_seconds=10.0):
        pass


class FileSource(_Source):
    """Plays an audio file into the pipeline at real-time pace (like a microphone: a full queue drops
    blocks) or, with ``fast``, as fast as the worker consumes it (nothing dropped)."""

    def __init__(self, path: str | os.PathLike, samplerate: int, *, fast: bool = False,
                 block_seconds: float = FILE_BLOCK_SECONDS):
        super().__init__()
        self.path = Path(path)
        check_decodes(self.path)  # fails before the take starts, with the line `transcribe` gives
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
