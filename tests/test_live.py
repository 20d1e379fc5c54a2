"""`pianonotes listen` through the real stack: PortAudio capture from an ALSA-file-plugin virtual
microphone, --input at real-time pace and fast, the Rich screen in tmux, SIGINT/SIGKILL and recovery.

The checkpoint has random weights, so the notes are arbitrary but deterministic: every check compares the
live pipeline with offline transcription (one Engine, the whole file pushed, then finish).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pianonotes import constants

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SR = constants.SAMPLE_RATE
CLIP_SECONDS = 5.0
ALSA_MIC = ('pcm.!default { type file slave.pcm "null" file "/dev/null" '
            'infile { @func getenv vars [ PN_TEST_RAW ] default "/dev/zero" } format "raw" }\n')
# The commands on a fresh Typer app (registering twice must be harmless) ...
RUN = ("import sys\nimport typer\nfrom pianonotes.cli.listen import register\n"
       "app = typer.Typer(pretty_exceptions_enable=False)\nregister(app)\nregister(app)\n"
       "try:\n    app(prog_name='pianonotes')\nfinally:\n"
       "    sys.stderr.write('torch-imported=%s\\n' % ('torch' in sys.modules))\n")
# ... and on the main app, which registers them itself.
RUN_MAIN = RUN.replace("import typer\n", "").replace("app = typer.Typer(pretty_exceptions_enable=False)\n",
                                                      "from pianonotes.cli.app import app\n")


def _have_portaudio() -> bool:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True


needs_portaudio = pytest.mark.skipif(not _have_portaudio(), reason="libportaudio2 not installed")


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="module")
def ckpt(work) -> Path:
    import torch

    from pianonotes.features.logspec import LogSpecFrontEnd
    from pianonotes.nn import checkpoint
    from pianonotes.nn.archs import build

    torch.manual_seed(0)
    fe = LogSpecFrontEnd()
    model = build("audionet", fe.n_features)
    with torch.no_grad():  # saturate the heads: probabilities far from the thresholds, so the tiny float
        for head in (model.onset, model.frame):  # differences between chunkings never flip a decision
            head.weight.mul_(20.0)
            head.bias.mul_(20.0)
    cfg = {"arch": "audionet", "arch_config": {}, "n_features": fe.n_features, "frontend": fe.to_dict(),
           "fps": fe.fps, "past_frames": model.past, "future_frames": model.future,
           "lookahead_seconds": model.future / fe.fps + fe.lookahead_seconds,
           "decode": {"onset_threshold": constants.ONSET_THRESHOLD, "frame_threshold": constants.FRAME_THRESHOLD,
                      "min_note_seconds": constants.MIN_NOTE_SECONDS}}
    return checkpoint.save(work / "random", model, cfg)


@pytest.fixture(scope="module")
def clip(work) -> Path:
    """5 s of FluidSynth piano at 16 kHz: a C major chord, then single notes."""
    import soundfile as sf

    if not shutil.which("fluidsynth") or not Path(SOUNDFONT).exists():
        pytest.skip("fluidsynth or FluidR3_GM.sf2 missing")
    from pianonotes.datasets.synth.render import render

    keys = [(0.5, 1.5, 60, 90), (0.5, 1.5, 64, 90), (0.5, 1.5, 67, 90), (2.0, 3.0, 72, 80),
            (2.2, 3.2, 48, 70), (3.5, 4.0, 55, 100)]
    audio = render(keys, [], CLIP_SECONDS, SOUNDFONT, 0, SR)
    path = work / "clip.wav"
    sf.write(path, audio, SR, subtype="FLOAT")
    # the virtual microphone's raw file: float32 little-endian mono, padded with a second of silence
    np.concatenate([audio, np.zeros(SR, np.float32)]).astype("<f4").tofile(work / "clip.f32")
    return path


@pytest.fixture(scope="module")
def offline(ckpt, clip):
    from pianonotes.audio import load_audio
    from pianonotes.engine import Engine
    from pianonotes.nn import checkpoint

    model, cfg = checkpoint.load(ckpt)
    eng = Engine(model, cfg)
    notes = sorted(eng.push(load_audio(clip, SR)).notes + eng.finish().notes)
    assert 5 < len(notes) < 1000
    return notes


@pytest.fixture
def env(work, tmp_path) -> dict:
    e = dict(os.environ)
    e["PIANONOTES_CACHE"] = str(tmp_path / "cache")
    e["COLUMNS"] = "80"
    e.pop("ALSA_CONFIG_PATH", None)
    return e


def _mic_env(env: dict, work: Path) -> dict:
    conf = work / "mic.conf"
    conf.write_text(ALSA_MIC)
    return dict(env, ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{conf}", PN_TEST_RAW=str(work / "clip.f32"))


def _cli(args, env, *, run: str = RUN, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", run, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=kw.pop("timeout", 60), **kw)


def _keyset(notes, digits: int = 2):
    return {(n.pitch, round(n.onset, digits)) for n in notes}


def _midi_notes(path):
    from pianonotes.notes import read_midi

    return read_midi(path, sustain=False)


def _one_red_line(proc, text: str) -> None:
    assert proc.returncode != 0
    assert text in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]) == 1


# ------------------------------------------------------------------------------------- pure pieces
def test_stream_resampler_matches_whole_stream():
    """live's import of the resampler (now in audio.py, on soxr): pushed in blocks, the output is the
    whole-array resampling bit for bit; soxr holds back about 20 ms until flush, flush gives the rest."""
    from pianonotes.audio import resample
    from pianonotes.audio import StreamResampler

    rng = np.random.default_rng(0)
    x = rng.standard_normal(44100).astype(np.float32)
    rs = StreamResampler(44100, 16000)
    out = np.concatenate([rs.push(x[i: i + 1000]) for i in range(0, len(x), 1000)])
    ref = resample(x, 44100, 16000)
    assert len(out) > len(ref) - 700  # held back: at most about 44 ms of output
    np.testing.assert_array_equal(out, ref[: len(out)])
    np.testing.assert_array_equal(np.concatenate([out, rs.flush()]), ref)


def test_view_fits_the_terminal_and_degrades():
    from rich.console import Console

    from pianonotes.live.session import Snapshot
    from pianonotes.cli.liveview import LiveView
    from pianonotes.notes import Note

    snap = Snapshot(elapsed=12.3, level_db=-20, peak=0.3,
                    active=((60, 11.9, 0.93), (64, 12.0, 0.5), (61, 12.1, 0.7)),
                    recent=(Note(10.0, 11.0, 48, 80),), n_notes=42, dropped=0, latency_ms=31.0)
    view = LiveView(title="default (16 kHz) · audionet", lookahead_ms=100)
    for width in (120, 80, 60, 40):
        console = Console(width=width, record=True, force_terminal=True, color_system=None)
        console.print(view.render(snap, width))
        text = console.export_text()
        assert all(len(line) <= width for line in text.splitlines()), (width, text)
        for needle in ("C4", "E4", "C#4", "level", "elapsed 00:12.3", "notes 42", "latency 31 ms",
                       "dropped 0", "q stop and save"):
            assert needle in text, (width, needle, text)
        assert ("C1" in text and "C8" in text) == (width >= 54)


def test_view_shows_a_journal_failure_while_the_take_goes_on():
    """A failed journal (a full cache disk) is on the screen from the update it happened in, wrapped to the
    terminal so its reason (at the end of the line) is never cut off."""
    from rich.console import Console

    from pianonotes.cli.liveview import LiveView
    from pianonotes.live.session import Snapshot

    warning = ("the take journal in /home/someone/.cache/pianonotes/takes/20260101-120000 failed after 1.5 s "
               "of audio (No space left on device); the take goes on and its outputs will hold all of it")
    view = LiveView(title="t")
    for width in (120, 60, 40):
        console = Console(width=width, record=True, force_terminal=True, color_system=None)
        console.print(view.render(Snapshot(elapsed=3.0, warning=warning), width))
        text = console.export_text()
        assert all(len(line) <= width for line in text.splitlines()), (width, text)
        flat = " ".join(text.split())
        assert "warning: the take journal" in flat and "(No space left on device)" in flat, (width, text)
    console = Console(width=80, record=True, force_terminal=True, color_system=None)
    console.print(view.render(Snapshot(elapsed=3.0), 80))
    assert "warning" not in console.export_text()


def test_unsupported_samplerate_falls_back_or_lists_rates(monkeypatch):
    from pianonotes.errors import PianonotesError
    from pianonotes.live import devices
    from pianonotes.live.devices import InputDevice, choose_samplerate

    class FakeSD:
        @staticmethod
        def check_input_settings(*, device, channels, dtype, samplerate):
            if samplerate not in (44100, 48000):
                raise ValueError("Invalid sample rate")

    monkeypatch.setattr(devices, "import_sounddevice", lambda: FakeSD)
    dev = InputDevice(3, "USB mic", 1, 48000.0)
    assert choose_samplerate(dev, None, 16000) == 48000  # the device's default rate
    assert choose_samplerate(dev, 44100, 16000) == 44100
    with pytest.raises(PianonotesError, match="does not support 16000 Hz; rates that work: 44100, 48000"):
        choose_samplerate(dev, 16000, 16000)


# --------------------------------------------------------------------------------------- library
def test_fast_file_session_equals_offline_and_journal_recovers(ckpt, clip, offline, tmp_path, monkeypatch):
    from pianonotes.live.journal import Journal, read_journal_audio
    from pianonotes.live.recovery import journal_notes, recover
    from pianonotes.live.session import LiveSession
    from pianonotes.live.sources import FileSource
    from pianonotes.engine import Engine
    from pianonotes.nn import checkpoint

    monkeypatch.setenv("PIANONOTES_CACHE", str(tmp_path / "cache"))
    model, cfg = checkpoint.load(ckpt)
    eng = Engine(model, cfg)
    journal = Journal(None, eng.sample_rate, {"model": str(ckpt)})
    session = LiveSession(eng, FileSource(clip, eng.sample_rate, fast=True), journal=journal)
    session.start()
    assert session.wait(60)
    result = session.finish()
    assert result.error is None and result.dropped == 0
    assert result.notes == offline
    assert abs(result.seconds - CLIP_SECONDS) < 1e-6
    assert journal.folder.parent == tmp_path / "cache" / "takes"
    # the journal: audio bit-exact, note events complete
    from pianonotes.audio import load_audio

    np.testing.assert_array_equal(read_journal_audio(journal.audio_path), load_audio(clip, SR))
    assert journal_notes(journal.folder) == [n for n in offline]  # rounded to 1e-6 s; same values
    rec = recover(journal.folder)
    assert rec.method == "audio" and rec.notes == offline


def test_source_failure_keeps_the_take_so_far(ckpt, clip, offline):
    """A device that stops mid-take (unplugged): the session ends with an error and keeps its notes."""
    from pianonotes.live.session import LiveSession
    from pianonotes.live.sources import FileSource
    from pianonotes.engine import Engine
    from pianonotes.nn import checkpoint

    class Unplugged(FileSource):
        def _run(self):
            from pianonotes.audio import load_audio

            audio = load_audio(self.path, self.samplerate)[: 3 * SR]
            for i in range(0, len(audio), self.block):
                self.queue.put((time.monotonic(), audio[i: i + self.block]))
            self.error = "input device 'test' stopped (unplugged or taken by another program)"
            self.queue.put(None)

    model, cfg = checkpoint.load(ckpt)
    eng = Engine(model, cfg)
    session = LiveSession(eng, Unplugged(clip, eng.sample_rate, fast=True))
    session.start()
    assert session.wait(60)
    result = session.finish(timeout=60)
    assert result.error and "unplugged" in result.error
    assert result.seconds == 3.0
    early = [n for n in offline if n.offset < 2.7]
    assert early and _keyset(early) <= _keyset(result.notes)


# ------------------------------------------------------------------------------------- CLI: errors
@needs_portaudio
def test_devices_lists_the_virtual_mic_without_torch(work, clip, env):
    proc = _cli(["devices"], _mic_env(env, work), run=RUN_MAIN)
    assert proc.returncode == 0, proc.stderr
    assert "default" in proc.stdout and "ALSA" in proc.stdout
    assert "torch-imported=False" in proc.stderr


@needs_portaudio
def test_no_input_device_is_one_clear_line(ckpt, env):
    import sounddevice as sd

    if any(d["max_input_channels"] > 0 for d in sd.query_devices()):
        pytest.skip("this machine has a real input device")
    proc = _cli(["listen", "--model", ckpt, "--plain"], env)
    _one_red_line(proc, "no audio input device found")
    proc = _cli(["devices"], env)
    _one_red_line(proc, "no audio input device found")


@needs_portaudio
def test_unknown_device_name_and_bad_outputs(ckpt, work, clip, env, tmp_path):
    proc = _cli(["listen", "--model", ckpt, "--input-device", "nosuchmic", "--plain"], _mic_env(env, work))
    _one_red_line(proc, "no input device matching 'nosuchmic'")
    proc = _cli(["listen", "--model", ckpt, "--input-device", "7", "--plain"], _mic_env(env, work))
    _one_red_line(proc, "no input device with index 7")
    proc = _cli(["listen", "--model", ckpt, "--device", "7", "--plain"], _mic_env(env, work))
    _one_red_line(proc, "--input-device 7")  # --device is the compute device, as in transcribe
    proc = _cli(["listen", "--model", ckpt, "-o", tmp_path / "x.doc", "--plain"], _mic_env(env, work))
    _one_red_line(proc, "cannot write 'x.doc'")


def test_missing_portaudio_is_a_hint(env, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    proc = _cli(["devices"], dict(env, PYTHONPATH=f"{fake}{os.pathsep}{env.get('PYTHONPATH', '')}"))
    _one_red_line(proc, "apt-get install libportaudio2")


# ------------------------------------------------------------------------- CLI: the real microphone path
@needs_portaudio
def test_virtual_microphone_take_equals_offline(ckpt, work, clip, offline, env, tmp_path):
    """PortAudio capture from the ALSA file plugin (bit-exact, no clock): stop after exactly 5 s."""
    out, rec = tmp_path / "mic.mid", tmp_path / "mic.wav"
    # --samplerate: the raw file is the model's rate (--record alone would capture at the device's own)
    proc = _cli(["listen", "--model", ckpt, "--duration", CLIP_SECONDS, "--plain", "-o", out, "-o",
                 tmp_path / "mic.json", "--record", rec, "--samplerate", SR], _mic_env(env, work))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stderr and "torch-imported=True" in proc.stderr
    from pianonotes.audio import load_audio
    from pianonotes.export import read_events

    np.testing.assert_array_equal(load_audio(rec, SR), load_audio(clip, SR))
    assert _keyset(read_events(tmp_path / "mic.json"), 3) == _keyset(offline, 3)
    assert _keyset(_midi_notes(out)) == _keyset(offline)
    lines = [ln.split() for ln in proc.stdout.splitlines()]
    assert lines and all(len(ln) == 6 and ln[2] == "velocity" for ln in lines)
    assert len({(ln[0], ln[1]) for ln in lines}) == len(lines)  # each started note printed once
    # a note shown when it starts may still be dropped as shorter than the minimum once it ends, and
    # whether it was seen while sounding depends on how blocks arrived: a few extra lines are legal
    assert len(lines) <= len(offline) + 3


@needs_portaudio
def test_record_captures_at_the_devices_own_rate(ckpt, work, clip, env, tmp_path):
    """--record without --samplerate: the capture (and so the recording) is at the device's default rate,
    the network gets it resampled."""
    import soundfile as sf

    menv = _mic_env(env, work)
    q = subprocess.run([sys.executable, "-c", "import sounddevice as sd; "
                        "print(int(sd.query_devices(kind='input')['default_samplerate']))"],
                       env=menv, capture_output=True, text=True, timeout=60)
    assert q.returncode == 0, q.stderr
    native = int(q.stdout.split()[-1])
    if native == SR:
        pytest.skip("the virtual microphone's default rate is the model's")
    rec = tmp_path / "native.wav"
    proc = _cli(["listen", "--model", ckpt, "--duration", 2.0, "--plain", "-o", tmp_path / "n.csv",
                 "--record", rec], menv)
    assert proc.returncode == 0, proc.stderr
    raw = np.fromfile(work / "clip.f32", "<f4")
    got, rate = sf.read(rec, dtype="float32")
    assert rate == native and len(got) == 2 * native
    np.testing.assert_array_equal(got, raw[: len(got)])  # the device's samples, as they came


def test_input_fast_equals_offline(ckpt, clip, offline, env, tmp_path):
    out = tmp_path / "fast.mid"
    args = ["listen", "--model", ckpt, "--input", clip, "--fast", "-o", out, "-o", tmp_path / "fast.csv"]
    proc = _cli(args, env)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stderr and "take: " in proc.stderr
    from pianonotes.export import read_events

    assert _keyset(read_events(tmp_path / "fast.csv"), 3) == _keyset(offline, 3)
    assert _keyset(_midi_notes(out)) == _keyset(offline)


@pytest.fixture(scope="module", params=[44100, 48000])
def native_clip(request, work, clip) -> Path:
    """The clip at a device's rate (44.1 or 48 kHz), as float32 WAV."""
    import soundfile as sf
    from scipy.signal import resample_poly

    rate = request.param
    audio, _ = sf.read(clip, dtype="float32")
    path = work / f"clip{rate}.wav"
    sf.write(path, resample_poly(audio, rate // 100, SR // 100).astype(np.float32), rate, subtype="FLOAT")
    return path


def _offline_of(ckpt, path):
    from pianonotes.audio import load_audio
    from pianonotes.engine import Engine
    from pianonotes.nn import checkpoint

    model, cfg = checkpoint.load(ckpt)
    eng = Engine(model, cfg)
    return sorted(eng.push(load_audio(path, SR)).notes + eng.finish().notes)


def test_record_keeps_the_input_rate_and_recovers(ckpt, native_clip, env, tmp_path):
    """`listen --input FILE --record`: the input plays at its own rate like a device's; the recording has
    that rate and the input's very samples, the network got it resampled (the notes of offline
    transcription), and `recover` re-transcribes the journal (at the native rate) resampled."""
    import soundfile as sf

    from pianonotes.live.journal import read_journal_audio
    from pianonotes.export import read_events

    data, rate = sf.read(native_clip, dtype="float32")
    rec, out = tmp_path / "rec.wav", tmp_path / "take.csv"
    proc = _cli(["listen", "--model", ckpt, "--input", native_clip, "--fast", "--plain", "-o", out,
                 "--record", rec], env)
    assert proc.returncode == 0, proc.stderr
    got, got_rate = sf.read(rec, dtype="float32")
    assert got_rate == rate and sf.info(str(rec)).samplerate == rate
    np.testing.assert_array_equal(got, data)
    offline = _keyset(_offline_of(ckpt, native_clip))
    notes = _keyset(read_events(out))
    assert len(notes & offline) >= 0.9 * max(len(offline), len(notes)) and len(offline) > 5
    folder = _take_folder(env)
    meta = json.loads((folder / "take.json").read_text())
    assert meta["sample_rate"] == rate
    np.testing.assert_array_equal(read_journal_audio(folder), data)
    rec.unlink()
    proc = _cli(["recover", folder, "-o", tmp_path / "again.csv"], env)
    assert proc.returncode == 0, proc.stderr
    assert "re-transcribed its audio" in proc.stdout
    assert _keyset(read_events(tmp_path / "again.csv")) == offline  # the whole journal, resampled
    back, back_rate = sf.read(rec, dtype="float32")
    assert back_rate == rate
    np.testing.assert_array_equal(back, data)
    # without --record the take is journaled at the model's rate, as before
    proc = _cli(["listen", "--model", ckpt, "--input", native_clip, "--fast", "--plain", "-o",
                 tmp_path / "plain.csv"], env)
    assert proc.returncode == 0, proc.stderr
    takes = sorted((Path(env["PIANONOTES_CACHE"]) / "takes").iterdir())
    assert json.loads((takes[-1] / "take.json").read_text())["sample_rate"] == SR


def test_native_journal_stops_with_the_session(ckpt, native_clip, tmp_path, monkeypatch):
    """A journal at the source's rate: the session's --duration cuts it at that many seconds of the
    source's samples, and the engine still gets the model's rate."""
    import soundfile as sf

    from pianonotes.live.journal import Journal, read_journal_audio
    from pianonotes.live.outputs import copy_recording
    from pianonotes.live.session import LiveSession
    from pianonotes.live.sources import FileSource
    from pianonotes.engine import Engine
    from pianonotes.nn import checkpoint

    monkeypatch.setenv("PIANONOTES_CACHE", str(tmp_path / "cache"))
    data, rate = sf.read(native_clip, dtype="float32")
    model, cfg = checkpoint.load(ckpt)
    eng = Engine(model, cfg)
    journal = Journal(None, rate, {"model": str(ckpt), "record": str(tmp_path / "r.wav")})
    session = LiveSession(eng, FileSource(native_clip, rate, fast=True), journal=journal, max_seconds=3.0)
    session.start()
    assert session.wait(60)
    result = session.finish()
    journal.close()
    assert result.error is None and result.seconds == 3.0 and eng.sample_rate == SR
    np.testing.assert_array_equal(read_journal_audio(journal.audio_path), data[: 3 * rate])
    assert copy_recording(journal, tmp_path / "r.wav", journal.sample_rate) == tmp_path / "r.wav"
    assert sf.info(str(tmp_path / "r.wav")).samplerate == rate and sf.info(str(tmp_path / "r.wav")).frames == 3 * rate


# ------------------------------------------------------------------------------------- the journal files
_KILLED_TAKE = """
import os, sys
import numpy as np
from pianonotes.live.journal import Journal
j = Journal(sys.argv[1], 22050, {"model": "m"})
for k in range(7):
    j.write_audio(np.arange(k * 1000, (k + 1) * 1000, dtype=np.float32) / 7000)
    if k == 3:
        j.maybe_flush(force=True)
os._exit(0)  # killed mid-take: no close, nothing flushed after block 3
"""


def test_journal_audio_is_raw_float32_that_a_kill_cannot_break(tmp_path):
    """audio.f32 has no header to repair: a killed take holds every block written (each reaches the OS whole,
    unbuffered), a sample cut short by the crash is dropped, and take.json says rate and format."""
    from pianonotes.live.journal import read_journal_audio, take_audio_path
    from pianonotes.live.recovery import recover, take_meta

    folder = tmp_path / "take"
    proc = subprocess.run([sys.executable, "-c", _KILLED_TAKE, str(folder)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    want = np.arange(7000, dtype=np.float32) / 7000
    assert sorted(p.name for p in folder.iterdir()) == ["audio.f32", "events.jsonl", "take.json"]
    assert take_audio_path(folder) == folder / "audio.f32" and (folder / "audio.f32").stat().st_size == 4 * 7000
    np.testing.assert_array_equal(np.fromfile(folder / "audio.f32", "<f4"), want)
    meta = take_meta(folder)
    assert (meta["sample_rate"], meta["audio"], meta["audio_format"], meta["channels"]) == (22050, "audio.f32",
                                                                                              "f32le", 1)
    assert meta["status"] == "recording" and meta["format"] == "pianonotes-take-v2"
    with open(folder / "audio.f32", "ab") as f:
        f.write(b"\x00\x01")  # half a sample: the kill came mid-write
    for path in (folder, folder / "audio.f32"):
        np.testing.assert_array_equal(read_journal_audio(path), want)
    rec = recover(folder, method="journal")
    assert rec.seconds == 7000 / 22050 and rec.notes == []


def test_journal_writes_each_block_at_once_and_syncs_on_flush(tmp_path, monkeypatch):
    """A block is in the file as soon as it is written (a SIGKILL loses none); the flush every
    JOURNAL_FLUSH_SECONDS syncs the audio to the disk (as libsndfile's sf_write_sync did)."""
    from pianonotes.live import journal

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(journal.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    j = journal.Journal(tmp_path / "take", 16000)
    j.write_audio(np.ones(100, np.float32))  # 400 bytes: a buffered file would still hold them
    assert j.audio_path.stat().st_size == 400 and j.journaled_samples() == 100
    j.maybe_flush()  # not yet due
    assert synced == []
    j.maybe_flush(force=True)
    assert synced == [j._audio.fileno()]
    monkeypatch.setattr(journal, "JOURNAL_FLUSH_SECONDS", 0.0)
    j.write_audio(np.zeros(10, np.float32))
    j.maybe_flush()
    assert len(synced) == 2
    j.close()
    assert json.loads((j.folder / "take.json").read_text())["seconds"] == round(110 / 16000, 3)
    assert list(j.audio_blocks()) and np.concatenate(list(j.audio_blocks())).tolist() == [1.0] * 100 + [0.0] * 10


def test_journal_full_disk_keeps_what_fitted_and_the_rest_in_memory(tmp_path, monkeypatch):
    """ENOSPC after a short write (os.write on a full disk): the journal stops, keeps the part of the block that
    reached the disk for `recover`, and the take's audio (kept in memory for --record) is whole and in order."""
    import errno

    from pianonotes.live import journal

    j = journal.Journal(tmp_path / "take", 16000, {"record": "r.wav"})
    real_write = j._audio.write
    room = {"bytes": 4 * 250 + 2}  # 250 samples and half of one fit

    class Full:
        def __getattr__(self, name):
            return getattr(real_file, name)

        def write(self, data):
            if not room["bytes"]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            n = min(len(data), room["bytes"])
            room["bytes"] -= n
            return real_write(data[:n])

    real_file = j._audio
    j._audio = Full()
    audio = np.arange(1000, dtype=np.float32)
    j.write_audio(audio[:200])
    assert j.error is None
    j.write_audio(audio[200:400])  # 50 samples (and half a sample) fit
    j.write_audio(audio[400:])
    assert j.failed and "No space left on device" in j.error and "0.0 s of audio" in j.error
    assert j.samples == 200 and j.journaled_samples() == 250
    j.close()
    np.testing.assert_array_equal(np.concatenate(list(j.audio_blocks())), audio)  # disk (whole blocks), memory
    np.testing.assert_array_equal(journal.read_journal_audio(j.folder), audio[:250])  # what `recover` gets
    assert "the first 0.0 s" in j.warning() and "kept in memory" in j.warning()
    assert "No space left" in json.loads((j.folder / "take.json").read_text())["journal_error"]


_KILLED_WAV = """
import os, sys
import numpy as np, soundfile as sf
f = sf.SoundFile(sys.argv[2], "w", samplerate=int(sys.argv[3]), channels=1, format="WAV", subtype="FLOAT")
f.write(np.fromfile(sys.argv[1], "<f4"))
f.flush()
os._exit(0)  # the old journal (libsndfile) killed mid-take: the header is the one written at the start
"""


def _as_old_take(folder: Path) -> Path:
    """The take as pianonotes-take-v1 left it after a SIGKILL: audio.wav (float32 WAV) whose header libsndfile
    wrote at the start (data length 0, never updated), take.json without the audio fields."""
    meta = json.loads((folder / "take.json").read_text())
    proc = subprocess.run([sys.executable, "-c", _KILLED_WAV, str(folder / "audio.f32"), str(folder / "audio.wav"),
                           str(meta["sample_rate"])], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (folder / "audio.f32").unlink()
    raw = (folder / "audio.wav").read_bytes()
    assert raw[4:8] == (8).to_bytes(4, "little") and raw[raw.index(b"data") + 4:][:4] == bytes(4)  # stale
    for key in ("audio", "audio_format", "channels"):
        del meta[key]
    meta.update(format="pianonotes-take-v1", status="recording")
    (folder / "take.json").write_text(json.dumps(meta))
    return folder


def test_an_old_take_with_audio_wav_still_recovers(ckpt, clip, offline, env, tmp_path):
    """`recover` of a take journaled as audio.wav (before audio.f32), its header stale from a kill:
    the whole audio is re-transcribed and --record copies it."""
    import soundfile as sf

    from pianonotes.live.journal import read_journal_audio, take_audio_path
    from pianonotes.live.outputs import copy_recording
    from pianonotes.audio import load_audio

    proc = _cli(["listen", "--model", ckpt, "--input", clip, "--fast", "--plain", "-o", tmp_path / "t.csv"], env)
    assert proc.returncode == 0, proc.stderr
    folder = _as_old_take(_take_folder(env))
    assert take_audio_path(folder) == folder / "audio.wav"
    want = load_audio(clip, SR)
    np.testing.assert_array_equal(read_journal_audio(folder), want)
    copy_recording(folder, tmp_path / "copy.flac", SR)
    np.testing.assert_allclose(sf.read(tmp_path / "copy.flac", dtype="float32")[0], want, atol=1e-4)
    meta = json.loads((folder / "take.json").read_text())
    meta["record"] = str(tmp_path / "rec.wav")
    (folder / "take.json").write_text(json.dumps(meta))
    proc = _cli(["recover", folder, "-o", tmp_path / "rec.mid"], env)
    assert proc.returncode == 0, proc.stderr
    assert "re-transcribed its audio" in proc.stdout and f"({CLIP_SECONDS:.1f} s" in proc.stdout
    assert _keyset(_midi_notes(tmp_path / "rec.mid")) == _keyset(offline)
    np.testing.assert_array_equal(sf.read(tmp_path / "rec.wav", dtype="float32")[0], want)


def test_a_take_json_naming_another_audio_format_is_refused(tmp_path):
    from pianonotes.errors import PianonotesError
    from pianonotes.live.recovery import recover

    (tmp_path / "take.json").write_text(json.dumps({"sample_rate": 16000, "audio_format": "s16le"}))
    with pytest.raises(PianonotesError, match="audio_format 's16le'.*'f32le'"):
        recover(tmp_path)


def _start_realtime(ckpt, clip, env, out):
    proc = subprocess.Popen([sys.executable, "-c", RUN, "listen", "--model", str(ckpt), "--input", str(clip),
                             "--plain", "-o", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # the first note event: the take is running
    assert first, proc.stderr.read()
    return proc, time.monotonic()


def _take_folder(env) -> Path:
    takes = sorted((Path(env["PIANONOTES_CACHE"]) / "takes").iterdir())
    assert len(takes) == 1
    return takes[0]


@pytest.mark.slow
def test_sigint_during_a_take_saves_the_notes_played(ckpt, clip, offline, env, tmp_path):
    out = tmp_path / "int.mid"
    proc, t0 = _start_realtime(ckpt, clip, env, out)
    time.sleep(max(0.0, t0 + 2.0 - time.monotonic()))
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert f"wrote {out}" in stderr and "Traceback" not in stderr
    meta = json.loads((_take_folder(env) / "take.json").read_text())
    played = meta["seconds"]
    assert 1.0 < played <= CLIP_SECONDS and meta["status"] == "complete"  # a loaded machine may stop late
    got = _keyset(_midi_notes(out))
    ended = _keyset(n for n in offline if n.offset < played - 0.2)
    # every note of the take is an offline note, and (nearly) all notes that ended before the stop are in
    # it (on a heavily loaded machine one note at the very end has been seen missing: under investigation)
    assert {k for k in got if k[1] < played - 0.2} <= _keyset(offline)  # the end is cut: zero look-ahead
    assert len(ended & got) >= 0.9 * len(ended) and len(ended) > 3


@pytest.mark.slow
def test_sigkill_during_a_take_then_recover(ckpt, clip, offline, env, tmp_path):
    out = tmp_path / "killed.mid"
    proc, t0 = _start_realtime(ckpt, clip, env, out)
    time.sleep(max(0.0, t0 + 2.5 - time.monotonic()))
    played_at_least = time.monotonic() - t0 + 0.1  # audio that had arrived at the kill
    proc.kill()
    proc.communicate(timeout=10)
    assert not out.exists()
    folder = _take_folder(env)
    from pianonotes.live.journal import read_journal_audio
    from pianonotes.live.recovery import journal_notes

    audio = read_journal_audio(folder)
    assert len(audio) / SR >= played_at_least - 1.0  # at most about one second lost
    journaled = journal_notes(folder)
    assert journaled and _keyset(journaled) <= _keyset(offline)
    proc = _cli(["recover", folder], env)
    assert proc.returncode == 0, proc.stderr
    assert "recovered" in proc.stdout and str(out) in proc.stdout
    got = _midi_notes(out)
    seconds = len(audio) / SR
    assert _keyset(n for n in offline if n.offset < seconds - 0.2) <= _keyset(got)
    assert json.loads((folder / "take.json").read_text())["status"] == "recovered"


# ------------------------------------------------------------------------------------- the screen
@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux missing")
def test_screen_in_tmux_renders_and_q_saves(ckpt, clip, env, tmp_path):
    out = tmp_path / "screen.mid"
    rc_file = tmp_path / "rc"
    script = tmp_path / "run.sh"
    script.write_text(f"{sys.executable} -c \"$PN_RUN\" listen --model {ckpt} --input {clip} -o {out}; "
                      f"echo $? > {rc_file}; sleep 30\n")
    name = f"pn-live-{os.getpid()}"
    tenv = dict(env, PN_RUN=RUN, TERM="xterm-256color")
    tenv.pop("COLUMNS", None)
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", "bash", str(script)],
                   env=tenv, check=True)
    try:
        screen = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True,
                                    text=True).stdout
            if "elapsed 00:01" in screen:
                break
            time.sleep(0.2)
        assert "elapsed 00:01" in screen, screen
        for needle in ("pianonotes listen", "level", "notes", "latency", "dropped 0", "q stop and save",
                       "C1", "C4", "C8", "sounding"):
            assert needle in screen, (needle, screen)
        assert all(len(line) <= 80 for line in screen.splitlines())
        subprocess.run(["tmux", "send-keys", "-t", name, "q"], check=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not rc_file.exists():
            time.sleep(0.2)
        assert rc_file.exists() and rc_file.read_text().strip() == "0"
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True,
                                text=True).stdout
        assert f"wrote {out}" in screen.replace("\n", "") and out.exists()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux missing")
def test_screen_shows_the_chord_being_played_with_the_shipped_model(env, work, tmp_path):
    """Golden: while a held C major chord plays, the view's 'sounding' line names C4, E4 and G4."""
    import soundfile as sf

    from pianonotes.nn import checkpoint

    if not checkpoint.default_checkpoint().exists() or not Path(SOUNDFONT).exists():
        pytest.skip("shipped checkpoint or soundfont missing")
    from pianonotes.datasets.synth.render import render

    audio = render([(0.3, 5.5, 60, 90), (0.3, 5.5, 64, 90), (0.3, 5.5, 67, 90)], [], 6.5, SOUNDFONT, 0, SR)
    chord = tmp_path / "chord.wav"
    sf.write(chord, audio, SR)
    out = tmp_path / "chord.mid"
    script = tmp_path / "run.sh"
    script.write_text(f"{sys.executable} -m pianonotes listen --input {chord} -o {out}; sleep 30\n")
    name = f"pn-chord-{os.getpid()}"
    tenv = dict(env, TERM="xterm-256color")
    tenv.pop("COLUMNS", None)
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", "bash", str(script)],
                   env=tenv, check=True)
    try:
        sounding = ""
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True,
                                    text=True).stdout
            lines = [ln for ln in screen.splitlines() if ln.strip().startswith("sounding")]
            if "elapsed 00:0" in screen and lines and all(n in lines[0] for n in ("C4", "E4", "G4")):
                sounding = lines[0]
                break
            time.sleep(0.1)
        assert sounding, screen
        subprocess.run(["tmux", "send-keys", "-t", name, "q"], check=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not out.exists():
            time.sleep(0.2)
        from pianonotes.notes import read_midi

        assert {60, 64, 67} <= {n.pitch for n in read_midi(out)}
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


@pytest.fixture
def pulse_mic(tmp_path):
    """A PulseAudio daemon with a null sink whose monitor is the default source: a real-time microphone."""
    if not (shutil.which("pulseaudio") and shutil.which("paplay") and shutil.which("pactl")):
        pytest.skip("pulseaudio / pulseaudio-utils not installed")
    run_dir = tmp_path / "pulse"
    run_dir.mkdir(mode=0o700)
    penv = dict(os.environ, XDG_RUNTIME_DIR=str(run_dir), HOME=str(run_dir))
    penv.pop("ALSA_CONFIG_PATH", None)
    subprocess.run(["pulseaudio", "--daemonize=yes", "-n", "--exit-idle-time=-1", "-L", "module-native-protocol-unix",
                    "-L", "module-null-sink sink_name=virt rate=44100 channels=1"], env=penv, capture_output=True,
                   timeout=30)
    deadline = time.monotonic() + 10
    while subprocess.run(["pactl", "info"], env=penv, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            pytest.skip("pulseaudio did not start")
        time.sleep(0.05)
    subprocess.run(["pactl", "set-default-source", "virt.monitor"], env=penv, check=True)
    yield penv
    subprocess.run(["pulseaudio", "--kill"], env=penv, capture_output=True)


@pytest.mark.slow
def test_real_time_microphone_ctrl_c_saves_the_take(pulse_mic, tmp_path):
    """PortAudio capturing in real time from PulseAudio: play a chord and a note into the virtual
    microphone while `listen` runs, Ctrl-C, and the take holds exactly what was played."""
    import soundfile as sf

    from pianonotes.nn import checkpoint
    from pianonotes.notes import read_midi

    if not checkpoint.default_checkpoint().exists() or not Path(SOUNDFONT).exists():
        pytest.skip("shipped checkpoint or soundfont missing")
    from pianonotes.datasets.synth.render import render

    clip = tmp_path / "played.wav"
    sf.write(clip, render([(0.8, 2.5, 60, 90), (0.8, 2.5, 64, 90), (0.8, 2.5, 67, 90), (3.0, 3.8, 72, 90)], [],
                          4.5, SOUNDFONT, 0, 44100), 44100)
    out = tmp_path / "take.mid"
    env = dict(pulse_mic, PIANONOTES_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "pianonotes", "listen", "--input-device", "pulse", "--plain", "-o", out],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert "listening" in first, first + proc.stdout.read()
        subprocess.run(["paplay", "--device=virt", str(clip)], env=pulse_mic, check=True, timeout=30)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert f"wrote {out}" in rest
    notes = read_midi(out)
    assert sorted(n.pitch for n in notes) == [60, 64, 67, 72], rest
    chord = [n.onset for n in notes if n.pitch != 72]
    c5 = [n.onset for n in notes if n.pitch == 72][0]
    assert max(chord) - min(chord) < 0.03 and abs((c5 - chord[0]) - 2.2) < 0.05
