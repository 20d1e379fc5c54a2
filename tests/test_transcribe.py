"""`pianonotes transcribe`: the engine's chunk independence, outputs, batches and bad input."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pianonotes.nn import checkpoint as ckpt
from pianonotes.transcribe import Transcriber, expand_inputs

from conftest import ROOT, assert_one_line_error, random_checkpoint, run_cli, sine

EXAMPLE = ROOT / "pianonotes" / "examples" / "twohands.flac"


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """A small random AudioNet whose thresholds make it emit plenty of notes on any audio."""
    path = tmp_path_factory.mktemp("model") / "rand"
    random_checkpoint(path, {"channels": [8, 8], "hidden": 64, "dilations": [1, 2]})
    return path


def test_notes_do_not_depend_on_chunk_size(random_model):
    audio = np.concatenate([sine(262, 1.0), sine(330, 1.5) + sine(523, 1.5), np.zeros(8000, np.float32)])
    results = []
    for chunk_frames, block in ((1, 320), (7, 1234), (1000, len(audio)), (64, 16000)):
        tr = Transcriber(random_model, device="cpu", chunk_frames=chunk_frames)
        blocks = [audio[i: i + block] for i in range(0, len(audio), block)]
        res = tr.transcribe_blocks(blocks, keep_activations=True)
        results.append(res)
    assert len(results[0].notes) > 3
    for r in results[1:]:
        assert np.max(np.abs(r.activations.onset.astype(np.float32) - results[0].activations.onset.astype(np.float32))) < 2e-3
        assert [(n.pitch, n.onset, n.offset) for n in r.notes] == [(n.pitch, n.onset, n.offset) for n in results[0].notes]


def test_excerpt_keeps_absolute_times(random_model, tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.concatenate([np.zeros(16000 * 2, np.float32), sine(440, 1.0), np.zeros(16000, np.float32)]), 16000)
    tr = Transcriber(random_model, device="cpu")
    full = tr.transcribe_file(path).notes
    part = tr.transcribe_file(path, start=1.5, end=3.5).notes
    assert part and all(1.5 <= n.onset < 3.5 for n in part)
    assert any(abs(a.onset - b.onset) < 0.05 and a.pitch == b.pitch for a in part for b in full)


def test_expand_inputs(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.wav", "b.flac", "sub/c.wav", "notes.txt"):
        sf.write(tmp_path / name, np.zeros(100, np.float32), 16000, format="WAV") if name.endswith(".wav") else (
            sf.write(tmp_path / name, np.zeros(100, np.float32), 16000, format="FLAC") if name.endswith(".flac")
            else (tmp_path / name).write_text("x"))
    assert [p.name for p in expand_inputs([str(tmp_path)])] == ["a.wav", "b.flac"]
    assert [p.name for p in expand_inputs([str(tmp_path)], recursive=True)] == ["a.wav", "b.flac", "c.wav"]
    assert [p.name for p in expand_inputs([str(tmp_path / "*.wav")])] == ["a.wav"]


def test_cli_outputs_batch_and_activations(random_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "one.wav", sine(262, 1.5), 16000)
    sf.write(src / "two.flac", np.stack([sine(330, 1.5), sine(330, 1.5)], 1), 44100)
    out = tmp_path / "out"
    p = run_cli("transcribe", src, "-o", out, "-f", "mid", "-f", "json", "-f", "musicxml", "--model", random_model)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["one.json", "one.mid", "one.musicxml", "two.json", "two.mid",
                                                      "two.musicxml"]
    # existing outputs are not overwritten: each file fails, the batch reports, exit 1
    before = (out / "one.mid").read_bytes()
    p = run_cli("transcribe", src, "-o", out, "-f", "mid", "--model", random_model)
    assert p.returncode == 1 and "exists" in p.stdout and (out / "one.mid").read_bytes() == before
    # activations: save, then re-decode without the network gives the same notes
    single = tmp_path / "one.csv"
    p = run_cli("transcribe", src / "one.wav", "-o", single, "--save-activations", tmp_path / "one.npz",
                "--model", random_model)
    assert p.returncode == 0, p.stderr
    again = tmp_path / "again.csv"
    p = run_cli("transcribe", "--from-activations", tmp_path / "one.npz", "-o", again)
    assert p.returncode == 0, p.stderr
    cols = lambda path: [ln.split(",")[:4] for ln in path.read_text().splitlines()]  # noqa: E731 (not confidence)
    assert len(cols(single)) > 2 and cols(single) == cols(again)
    p = run_cli("transcribe", src / "one.wav", "-o", tmp_path / "roll.mid", "--roll", "--model", random_model)
    # the roll is named after the output (issue 13: it used to take the input's name)
    assert p.returncode == 0 and (tmp_path / "roll.roll.png").read_bytes()[:4] == b"\x89PNG"


def test_silence_is_an_empty_score(random_model, tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(16000 * 2, np.float32), 16000)
    p = run_cli("transcribe", tmp_path / "quiet.wav", "-o", tmp_path / "quiet.musicxml", "-o", tmp_path / "quiet.mid")
    assert p.returncode == 0, p.stderr
    assert "0 notes" in p.stdout
    from music21 import converter

    score = converter.parse(tmp_path / "quiet.musicxml")
    assert len(score.flatten().notes) == 0


@pytest.mark.parametrize("sr,channels", [(8000, 1), (192000, 2), (44100, 6)])
def test_odd_rates_and_channels(random_model, tmp_path, sr, channels):
    x = np.tile(sine(440, 1.0, sr)[:, None], (1, channels))
    sf.write(tmp_path / "x.wav", x, sr)
    tr = Transcriber(random_model, device="cpu")
    res = tr.transcribe_file(tmp_path / "x.wav")
    assert abs(res.seconds - 1.0) < 0.01


def test_bad_input_gives_one_clear_line(random_model, tmp_path):
    m = ["--model", random_model]
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\n" * 50)
    sf.write(tmp_path / "good.wav", sine(440, 1.0), 16000)
    (tmp_path / "trunc.wav").write_bytes((tmp_path / "good.wav").read_bytes()[:40])
    nan = sine(440, 0.5)
    nan[10] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    (tmp_path / "noaudio").mkdir()
    (tmp_path / "noaudio" / "readme.txt").write_text("x")
    corrupt = tmp_path / "corrupt"
    ckpt_json = json.loads(Path(str(random_model) + ".json").read_text())
    Path(str(corrupt) + ".json").write_text(json.dumps(ckpt_json))
    Path(str(corrupt) + ".safetensors").write_bytes(b"garbage")
    ro = tmp_path / "nowhere" / "deeper"
    cases = [
        (["transcribe", tmp_path / "missing.wav", *m], ["no such file"]),
        (["transcribe", tmp_path / "noaudio", *m], ["no audio files"]),
        (["transcribe", tmp_path / "empty.wav", "-o", tmp_path / "e.mid", *m], ["empty"]),
        (["transcribe", tmp_path / "trunc.wav", "-o", tmp_path / "t.mid", *m], []),
        (["transcribe", tmp_path / "text.wav", "-o", tmp_path / "x.mid", *m], ["cannot decode", "supported formats"]),
        (["transcribe", tmp_path / "nan.wav", "-o", tmp_path / "n.mid", *m], ["NaN"]),
        (["transcribe", tmp_path / "good.wav", "-o", ro / "g.mid", *m], ["does not exist"]),
        (["transcribe", tmp_path / "good.wav", "-o", tmp_path / "g.docx", *m], ["extension"]),
        (["transcribe", tmp_path / "good.wav", "-o", tmp_path / "g.mid", "--model", corrupt], ["sha256"]),
        (["transcribe", tmp_path / "good.wav", "-o", tmp_path / "g.mid", "--onset-threshold", "2", *m], ["between 0 and 1"]),
    ]
    for args, needles in cases:
        p = run_cli(*args)
        assert_one_line_error(p, *needles)
    for name in ("e.mid", "t.mid", "x.mid", "n.mid", "g.mid"):
        assert not (tmp_path / name).exists()
    assert not [f for f in os.listdir(tmp_path) if ".part" in f]


# --------------------------------------------------------------------------- --note-length key|sounding
@pytest.fixture(scope="module")
def random_v2_model(tmp_path_factory):
    """A small random AudioNet v2 (key-down and pedal heads), saturated like ``random_model``."""
    path = tmp_path_factory.mktemp("model") / "rand2"
    random_checkpoint(path, {"channels": [8, 8], "hidden": 64, "dilations": [1, 2], "pedal": True},
                      saturate=("onset", "frame", "key", "pedal"))
    return path


def test_pedal_and_note_lengths_do_not_depend_on_chunk_size(random_v2_model):
    from pianonotes.notes import with_note_length

    audio = np.concatenate([sine(262, 1.0), sine(330, 1.5) + sine(523, 1.5), np.zeros(8000, np.float32),
                            sine(440, 1.0)])
    results = []
    for chunk_frames, block in ((1, 320), (7, 1234), (1000, len(audio))):
        tr = Transcriber(random_v2_model, device="cpu", chunk_frames=chunk_frames)
        results.append(tr.transcribe_blocks([audio[i: i + block] for i in range(0, len(audio), block)]))
    first = results[0]
    assert first.pedals and sum(n.key_offset < n.offset - 1e-9 for n in first.notes) > 3
    outs = {m: with_note_length(first.notes, first.pedals, m) for m in ("key", "sounding")}
    assert sum(s.offset > k.offset for s, k in zip(outs["sounding"], outs["key"])) > 0
    for r in results[1:]:
        assert r.pedals == first.pedals
        for mode in ("key", "sounding"):
            assert [(n.pitch, n.onset, n.offset) for n in with_note_length(r.notes, r.pedals, mode)] == \
                [(n.pitch, n.onset, n.offset) for n in outs[mode]]


shipped = pytest.mark.skipif(not ckpt.default_checkpoint().exists(), reason="no shipped checkpoint (make model)")


@shipped
def test_cli_note_length_on_the_shipped_example(tmp_path):
    """The shipped v2 model on the example: key-release MIDI with CC64, or sounding ends without it,
    longer where the pedal is down; the CSV/JSON say which; --from-activations follows the option."""
    import csv

    from pianonotes.decode import Activations
    from pianonotes.notes import read_midi_with_pedal, with_note_length

    p = run_cli("transcribe", EXAMPLE, "-o", tmp_path / "key.mid", "-o", tmp_path / "key.csv",
                "--save-activations", tmp_path / "a.npz", "-q")
    assert p.returncode == 0, p.stderr
    p = run_cli("transcribe", EXAMPLE, "--note-length", "sounding", "-o", tmp_path / "snd.mid", "-o",
                tmp_path / "snd.json", "-q")
    assert p.returncode == 0, p.stderr
    key_notes, pedals = read_midi_with_pedal(tmp_path / "key.mid")  # CC64 applied, releases kept
    snd_notes, snd_pedals = read_midi_with_pedal(tmp_path / "snd.mid")
    assert pedals and not snd_pedals  # CC64 only with --note-length key
    assert len(key_notes) == len(snd_notes) > 50
    assert all(abs(a.onset - b.onset) < 2e-3 and a.pitch == b.pitch for a, b in zip(key_notes, snd_notes))
    longer = [(k, s) for k, s in zip(key_notes, snd_notes) if s.offset > k.release + 0.015]
    assert longer  # different ends where the pedal is down ...
    for k, _ in longer:
        assert any(p.start - 2e-3 <= k.release < p.end + 2e-3 for p in pedals)
    # ... and exactly what a synthesizer makes of the key releases and the CC64
    assert all(abs(k.offset - s.offset) < 5e-3 for k, s in zip(key_notes, snd_notes))
    rows = list(csv.DictReader((tmp_path / "key.csv").read_text().splitlines()))
    assert len(rows) == len(key_notes) and {r["note_length"] for r in rows} == {"key"}
    assert sorted(float(r["offset"]) for r in rows) == pytest.approx(sorted(n.release for n in key_notes), abs=2e-3)
    assert json.loads((tmp_path / "snd.json").read_text())["note_length"] == "sounding"
    # re-decoding saved activations: the same conventions, from the same decoder
    p = run_cli("transcribe", "--from-activations", tmp_path / "a.npz", "--note-length", "sounding",
                "-o", tmp_path / "again.csv")
    assert p.returncode == 0, p.stderr
    acts = Activations.load(tmp_path / "a.npz")
    want = sorted(with_note_length(acts.decode(), acts.decode_pedal(), "sounding"))
    rows = list(csv.DictReader((tmp_path / "again.csv").read_text().splitlines()))
    assert {r["note_length"] for r in rows} == {"sounding"}
    assert [(int(r["pitch"]), float(r["offset"])) for r in rows] == \
        [(n.pitch, pytest.approx(n.offset, abs=1e-4)) for n in sorted(want, key=lambda n: (n.onset, n.pitch))]
    p = run_cli("transcribe", EXAMPLE, "--note-length", "pedal", "-o", tmp_path / "x.mid")
    assert_one_line_error(p, "key or sounding")


# ------------------------------------------------------------------- progress while outputs are written
def _runs(seen):
    """Consecutive (stage, [fractions]) runs of a progress callback's calls."""
    runs = []
    for stage, f in seen:
        if runs and runs[-1][0] == stage:
            runs[-1][1].append(f)
        else:
            runs.append((stage, [f]))
    return runs


