import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FLUIDR3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

needs_fluidsynth = pytest.mark.skipif(
    not (shutil.which("fluidsynth") and Path(FLUIDR3).exists()), reason="fluidsynth and fluid-soundfont-gm needed"
)


def run_cli(*args, cwd=None, env=None, timeout=300, input=None):
    """Run the real `pianonotes` executable; returns CompletedProcess with text output."""
    exe = Path(sys.executable).with_name("pianonotes")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pianonotes"]
    e = dict(os.environ, COLUMNS="100", NO_COLOR="1")
    if env:
        e.update(env)
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=e,
                          timeout=timeout, input=input)


def assert_musescore_opens(musicxml: Path, work: Path) -> None:
    """MuseScore 3 (mscore3, headless) reads the file without an error and engraves it to PDF."""
    env = {"QT_QPA_PLATFORM": "offscreen", "HOME": str(work), "PATH": "/usr/bin:/bin"}
    pdf = work / (musicxml.stem + ".pdf")
    proc = subprocess.run(["mscore3", "-o", str(pdf), str(musicxml)], env=env, capture_output=True, timeout=120)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err[-2000:]
    assert "not a valid MusicXML" not in err and "already exists" not in err and "Error" not in err, err[-2000:]
    assert pdf.read_bytes().startswith(b"%PDF")


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and "Traceback" not in proc.stdout, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n.lower() in err.lower(), err


def sine(freq, seconds, sr=16000, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def smooth_random_probs(rng, T: int, *, frame_gain: float = 2.2, onset_gain: float = 1.0) -> dict:
    """Random per-head activations (T, 88), smoothed over 6 frames so notes last a while, plus a pedal: the
    material of the streaming-equals-offline tests."""
    from pianonotes import constants

    smooth = np.ones(6) / 6
    probs = {h: np.clip(np.apply_along_axis(lambda c: np.convolve(c, smooth, "same"), 0,
                                            rng.random((T, constants.N_KEYS)) ** 3), 0, 1).astype(np.float32)
             for h in ("frame", "onset", "velocity", "key")}
    probs["frame"] = np.clip(probs["frame"] * frame_gain, 0, 1)
    probs["onset"] = np.clip(probs["onset"] * onset_gain, 0, 1)
    probs["pedal"] = rng.random((T, 1)).astype(np.float32)
    return probs


def stream_in_chunks(decoder, probs: dict, chunk: int) -> list:
    """Every note a StreamingDecoder gives for ``probs`` pushed ``chunk`` frames at a time, then flushed,
    sorted."""
    out = []
    for i in range(0, len(probs["frame"]), chunk):
        out += decoder.push({h: v[i:i + chunk] for h, v in probs.items()})
    return sorted(out + decoder.flush())


class CalibrationRecording:
    """What devtools.ship.calibrate reads of a recording; ``features[0, 0]`` names its activations."""

    def __init__(self, notes, n_frames: int, index: int = 0):
        self.notes, self.n_frames, self.has_pedal_labels = notes, n_frames, False
        self.features = np.full((n_frames, 2), index, np.float32)


class ActivationsTranscriber:
    """A transcriber whose network answers with given activations (by the recording's index)."""

    def __init__(self, acts: dict):
        self.acts = acts

    def infer_features(self, feats):
        return self.acts[int(feats[0, 0])]


DECODE_HALF = {"onset_threshold": 0.5, "frame_threshold": 0.5, "min_note_seconds": 0.04}


def random_checkpoint(path, arch_config: dict, *, saturate=("onset", "frame"), decode=DECODE_HALF,
                      record_lookahead: bool = False, seed: int = 0) -> Path:
    """Save a small random AudioNet (dual-v1 front end) as the checkpoint ``path`` (a stem); returns its JSON.

    ``saturate``: heads whose weights are scaled by 20, so that decisions sit far from the thresholds and
    tiny float differences between chunkings never flip one (the notes are arbitrary but deterministic).
    ``record_lookahead``: also write ``lookahead_seconds`` (newer checkpoints do; older ones leave it out).
    """
    import torch

    from pianonotes.features.logspec import LogSpecFrontEnd
    from pianonotes.nn import checkpoint
    from pianonotes.nn.archs import build

    torch.manual_seed(seed)
    fe = LogSpecFrontEnd()
    model = build("audionet", fe.n_features, arch_config)
    with torch.no_grad():
        for name in saturate:
            head = getattr(model, name)
            head.weight.mul_(20.0)
            head.bias.mul_(20.0)
    cfg = {"arch": "audionet", "arch_config": arch_config, "n_features": fe.n_features, "frontend": fe.to_dict(),
           "fps": fe.fps, "past_frames": model.past, "future_frames": model.future, "decode": dict(decode)}
    if record_lookahead:
        cfg["lookahead_seconds"] = model.future / fe.fps + fe.lookahead_seconds
    return checkpoint.save(path, model, cfg)


def four_then_three(bars4=8, bars3=8):
    """``bars4`` bars of 4/4 then ``bars3`` of 3/4: a bass on each downbeat held for the bar, chords on
    the other beats, a melody starting with a half note."""
    ev, q = [], 0
    prog = [(36, [52, 55, 60]), (41, [53, 57, 60]), (43, [55, 59, 62]), (36, [52, 55, 60])]
    tune = [72, 74, 76, 72, 77, 76, 74, 71, 72, 67]
    for b in range(bars4 + bars3):
        n = 4 if b < bars4 else 3
        bass, chord = prog[b % 4]
        ev.append((q, n, bass))
        ev += [(q + k, 1, p) for k in range(1, n) for p in chord]
        m = tune[b % len(tune)]
        ev += [(q, 2, m)] + [(q + k, 1, m - k) for k in range(2, n)]
        q += n
    return ev
