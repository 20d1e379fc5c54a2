"""A catalog of bad inputs (issue 14): one case per failure family, driven in-process with Typer's
CliRunner. Each case asserts a non-zero exit, exactly one `error:` line on stderr, no traceback (the
command ended through its own error path, not an exception), and that no file in the work folder
changed except the outputs the case allows (usually none)."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from conftest import sine

SR = 16000


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_bad(folder: Path, args, *needles, changed=()):
    """Run `pianonotes ARGS`; assert a clean one-line failure and that nothing in ``folder`` changed."""
    from pianonotes.cli import app

    before = _snapshot(folder)
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})
    err = res.stderr
    assert res.exit_code not in (0, None), (args, res.stdout, err)
    assert isinstance(res.exception, SystemExit), (args, repr(res.exception))  # no uncaught exception
    assert "Traceback" not in err + res.stdout, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])
    after = _snapshot(folder)
    diff = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} - set(changed)
    assert not diff, f"{args}: files changed: {sorted(diff)}"
    return lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small random AudioNet checkpoint (the cases fail before or right after loading it)."""
    import torch

    from pianonotes.frontend import FrontEnd
    from pianonotes.nn import checkpoint as ckpt
    from pianonotes.nn.archs import build

    torch.manual_seed(0)
    fe = FrontEnd()
    arch_config = {"channels": [8, 8], "hidden": 32, "dilations": [1]}
    net = build("audionet", fe.n_features, arch_config)
    cfg = {"arch": "audionet", "arch_config": arch_config, "n_features": fe.n_features, "frontend": fe.to_dict(),
           "fps": fe.fps, "past_frames": net.past, "future_frames": net.future,
           "decode": {"onset_threshold": 0.5, "frame_threshold": 0.5, "min_note_seconds": 0.04}}
    path = tmp_path_factory.mktemp("model") / "rand"
    ckpt.save(path, net, cfg)
    return path


@pytest.fixture
def work(tmp_path):
    sf.write(tmp_path / "in.wav", sine(440, 1.0), SR)
    return tmp_path


# ------------------------------------------------------------------ never overwrite without --overwrite
def test_save_activations_onto_the_input_is_refused(work, model):
    run_bad(work, ["transcribe", work / "in.wav", "-o", work / "out.mid", "--save-activations", work / "in.wav",
                   "--model", model], "in.wav", "input")
    # even with --overwrite: an output is never an input
    run_bad(work, ["transcribe", work / "in.wav", "-o", work / "out.mid", "--save-activations", work / "in.wav",
                   "--overwrite", "--model", model], "input")


def test_existing_activations_and_roll_are_kept(work, model):
    (work / "acts.npz").write_bytes(b"keep me")
    run_bad(work, ["transcribe", work / "in.wav", "-o", work / "out.mid", "--save-activations", work / "acts.npz",
                   "--model", model], "acts.npz", "--overwrite")
    (work / "out.roll.png").write_bytes(b"keep me too")
    run_bad(work, ["transcribe", work / "in.wav", "-o", work / "out.mid", "--roll", "--model", model],
            "out.roll.png", "--overwrite")


def test_an_output_named_like_the_checkpoint_or_twice_is_refused(work, model):
    run_bad(work, ["transcribe", work / "in.wav", "-o", Path(str(model) + ".json"), "--model", model,
                   "--overwrite"], "input")
    run_bad(work, ["transcribe", work / "in.wav", "-o", work / "a.mid", "-o", work / "a.mid", "--model", model],
            "twice")


def test_evaluate_output_never_replaces_the_reference_or_an_old_result(work, model):
    pytest.importorskip("mir_eval")
    from pianonotes.notes import Note, write_midi

    write_midi(work / "in.mid", [Note(0.1, 0.9, 69, 80)])
    run_bad(work, ["evaluate", work / "in.wav", "-o", work / "in.mid", "--model", model], "in.mid", "input")
    (work / "metrics.json").write_text("{}")
    run_bad(work, ["evaluate", work / "in.wav", "-o", work / "metrics.json", "--model", model], "--overwrite")
    (work / "m2.png").write_bytes(b"an older plot")
    run_bad(work, ["evaluate", work / "in.wav", "-o", work / "m2.json", "--model", model], "m2.png", "--overwrite")


# --------------------------------------------------------------------------------- absurd inputs
def _wav_header(rate: int, n_samples: int) -> bytes:
    pcm = np.zeros(n_samples, "<i2").tobytes()
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm


@pytest.mark.parametrize("rate", [1, 100, 10_000_000])
def test_absurd_sample_rate_is_refused_before_resampling(work, model, rate):
    """A 1 Hz header once made the resampler upsample 16,000x until the kernel killed it."""
    (work / "odd.wav").write_bytes(_wav_header(rate, 4000))
    run_bad(work, ["transcribe", work / "odd.wav", "-o", work / "odd.mid", "--model", model], "sample rate",
            f"{rate} Hz")