def test_process_file_reports_each_export_stage(random_model, tmp_path):
    """Every stage of writing the outputs (plan, score, MusicXML, MIDI, engraving and its pages, the roll)
    is heard from 0.0 up to 1.0, in order, once per output that needs it."""
    from pianonotes.transcribe import BatchSettings, process_file

    sf.write(tmp_path / "in.wav", np.concatenate([sine(262, 1.0), sine(330, 1.0) + sine(523, 1.0)]), 16000)
    outs = [tmp_path / "a.mid", tmp_path / "a.musicxml", tmp_path / "a.svg", tmp_path / "a.pdf"]
    seen, audio = [], []
    res = process_file(Transcriber(random_model, device="cpu"), tmp_path / "in.wav", outs,
                       BatchSettings(roll=True), on_progress=audio.append,
                       on_export=lambda stage, f: seen.append((stage, f)))
    assert res.error is None and all(o.exists() for o in outs) and res.notes > 3
    assert audio and audio[-1] == pytest.approx(2.0, abs=0.05)
    runs = _runs(seen)
    for stage, fr in runs:
        assert fr[0] == 0.0 and fr[-1] == 1.0 and fr == sorted(fr), (stage, fr)
    stages = [s for s, _ in runs]
    assert stages[0] == "plan" and stages.count("plan") == 1
    assert stages.index("midi") < stages.index("musicxml") < stages.index("engrave")
    assert stages.count("engrave") == 2 and stages.count("pages") == 2  # the SVG and the PDF
    assert stages[-1] == "roll"
    assert all(stages[i + 1] == "pages" for i, s in enumerate(stages) if s == "engrave")


