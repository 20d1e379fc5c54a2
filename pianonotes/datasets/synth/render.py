"""Render performances to audio with FluidSynth (the Debian ``fluidsynth`` program)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pianonotes.errors import PianonotesError
from pianonotes.notes import Note, PedalEvent, midi_bytes
from pianonotes.datasets.synth.performance import Performance

TICKS_PER_SECOND = 960  # midi_bytes writes 480 ticks per beat at 120 bpm
TAIL_SECONDS = 1.5  # silence after each clip: release and decay


_PRCTL = []  # libc's prctl, looked up once in the parent (never dlopen between fork and exec)


def die_with_parent():
    """A ``preexec_fn`` that makes a child process end when the process that started it dies (Linux:
    PR_SET_PDEATHSIG with SIGKILL; the child keeps it across exec), or None where that is not available.
    A render worker killed by a signal once left its fluidsynth rendering on until the piece was done."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return None
    if not _PRCTL:
        try:
            import ctypes

            _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl)
        except (OSError, AttributeError):
            _PRCTL.append(None)
    prctl = _PRCTL[0]
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def fluidsynth_binary() -> str:
    exe = shutil.which("fluidsynth")
    if not exe:
        raise PianonotesError("fluidsynth not found; install it (Debian: apt-get install fluidsynth)")
    return exe


def check_soundfont(path: str) -> None:
    """A readable SoundFont (RIFF 'sfbk' header) at ``path``, else one clear error: FluidSynth itself would
    quietly fall back to its default soundfont, i.e. to another piano."""
    if not Path(path).is_file():
        raise PianonotesError(
            f"soundfont {path} not found; install it (Debian: fluid-soundfont-gm, timgm6mb-soundfont, ...) "
            "or choose another with --soundfonts"
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise PianonotesError(f"cannot read soundfont {path}: {exc.strerror}") from exc
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise PianonotesError(f"{path} is not a SoundFont (.sf2/.sf3) file; replace it or choose another with "
                              "--soundfonts")


def quantize(t: np.ndarray | float):
    return np.round(np.asarray(t) * TICKS_PER_SECOND) / TICKS_PER_SECOND


def layout(clips: list[Performance]) -> tuple[list[tuple[float, float, int, int]], list[PedalEvent], list[float], float]:
    """Place clips one after another with a silent tail each; times are quantized to MIDI ticks."""
    keys, pedals, starts = [], [], []
    t = 0.0
    for clip in clips:
        starts.append(t)
        for on, rel, p, v in clip.keys:
            a, b = float(quantize(on + t)), float(quantize(rel + t))
            if b > a:
                keys.append((a, b, int(p), int(v)))
        for ped in clip.pedals:
            a, b = float(quantize(ped.start + t)), float(quantize(ped.end + t))
            if b > a:
                pedals.append(PedalEvent(a, b))
        t = float(quantize(t + clip.duration + TAIL_SECONDS))
    return keys, pedals, starts, t


def render(keys, pedals, total: float, soundfont: str, program: int, sample_rate: int,
           programs_at: list[tuple[float, int]] | None = None) -> np.ndarray:
    """Render key presses (onset, release, pitch, velocity) and pedal intervals to mono float32."""
    import mido
    import soundfile as sf

    check_soundfont(soundfont)
    key_notes = [Note(a, b, p, v) for a, b, p, v in keys]
    data = midi_bytes(key_notes, pedals=pedals, program=program, use_key_offsets=False)
    mid = mido.MidiFile(file=__import__("io").BytesIO(data))
    track = mid.tracks[0]
    # program changes at clip starts and an end marker so the release tails are rendered
    abs_msgs, tick = [], 0
    for msg in track:
        tick += msg.time
        abs_msgs.append((tick, msg))
    tps = TICKS_PER_SECOND
    for at, prog in programs_at or []:
        abs_msgs.append((round(at * tps) - 0, mido.Message("program_change", program=prog)))
    end = [m for m in abs_msgs if m[1].type == "end_of_track"]
    abs_msgs = [m for m in abs_msgs if m[1].type != "end_of_track"]
    abs_msgs.append((round(total * tps), mido.Message("control_change", control=7, value=100)))
    abs_msgs.sort(key=lambda m: (m[0], 0 if m[1].type == "program_change" else 1))
    new = mido.MidiTrack()
    last = 0
    for tick, msg in abs_msgs:
        new.append(msg.copy(time=tick - last))
        last = tick
    new.append(end[0][1].copy(time=0) if end else mido.MetaMessage("end_of_track", time=0))
    mid.tracks[0] = new
    try:
        with tempfile.TemporaryDirectory(prefix="pianonotes-render-") as tmp:
            mpath, wpath = os.path.join(tmp, "in.mid"), os.path.join(tmp, "out.wav")
            mid.save(mpath)
            cmd = [fluidsynth_binary(), "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(sample_rate),
                   "-O", "float", "-T", "wav", "-F", wpath, soundfont, mpath]
            proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=die_with_parent())
            if proc.returncode != 0 or not os.path.exists(wpath):
                raise PianonotesError(f"fluidsynth failed on {soundfont}: {proc.stderr.strip()[:200]}")
            if "not a soundfont" in proc.stderr.lower() or "failed to load" in proc.stderr.lower():
                # fluidsynth would go on with its default soundfont: another piano, maybe the reserved one
                raise PianonotesError(f"fluidsynth cannot read the soundfont {soundfont}; replace the file (it never "
                                      "falls back to another instrument)")
            audio, sr = sf.read(wpath, dtype="float32", always_2d=True)
    except OSError as exc:  # the temp folder's disk is full or gone
        raise PianonotesError(f"cannot render in the temp folder {tempfile.gettempdir()}: {exc.strerror}; free some "
                              "space there (or set TMPDIR) and run the same command again to resume") from exc
    n = int(round(total * sample_rate))
    if len(audio) < n - sample_rate // 10:  # fluidsynth renders past the end; a short file was cut off
        raise PianonotesError(f"fluidsynth wrote only {len(audio) / sample_rate:.1f} s of {total:.1f} s (is the temp "
                              f"folder {tempfile.gettempdir()} full?); free some space and run the command again")
    audio = audio.mean(axis=1)
    return np.pad(audio, (0, max(0, n - len(audio))))[:n]
