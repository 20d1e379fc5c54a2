"""Transcribe audio files with the streaming engine (bounded memory, chunk-size independent)."""

from __future__ import annotations

import dataclasses
import glob
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from pianonotes import constants as C
from pianonotes.decode import Activations, DecodeOptions
from pianonotes.errors import PianonotesError
from pianonotes.notes import Note

BLOCK_SECONDS = 30.0


@dataclasses.dataclass
class Transcription:
    source: str
    notes: list[Note]
    seconds: float  # audio duration
    compute_seconds: float
    activations: Activations | None = None

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
            found = sorted(q for q in p.glob(pattern) if q.is_file() and q.suffix.lower() in C.AUDIO_EXTENSIONS)
            if not found:
                raise PianonotesError(
                    f"no audio files ({', '.join(C.AUDIO_EXTENSIONS)}) in folder {p}"
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
    """Holds the loaded model; transcribes files or activations."""

    def __init__(self, model_path: str | os.PathLike | None = None, *, device: str = "auto",
                 options: DecodeOptions | None = None, chunk_frames: int = 2000):
        from pianonotes.nn import checkpoint as ckpt
        from pianonotes.nn.train import pick_device

        self.device = pick_device(device)
        self.model, self.config = ckpt.load(model_path, device=self.device)
        self.options = options or DecodeOptions.for_model(self.config)
        self.chunk_frames = chunk_frames
        from pianonotes.frontend import frontend_from_config

        self.frontend = frontend_from_config(self.config["frontend"])

    def engine(self, *, time_offset: float = 0.0):
        from pianonotes.engine import Engine

        return Engine(self.model, self.config, options=self.options, device=self.device,
                      chunk_frames=self.chunk_frames, time_offset=time_offset)

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
                acts.append((upd.frame.astype(np.float16), upd.onset.astype(np.float16), upd.velocity.astype(np.float16)))
            if on_progress:
                on_progress(eng.samples_in / eng.sample_rate)
        upd = eng.finish()
        notes += upd.notes
        if keep_activations:
            acts.append((upd.frame.astype(np.float16), upd.onset.astype(np.float16), upd.velocity.astype(np.float16)))
        seconds = eng.samples_in / eng.sample_rate
        activations = None
        if keep_activations:
            activations = Activations(*(np.concatenate([a[i] for a in acts]) for i in range(3)), fps=eng.fps,
                                      source=source, decode_defaults=dataclasses.asdict(self.options))
        return Transcription(source, sorted(notes), seconds, time.perf_counter() - t0, activations)

    def transcribe_file(self, path: str | os.PathLike, *, start: float | None = None, end: float | None = None,
                        keep_activations: bool = False,
                        on_progress: Callable[[float], None] | None = None) -> Transcription:
        """Notes of one audio file (``start``/``end`` in seconds select an excerpt; times stay absolute)."""
        from pianonotes.audio import iter_audio_blocks, load_audio

        sr = self.frontend.sample_rate
        if start is not None or end is not None:
            if start is not None and end is not None and end <= start:
                raise PianonotesError(f"--end ({end}) must be after --start ({start})")
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
    return Transcriber(model, device=device, options=options).transcribe_file(path).notes