@pytest.mark.parametrize("rhythm", ["fine", "16ths"])
def test_process_file_writes_with_the_rhythm_asked(random_model, tmp_path, monkeypatch, rhythm):
    """BatchSettings.rhythm (transcribe --rhythm) reaches the writer as that rhythm's grid."""
    import pianonotes.export as export
    from pianonotes.notes import rhythm_grid
    from pianonotes.transcribe import BatchSettings, process_file

    grids, real = [], export.write_all

    def spy(*args, **kw):
        grids.append(kw.get("grid"))
        return real(*args, **kw)

    monkeypatch.setattr(export, "write_all", spy)
    sf.write(tmp_path / "in.wav", np.concatenate([sine(262, 1.0), sine(330, 1.0)]), 16000)
    res = process_file(Transcriber(random_model, device="cpu"), tmp_path / "in.wav", [tmp_path / "a.musicxml"],
                       BatchSettings(rhythm=rhythm))
    assert res.error is None and (tmp_path / "a.musicxml").exists()
    assert grids == [rhythm_grid(rhythm)]


def test_engrave_reports_each_page(tmp_path):
    """A score of several pages: "engrave" after the layout and each page, "pages" after each file."""
    from pianonotes.export import engrave, notes_to_score, score_to_musicxml
    from pianonotes.notes import Note

    notes = [Note(0.5 + i * 0.3, 0.75 + i * 0.3, 60 + (i * 5) % 24, 80) for i in range(600)]
    xml = score_to_musicxml(notes_to_score(notes, title="long", bpm=100, time_signature="4/4"))
    seen = []
    paths = engrave(xml, tmp_path / "long.svg", progress=lambda s, f: seen.append((s, f))).paths
    assert len(paths) >= 2
    runs = dict(_runs(seen))
    assert list(runs) == ["engrave", "pages"]
    assert len(runs["engrave"]) == len(paths) + 2 and len(runs["pages"]) == len(paths) + 1
    for fr in runs.values():
        assert fr[0] == 0.0 and fr[-1] == 1.0 and fr == sorted(fr)