@pytest.mark.parametrize("args, needles", [
    (["--start", "-5"], ["--start"]),
    (["--end", "-1"], ["--end"]),
    (["--start", "nan"], ["--start"]),
    (["--start", "2", "--end", "1"], ["--end"]),
])
def test_excerpt_out_of_range(work, model, args, needles):
    run_bad(work, ["transcribe", work / "in.wav", "-o", work / "x.csv", "--model", model, *args], *needles)


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _huge_npz(path: Path) -> Path:
    """An .npz whose headers claim 10^11 x 88 floats (never allocated)."""
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 11, 88)})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("frame.npy", hdr.getvalue())
        zf.writestr("onset.npy", hdr.getvalue())
        zf.writestr("fps.npy", b"")
    return path


ACTIVATIONS = {
    "shape": (lambda p: _npz(p, frame=np.zeros((10, 87)), onset=np.zeros((10, 87)), fps=50.0), ["(10, 87)"]),
    "lengths": (lambda p: _npz(p, frame=np.zeros((10, 88)), onset=np.zeros((12, 88)), fps=50.0), ["onset"]),
    "velocity": (lambda p: _npz(p, frame=np.zeros((10, 88)), onset=np.zeros((10, 88)), velocity=np.zeros((3, 88)),
                                fps=50.0), ["velocity"]),
    "one-dim": (lambda p: _npz(p, frame=np.zeros(88), onset=np.zeros(88), fps=50.0), ["frame"]),
    "fps-zero": (lambda p: _npz(p, frame=np.zeros((10, 88)), onset=np.zeros((10, 88)), fps=0.0), ["fps"]),
    "fps-nan": (lambda p: _npz(p, frame=np.zeros((10, 88)), onset=np.zeros((10, 88)), fps=np.nan), ["fps"]),
    "fps-array": (lambda p: _npz(p, frame=np.zeros((10, 88)), onset=np.zeros((10, 88)), fps=np.zeros(3)), ["fps"]),
    "nan-values": (lambda p: _npz(p, frame=np.full((10, 88), np.nan), onset=np.zeros((10, 88)), fps=50.0), ["NaN"]),
    "strings": (lambda p: _npz(p, frame=np.array("x"), onset=np.zeros((10, 88)), fps=50.0), ["frame"]),
    "missing": (lambda p: _npz(p, onset=np.zeros((10, 88))), ["'frame'"]),
    "empty-zip": (lambda p: zipfile.ZipFile(p, "w").close() or p, ["'frame'"]),
    "bare-npy": (lambda p: p.write_bytes(_npy_bytes()) and p, ["bare array"]),
    "text": (lambda p: p.write_text("not an archive\n" * 20) and p, ["not a pianonotes activations file"]),
    "huge": (_huge_npz, ["claims 100000000000 frames"]),
}


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    return buf.getvalue()


@pytest.mark.parametrize("kind", sorted(ACTIVATIONS))
def test_malformed_activations(work, kind):
    make, needles = ACTIVATIONS[kind]
    path = make(work / f"{kind}.npz")
    line = run_bad(work, ["transcribe", "--from-activations", path, "-o", work / f"{kind}.mid"], *needles)
    assert "allow_pickle" not in line and "Aborted" not in line


# ----------------------------------------------------------------------------- options out of range
@pytest.mark.parametrize("args, needle", [
    (["--shard-seconds", "0"], "--shard-seconds"),
    (["--hours", "1e7"], "--hours"),
    (["--hours", "-1"], "--hours"),
    (["--eval-minutes", "nan"], "--eval-minutes"),
    (["--workers", "0"], "--workers"),
])
def test_data_synth_options_out_of_range(work, args, needle):
    run_bad(work, ["data", "synth", work / "ds", *args], needle)
    assert not (work / "ds").exists()


@pytest.mark.parametrize("args, needle", [
    (["--save-every", "0"], "--save-every"),
    (["--batch-size", "0"], "--batch-size"),
    (["--window", "-3"], "--window"),
    (["--max-steps", "-1"], "--max-steps"),
    (["--epochs", "0"], "--epochs"),
    (["--lr", "-1"], "--lr"),
])
def test_train_options_out_of_range(work, args, needle):
    pytest.importorskip("torch")
    run_bad(work, ["train", "--data", work, "--out", work / "run", *args], needle)
    assert not (work / "run").exists()


# ------------------------------------------------------------------------------- checkpoint configs
@pytest.mark.parametrize("damage", ["arch", "frontend", "n_features", "not-an-object", "not-json"])
def test_checkpoint_config_with_missing_or_garbage_fields(work, model, damage):
    cfg = json.loads(Path(str(model) + ".json").read_text())
    bad = work / "bad"
    Path(str(bad) + ".safetensors").write_bytes(Path(str(model) + ".safetensors").read_bytes())
    if damage == "not-an-object":
        text = "[1, 2]"
    elif damage == "not-json":
        text = "{arch: audionet"
    else:
        cfg.pop(damage)
        text = json.dumps(cfg)
    Path(str(bad) + ".json").write_text(text)
    run_bad(work, ["transcribe", work / "in.wav", "-o", work / "x.mid", "--model", bad], "bad.json")


