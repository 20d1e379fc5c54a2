"""Where a take's results go: output and --record checks, writing the notes, copying the recording."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from pianonotes.errors import PianonotesError
from pianonotes.live.journal import Journal, _write_failure, iter_journal_audio
from pianonotes.notes import Note


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
                  pedals: Sequence | None = None, note_length: str = "key", progress=None,
                  rhythm: str = "fine") -> list[Path]:
    """Write the take to every output atomically, through the same writer as ``transcribe``
    (:func:`pianonotes.export.write_all`: one beat, meter and key analysis for the MIDI and the score;
    ``pedals`` (the engine's ``decoder.pedals``), ``note_length`` and ``progress(stage, fraction)`` as
    there; ``rhythm`` a :data:`pianonotes.constants.RHYTHM_GRIDS` name)."""
    from pianonotes.export import rhythm_grid, write_all

    return write_all([Path(p) for p in outputs], list(notes), title=title, bpm=bpm,
                     time_signature=time_signature, overwrite=True, pedals=pedals, note_length=note_length,
                     progress=progress, grid=rhythm_grid(rhythm))


def copy_recording(journal: Journal | str | os.PathLike, dest: str | os.PathLike, sample_rate: int) -> Path:
    """Copy a take's journal audio to ``dest`` atomically, in blocks (float32 WAV, or converted to .flac/.ogg).
    ``journal``: the :class:`Journal` of a take (then also the audio it kept in memory after a failure), a take
    folder, or its audio file (``audio.f32``, or an old take's ``audio.wav``)."""
    import soundfile as sf

    from pianonotes.fileio import atomic_path

    dest = Path(dest)
    try:
        with atomic_path(dest) as tmp:
            with sf.SoundFile(os.fspath(tmp), "w", samplerate=sample_rate, channels=1,
                              subtype="FLOAT" if dest.suffix.lower() == ".wav" else None) as out:
                blocks = journal.audio_blocks() if isinstance(journal, Journal) else iter_journal_audio(journal)
                for block in blocks:
                    out.write(block)
    except RuntimeError as exc:  # libsndfile's errors (a full disk)
        raise PianonotesError(f"cannot write {dest}: {_write_failure(exc, dest.parent)}; "
                              "check the folder and free space") from exc
    return dest