def test_cli_shows_export_progress_and_still_writes(random_model, tmp_path):
    """With the progress display on (a terminal), transcribe shows the export stages and exits 0."""
    sf.write(tmp_path / "in.wav", np.concatenate([sine(262, 1.0), sine(330, 1.0) + sine(523, 1.0)]), 16000)
    outs = [tmp_path / "o.mid", tmp_path / "o.musicxml", tmp_path / "o.svg"]
    p = run_cli("transcribe", tmp_path / "in.wav", *[a for o in outs for a in ("-o", o)], "--model", random_model,
                env={"TTY_COMPATIBLE": "1"})
    assert p.returncode == 0, p.stderr
    assert all(o.exists() and o.stat().st_size > 100 for o in outs)
    assert "Traceback" not in p.stdout + p.stderr
    for label in ("beats, meter and key", "writing MIDI", "writing MusicXML", "engraving"):
        assert f"in.wav: {label}" in p.stdout, p.stdout[-3000:]
    assert "notes from" in p.stdout
    # quiet: no display at all
    q = run_cli("transcribe", tmp_path / "in.wav", "-o", tmp_path / "q.mid", "--model", random_model, "-q",
                env={"TTY_COMPATIBLE": "1"})
    assert q.returncode == 0 and "writing MIDI" not in q.stdout and (tmp_path / "q.mid").exists()