# --------------------------------------------------------------------------- names that look like markup
def test_file_names_with_rich_markup_are_printed_as_they_are(work, model):
    """`[bold]` in a name was silently eaten and `[/b]` crashed after writing the output."""
    line = run_bad(work, ["transcribe", work / "x[bold]y.wav", "-o", work / "x.mid", "--model", model], "x[bold]y.wav")
    assert "[bold]" in line
    (work / "t[").mkdir()
    sf.write(work / "t[" / "b].wav", sine(440, 0.5), SR)
    from pianonotes.cli import app

    res = CliRunner().invoke(app, ["transcribe", str(work / "t[/b].wav"), "-o", str(work / "t[/b].mid"), "--roll",
                                   "--model", str(model)], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert res.exit_code == 0 and res.exception is None, (res.stdout, res.stderr, repr(res.exception))
    assert "t[/b].mid" in res.stdout and (work / "t[" / "b].mid").exists() and (work / "t[" / "b].roll.png").exists()


def _damaged_checkpoint(model: Path, folder: Path, damage: str) -> Path:
    cfg = json.loads(Path(str(model) + ".json").read_text())
    bad = folder / "bad"
    Path(str(bad) + ".safetensors").write_bytes(Path(str(model) + ".safetensors").read_bytes())
    cfg.pop(damage)
    Path(str(bad) + ".json").write_text(json.dumps(cfg))
    return bad


def test_damaged_checkpoint_through_listen_and_evaluate(work, model):
    pytest.importorskip("mir_eval")
    bad = _damaged_checkpoint(model, work, "frontend")
    run_bad(work, ["listen", "--input", work / "in.wav", "--fast", "--plain", "-o", work / "l.mid", "--model", bad],
            "bad.json", "frontend")
    run_bad(work, ["evaluate", work / "in.wav", "--model", bad], "bad.json", "frontend")


# -------------------------------------------------------------------------- not a file: pipes, devices
@pytest.mark.parametrize("command", ["transcribe", "listen"])
def test_a_pipe_or_device_is_not_called_empty(work, model, command):
    import os

    fifo = work / "pipe.wav"
    os.mkfifo(fifo)
    for src in (fifo, Path("/dev/urandom")):
        args = (["transcribe", src, "-o", work / "p.mid"] if command == "transcribe"
                else ["listen", "--input", src, "--fast", "--plain", "-o", work / "p.mid"])
        line = run_bad(work, [*args, "--model", model], "not a regular file")
        assert "empty" not in line


# ------------------------------------------------------------------------------------- listen --recover
def test_recover_never_replaces_files_and_refuses_a_broken_take(work, model, monkeypatch):
    """`listen --recover OLD_TAKE` once rewrote a newer take's --record WAV and MIDI; a take.json with
    sample rate 0 was a ZeroDivisionError."""
    from pianonotes.cli import app

    monkeypatch.setenv("PIANONOTES_CACHE", str(work / "cache"))
    res = CliRunner().invoke(app, ["listen", "--input", str(work / "in.wav"), "--fast", "--plain", "-o",
                                   str(work / "take.mid"), "--record", str(work / "take.wav"), "--model", str(model)])
    assert res.exit_code == 0, (res.stdout, res.stderr, repr(res.exception))
    (take,) = (work / "cache" / "takes").iterdir()
    run_bad(work, ["listen", "--recover", take, "--model", model], "take.mid", "--overwrite")
    (work / "take.mid").unlink()
    run_bad(work, ["listen", "--recover", take, "--model", model], "take.wav", "--overwrite")
    meta = json.loads((take / "take.json").read_text())
    (take / "take.json").write_text(json.dumps({**meta, "sample_rate": 0}))
    run_bad(work, ["listen", "--recover", take, "--model", model, "--overwrite"], "sample_rate")
    (take / "take.json").write_text(json.dumps(meta))
    res = CliRunner().invoke(app, ["listen", "--recover", str(take), "--model", str(model), "--overwrite"])
    assert res.exit_code == 0 and (work / "take.mid").exists(), (res.stdout, res.stderr)


# ------------------------------------------------------------------------------------------ clean exits
def _catches_sigterm(pid: int) -> bool:
    import signal

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_sigterm_during_transcribe_is_like_ctrl_c(work, model):
    """SIGTERM once killed `transcribe` outright, leaving `.part` files; now it ends as Ctrl-C does."""
    import signal
    import subprocess
    import sys
    import time

    sf.write(work / "long.wav", np.tile(sine(440, 1.0, amp=0.2), 1200), SR)  # 20 minutes
    outs = [work / "long.mid", work / "long.musicxml"]
    args = ["transcribe", work / "long.wav", "--model", model, "-j", "1"] + [a for o in outs for a in ("-o", o)]
    proc = subprocess.Popen([sys.executable, "-m", "pianonotes", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not _catches_sigterm(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted") and "Traceback" not in err, err
    assert not [p.name for p in work.iterdir() if ".part" in p.name]
    assert not any(o.exists() for o in outs)