# ------------------------------------------------------------------------ batches with worker processes
@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    """A small random AudioNet exported to ONNX, so that worker processes start without torch."""
    from pianonotes.training.onnx import export_onnx

    path = random_checkpoint(tmp_path_factory.mktemp("onnx") / "rand",
                             {"channels": [8, 8], "hidden": 64, "dilations": [1, 2, 4, 8]}, seed=3)
    export_onnx(path)
    return path


@pytest.fixture(scope="module")
def six_clips(tmp_path_factory):
    src = tmp_path_factory.mktemp("clips")
    for i, f in enumerate((262, 294, 330, 392, 440, 523)):
        sf.write(src / f"clip{i}.wav", np.concatenate([sine(f, 0.6), sine(f * 1.5, 0.4)]), 16000)
    return src


def _plan(src: Path, out: Path) -> dict:
    out.mkdir()
    return {p: [out / f"{p.stem}.mid", out / f"{p.stem}.csv"] for p in sorted(src.glob("*.wav"))}


@pytest.fixture(scope="module")
def one_job_outputs(onnx_model, six_clips, tmp_path_factory):
    """{output name: bytes} of the six clips transcribed in this process, one after the other."""
    from pianonotes.transcribe import BatchSettings, run_batch

    out = tmp_path_factory.mktemp("one-job") / "out"
    results = list(run_batch(_plan(six_clips, out), BatchSettings(model=str(onnx_model), device="cpu"), jobs=1))
    assert [r.error for r in results] == [None] * 6 and all(r.notes > 3 for r in results)
    return {q.name: q.read_bytes() for q in out.iterdir()}


def _finishes(fn, timeout: float):
    """fn() on a thread; its result, or a failure (not a hang) when it is still running after ``timeout``."""
    import threading

    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"run_batch still running after {timeout} s (hung)"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _child_of_this_process(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()


# Imported by the batch's worker processes (spawned: they find it on the sys.path they inherit): the
# real initializer, then a hold where the test kills the worker: while it starts, or once it is on its
# second file. The worker writes "pid path" to the marker file when it gets there.
_WORKER_HOOKS = """
import os, time
from pathlib import Path


def _arrived(marker, text):
    Path(marker + ".tmp").write_text(text)
    os.replace(marker + ".tmp", marker)
    time.sleep(300)  # until the test kills this process


def init(real_init, real_args, hold, marker):
    if hold == "start":
        _arrived(marker, f"{os.getpid()} -")
    real_init(*real_args)
    if hold == "second-file":
        import pianonotes.transcribe as tmod

        real, calls = tmod.process_file, []

        def process_file(transcriber, path, *args, **kwargs):
            calls.append(path)
            if len(calls) == 2:
                _arrived(marker, f"{os.getpid()} {path}")
            return real(transcriber, path, *args, **kwargs)

        tmod.process_file = process_file
"""


@pytest.fixture
def worker_hooks(tmp_path, monkeypatch):
    """The hooks module, importable here and in the workers (removed from sys.modules afterwards)."""
    import importlib
    import sys

    name = "_pianonotes_test_worker_hooks"
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / f"{name}.py").write_text(_WORKER_HOOKS)
    monkeypatch.syspath_prepend(str(tmp_path / "hooks"))
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


def _recording_pool(hooks, hold: str | None, marker: Path):
    """A ProcessPoolExecutor that records what it is given (``record``: pools made, the files, whether
    each went to a worker whose start had been confirmed) and, with ``hold``, starts its workers through
    ``hooks.init``."""
    from concurrent.futures import ProcessPoolExecutor

    import pianonotes.transcribe as tmod

    record = {"pools": 0, "files": [], "started": [], "ready": []}

    class RecordingPool(ProcessPoolExecutor):
        def __init__(self, *args, initializer=None, initargs=(), **kwargs):
            record["pools"] += 1
            if hold is not None:
                initializer, initargs = hooks.init, (initializer, initargs, hold, str(marker))
            super().__init__(*args, initializer=initializer, initargs=initargs, **kwargs)

        def submit(self, fn, *args, **kwargs):
            if fn is tmod._worker_file:
                record["files"].append(args[0])
                record["started"].append(bool(record["ready"]) and all(f.done() for f in record["ready"]))
            fut = super().submit(fn, *args, **kwargs)
            if fn is tmod._worker_ready:
                record["ready"].append(fut)
            return fut

    return RecordingPool, record


def _kill_when_held(monkeypatch, marker: Path, timeout: float = 30.0) -> dict:
    """This process's first file waits (in this process only: the workers have their own copy of the
    module) until a worker reaches its hold, then SIGKILLs that worker and goes on. Returns
    {"pid": ..., "file": ...} of the kill."""
    import signal
    import time

    import pianonotes.transcribe as tmod

    real, killed = tmod.process_file, {}

    def first_kills(*args, **kwargs):
        if not killed:
            killed["file"] = None
            deadline = time.monotonic() + timeout
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            if marker.exists():
                pid, path = marker.read_text().split(" ", 1)
                assert _child_of_this_process(int(pid))  # a worker of this batch, nothing else
                os.kill(int(pid), signal.SIGKILL)
                killed.update(pid=int(pid), file=None if path == "-" else Path(path))
        return real(*args, **kwargs)

    monkeypatch.setattr(tmod, "process_file", first_kills)
    return killed


def test_worker_killed_mid_batch_one_error_the_rest_done_here(onnx_model, six_clips, one_job_outputs, worker_hooks,
                                                              tmp_path, monkeypatch):
    """jobs=2: the worker does a file and is SIGKILLed during its second; that file gets the worker-died
    error, this process does all the others, every file has one result, and the outputs are jobs=1's."""
    import concurrent.futures

    from pianonotes.transcribe import BatchSettings, run_batch

    marker = tmp_path / "held"
    pool, record = _recording_pool(worker_hooks, "second-file", marker)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", pool)
    killed = _kill_when_held(monkeypatch, marker)
    plan = _plan(six_clips, tmp_path / "out")
    settings = BatchSettings(model=str(onnx_model), device="cpu")
    results = _finishes(lambda: list(run_batch(plan, settings, jobs=2)), timeout=90)
    assert record["pools"] == 1 and len(record["files"]) == 2 and killed["file"] == record["files"][1]
    assert record["started"] == [True, True]  # files go to the worker only once it has started
    assert sorted(r.path for r in results) == sorted(plan)  # each file exactly once
    errors = [r for r in results if r.error]
    assert [r.path for r in errors] == [killed["file"]]  # the file on the killed worker, only
    assert "worker process died" in errors[0].error and not errors[0].written
    assert next(r for r in results if r.path == record["files"][0]).error is None  # done by the worker
    for r in results:
        if r.error is None:
            assert r.written == plan[r.path] and r.notes > 3
            assert {w.name: w.read_bytes() for w in r.written} == {w.name: one_job_outputs[w.name] for w in r.written}


def test_worker_killed_while_starting_this_process_does_every_file(onnx_model, six_clips, one_job_outputs,
                                                                   worker_hooks, tmp_path, monkeypatch):
    """jobs=2, the worker SIGKILLed while it starts: no file is lost or failed, this process does all six."""
    import concurrent.futures

    from pianonotes.transcribe import BatchSettings, run_batch

    marker = tmp_path / "held"
    pool, record = _recording_pool(worker_hooks, "start", marker)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", pool)
    killed = _kill_when_held(monkeypatch, marker)
    plan = _plan(six_clips, tmp_path / "out")
    results = _finishes(lambda: list(run_batch(plan, BatchSettings(model=str(onnx_model), device="cpu"), jobs=2)),
                        timeout=90)
    assert record["pools"] == 1 and "pid" in killed and record["files"] == []
    assert sorted(r.path for r in results) == sorted(plan)
    assert [r.error for r in results] == [None] * 6
    assert {q.name: q.read_bytes() for q in (tmp_path / "out").iterdir()} == one_job_outputs


def test_a_model_that_does_not_load_gives_each_file_an_error(six_clips, tmp_path, monkeypatch):
    """jobs=3 with a checkpoint that does not load here: each file gets the error, no worker starts."""
    import concurrent.futures

    from pianonotes.transcribe import BatchSettings, run_batch

    pool, record = _recording_pool(None, None, tmp_path / "unused")
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", pool)
    plan = _plan(six_clips, tmp_path / "out")
    settings = BatchSettings(model=str(tmp_path / "nowhere" / "model"), device="cpu")
    results = _finishes(lambda: list(run_batch(plan, settings, jobs=3)), timeout=60)
    assert [r.path for r in results] == list(plan)
    assert all(r.error and "not found" in r.error and not r.written for r in results)
    assert record["pools"] == 0  # no worker started for a batch that cannot run
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------- writer modules imported while transcribing
def _comparable(outs) -> dict:
    """{name: bytes} of written outputs, MusicXML without what differs between any two writes (music21's
    random part and instrument ids, the encoding date)."""
    import re

    got = {}
    for o in outs:
        data = Path(o).read_bytes()
        if Path(o).suffix == ".musicxml":
            data = re.sub(rb'id="([PI])[0-9a-f]{32}"', rb'id="\1"', data)
            data = re.sub(rb"<encoding-date>[^<]*</encoding-date>", b"", data)
        got[Path(o).name] = data
    return got


def _without_prefetch(tr, wav: Path, outs: list, monkeypatch) -> dict:
    """``_comparable`` outputs written by process_file with the prefetch turned off."""
    import pianonotes.transcribe as tmod

    with monkeypatch.context() as m:
        m.setattr(tmod, "_prefetch_writers", lambda outputs: None)
        res = tmod.process_file(tr, wav, outs, tmod.BatchSettings())
    assert res.error is None and res.notes > 3
    return _comparable(outs)


@pytest.fixture(scope="module")
def prefetch_input(tmp_path_factory):
    wav = tmp_path_factory.mktemp("prefetch") / "in.wav"
    sf.write(wav, np.concatenate([sine(262, 1.0), sine(330, 1.0) + sine(523, 1.0)]), 16000)
    return wav


def test_prefetch_imports_on_a_thread_done_before_writing_same_outputs(onnx_model, prefetch_input, tmp_path,
                                                                       monkeypatch):
    """A not-yet-imported writer module (a probe standing in for mido) is imported on the prefetch thread
    while the file is transcribed; the thread has finished before the outputs are written; the outputs
    are byte for byte those written without the prefetch."""
    import sys
    import uuid

    import pianonotes.export
    import pianonotes.transcribe as tmod

    probe = f"_pianonotes_probe_{uuid.uuid4().hex[:8]}"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / f"{probe}.py").write_text(
        "import threading, time\nTHREAD = threading.current_thread().name\ntime.sleep(0.2)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.setattr(tmod, "_WRITER_MODULES", {"midi": (probe,) + tmod._WRITER_MODULES["midi"],
                                                  "musicxml": tmod._WRITER_MODULES["musicxml"]})
    threads, at_write = [], []
    real_prefetch, real_write_all = tmod._prefetch_writers, pianonotes.export.write_all

    def spy_prefetch(outputs):
        threads.append(real_prefetch(outputs))
        return threads[-1]

    def spy_write_all(*args, **kwargs):
        at_write.append((probe in sys.modules, [t.is_alive() for t in threads if t is not None]))
        return real_write_all(*args, **kwargs)

    tr = Transcriber(onnx_model, device="cpu")
    outs = [tmp_path / "a" / "in.mid", tmp_path / "a" / "in.musicxml", tmp_path / "a" / "in.csv"]
    outs[0].parent.mkdir()
    try:
        monkeypatch.setattr(tmod, "_prefetch_writers", spy_prefetch)
        monkeypatch.setattr(pianonotes.export, "write_all", spy_write_all)
        res = tmod.process_file(tr, prefetch_input, outs, tmod.BatchSettings())
        loaded_on = getattr(sys.modules.get(probe), "THREAD", None)
    finally:
        sys.modules.pop(probe, None)
    assert res.error is None and res.written == outs
    assert len(threads) == 1 and threads[0] is not None and threads[0].name == "pianonotes-prefetch"
    assert loaded_on == "pianonotes-prefetch"  # imported there, not by this thread
    assert at_write == [(True, [False])]  # loaded, and the thread joined, before writing
    with_prefetch = _comparable(outs)
    monkeypatch.undo()
    without = [tmp_path / "b" / o.name for o in outs]
    without[0].parent.mkdir()
    assert with_prefetch == _without_prefetch(tr, prefetch_input, without, monkeypatch)


_FRESH_PREFETCH = """
import json, sys
from pathlib import Path
import pianonotes.export
import pianonotes.transcribe as tmod
report = {"before": sorted(m for m in ("mido", "music21") if m in sys.modules)}
threads = []
real_prefetch, real_write_all = tmod._prefetch_writers, pianonotes.export.write_all
def spy_prefetch(outputs):
    threads.append(real_prefetch(outputs))
    return threads[-1]
def spy_write_all(*args, **kwargs):
    report["at_write"] = sorted(m for m in ("mido", "music21") if m in sys.modules)
    return real_write_all(*args, **kwargs)
tmod._prefetch_writers, pianonotes.export.write_all = spy_prefetch, spy_write_all
tr = tmod.Transcriber(MODEL, device="cpu")
res = tmod.process_file(tr, Path(WAV), [Path(o) for o in OUTS], tmod.BatchSettings())
report.update(error=res.error, threads=[t is not None for t in threads])
print(json.dumps(report))
"""


def test_prefetch_in_a_fresh_process_writes_the_same_outputs(onnx_model, prefetch_input, tmp_path, monkeypatch):
    """In a new process (mido and music21 not imported yet) the prefetch thread imports them while the
    file is transcribed; the MIDI, MusicXML and CSV are byte for byte those written without it."""
    import json
    import subprocess
    import sys

    outs = [tmp_path / "a" / "in.mid", tmp_path / "a" / "in.musicxml", tmp_path / "a" / "in.csv"]
    outs[0].parent.mkdir()
    code = f"MODEL, WAV, OUTS = {str(onnx_model)!r}, {str(prefetch_input)!r}, {[str(o) for o in outs]!r}\n"
    code += _FRESH_PREFETCH
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert report["before"] == [] and report["threads"] == [True] and report["error"] is None
    assert report["at_write"] == ["mido", "music21"]
    with_prefetch = _comparable(outs)
    without = [tmp_path / "b" / o.name for o in outs]
    without[0].parent.mkdir()
    assert with_prefetch == _without_prefetch(Transcriber(onnx_model, device="cpu"), prefetch_input, without,
                                              monkeypatch)


def test_a_prefetch_whose_import_fails_changes_nothing(onnx_model, prefetch_input, tmp_path, monkeypatch):
    import threading

    import pianonotes.transcribe as tmod

    missing = "pianonotes_no_such_module_for_the_prefetch"
    monkeypatch.setattr(tmod, "_WRITER_MODULES", {k: (missing,) + v for k, v in tmod._WRITER_MODULES.items()})
    raised, threads = [], []
    monkeypatch.setattr(threading, "excepthook", raised.append)
    real_prefetch = tmod._prefetch_writers
    monkeypatch.setattr(tmod, "_prefetch_writers", lambda outputs: threads.append(real_prefetch(outputs)) or threads[-1])
    tr = Transcriber(onnx_model, device="cpu")
    outs = [tmp_path / "a" / "in.mid", tmp_path / "a" / "in.musicxml"]
    outs[0].parent.mkdir()
    res = tmod.process_file(tr, prefetch_input, outs, tmod.BatchSettings())
    assert res.error is None and res.written == outs and res.notes > 3
    assert len(threads) == 1 and threads[0] is not None and not threads[0].is_alive()  # it ran, and ended
    assert raised == []  # the failed import stayed inside the prefetch thread
    with_prefetch = _comparable(outs)
    monkeypatch.undo()
    without = [tmp_path / "b" / o.name for o in outs]
    without[0].parent.mkdir()
    assert with_prefetch == _without_prefetch(tr, prefetch_input, without, monkeypatch)
