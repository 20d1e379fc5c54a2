import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.notes import PedalEvent
from pianonotes.datasets.synth.augment import NO_AUGMENT
from pianonotes.datasets.synth.dataset import SynthConfig, synthesize
from pianonotes.datasets.synth import sources
from pianonotes.datasets.synth.render import render
from pianonotes.datasets.synth.textures import GENERATORS, generate

from conftest import FLUIDR3, assert_one_line_error, needs_fluidsynth, run_cli

SR = 16000
MIDI_FIXTURES = Path(__file__).parent / "fixtures" / "midi"  # four pieces of the corpus, with a manifest


def _band_energy(audio, pitch, t0, t1):
    """Energy at a note's fundamental (and 2nd harmonic for the lowest keys) between t0 and t1."""
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    seg = audio[int(t0 * SR): int(t1 * SR)]
    n = len(seg)
    spec = np.abs(np.fft.rfft(seg * np.hanning(n))) ** 2
    freqs = np.fft.rfftfreq(n, 1 / SR)
    hs = [f0, 2 * f0, 3 * f0] if pitch < 40 else [f0]
    return sum(spec[(freqs > h * 0.985) & (freqs < h * 1.015)].sum() for h in hs if h < SR / 2)


@needs_fluidsynth
@pytest.mark.parametrize("pitch", [21, 60, 108])
def test_rendered_note_matches_its_label(pitch):
    audio = render([(0.5, 1.5, pitch, 100)], [], 3.0, FLUIDR3, 0, SR)
    before = _band_energy(audio, pitch, 0.1, 0.45)
    during = _band_energy(audio, pitch, 0.6, 0.95)
    after = _band_energy(audio, pitch, 2.2, 2.55)  # release is over well before 2.2 s
    assert during > 30 * max(before, 1e-12)
    assert during > 10 * max(after, 1e-12)


@needs_fluidsynth
def test_pedal_holds_the_note_as_labelled():
    from pianonotes.datasets.synth.performance import Performance

    keys = [(0.2, 0.5, 60, 100)]
    pedals = [PedalEvent(0.1, 2.0)]
    audio = render(keys, pedals, 3.5, FLUIDR3, 0, SR)
    label = Performance(np.array(keys, float), pedals, 3.5).sounding_notes()[0]
    assert label.offset == pytest.approx(2.0) and label.release == pytest.approx(0.5)
    held = _band_energy(audio, 60, 1.5, 1.9)  # key released, pedal down: still sounding
    gone = _band_energy(audio, 60, 2.8, 3.2)  # pedal lifted at 2.0
    assert held > 20 * max(gone, 1e-12)
    unpedalled = render(keys, [], 3.5, FLUIDR3, 0, SR)
    assert held > 20 * _band_energy(unpedalled, 60, 1.5, 1.9)


def test_generated_textures_cover_every_key():
    rng = np.random.default_rng(0)
    seen = set()
    for kind in GENERATORS:
        for _ in range(6):
            perf, _ = generate(rng, 20.0, kind)
            seen |= set(perf.keys[:, 2].astype(int))
            assert perf.keys[:, 2].min() >= constants.MIN_PITCH and perf.keys[:, 2].max() <= constants.MAX_PITCH
            assert np.all(perf.keys[:, 1] > perf.keys[:, 0])
    assert seen == set(range(constants.MIN_PITCH, constants.MAX_PITCH + 1))


def _small_cfg(**kw):
    base = dict(hours=0.0, eval_minutes=0.4, splits=("validation",), shard_seconds=12.0, clip_seconds=(4.0, 6.0),
                weights={"corpus": 0.5, "textures": 0.5}, soundfonts=("timgm6mb",), seed=3,
                midi_dir=str(MIDI_FIXTURES))
    base.update(kw)
    return SynthConfig(**base)


@needs_fluidsynth
def test_dataset_is_deterministic_and_labelled(tmp_path):
    cfg = _small_cfg()
    m1 = synthesize(tmp_path / "a", cfg)
    synthesize(tmp_path / "b", cfg)
    files = sorted((tmp_path / "a" / "validation").iterdir())
    assert len(files) >= 4
    for f in files:
        assert f.read_bytes() == (tmp_path / "b" / "validation" / f.name).read_bytes(), f.name
    labels = json.loads(files[1].read_text())
    audio, sr = sf.read(files[0])
    assert sr == SR and abs(len(audio) / sr - labels["seconds"]) < 0.01
    assert labels["notes"] and all(constants.MIN_PITCH <= n[2] <= constants.MAX_PITCH for n in labels["notes"])
    assert all(c["license"] for c in labels["clips"])
    assert m1["totals"]["validation"]["shards"] == len(files) // 2
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man["config"]["seed"] == 3 and "licenses" in man and man["soundfonts"] == {"timgm6mb": constants.TRAIN_SOUNDFONTS["timgm6mb"]}
    # a different seed gives different audio
    synthesize(tmp_path / "c", _small_cfg(seed=4))
    assert files[0].read_bytes() != (tmp_path / "c" / "validation" / files[0].name).read_bytes()


@needs_fluidsynth
def test_resume_after_interruption_and_no_half_shard(tmp_path):
    cfg = _small_cfg(augment=NO_AUGMENT)
    out = tmp_path / "d"
    synthesize(out, cfg)
    shards = sorted((out / "validation").glob("*.json"))
    ref = {p.name: p.read_bytes() for p in (out / "validation").iterdir()}
    # simulate a crash mid-shard: its labels missing and a stray temp file
    shards[-1].unlink()
    (out / "validation" / ".shard-00001.abc.part.flac").write_bytes(b"partial")
    synthesize(out, cfg)
    got = {p.name: p.read_bytes() for p in (out / "validation").iterdir() if not p.name.startswith(".")}
    assert got == ref


def test_reserved_soundfont_refused(tmp_path):
    with pytest.raises(PianonotesError, match="reserved"):
        synthesize(tmp_path, _small_cfg(soundfonts=("musescore",)))


# ---- the CLI on bad input: one clear line, non-zero exit, nothing half-written counted as done
@needs_fluidsynth
def test_cli_bad_inputs(tmp_path):
    p = run_cli("data", "synth", tmp_path / "o1", "--hours", "0", "--eval-minutes", "0.2", "--split", "test",
                "--soundfonts", str(tmp_path / "nope.sf2"))
    assert_one_line_error(p, "soundfont")
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_cli("data", "synth", tmp_path / "o2", "--hours", "0", "--eval-minutes", "0.2", "--split", "test",
                "--midi-dir", empty)
    assert_one_line_error(p, "no MIDI files")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.mid").write_text("garbage")
    (bad / "manifest.csv").write_text("path,corpus,split,seconds,license\nbroken.mid,mine,test,10,CC0\n")
    p = run_cli("data", "synth", tmp_path / "o3", "--hours", "0", "--eval-minutes", "0.3", "--split", "test",
                "--midi-dir", bad, "--weights", "corpus=1", "--workers", "1")
    assert_one_line_error(p, "broken.mid", "cannot read MIDI")
    assert not list((tmp_path / "o3" / "test").glob("*.json")) if (tmp_path / "o3" / "test").exists() else True


@needs_fluidsynth
def test_unwritable_output_is_a_clear_error(tmp_path):
    """The output folder cannot be created (a file is in the way): one line, no traceback."""
    target = tmp_path / "file-not-folder"
    target.write_text("x")
    p = run_cli("data", "synth", target / "sub", "--hours", "0", "--eval-minutes", "0.2", "--split", "test")
    assert_one_line_error(p, "cannot write")


def test_corpus_fixture_is_read_with_its_splits():
    pieces = sources.corpus_pieces(MIDI_FIXTURES)
    assert sorted(p.split for p in pieces) == ["test", "train", "validation", "validation"]
    perf = sources.load_piece(next(p for p in pieces if p.ref.endswith("331.mid")))
    assert len(perf.keys) > 300 and perf.pedals  # POP909: three tracks, CC64 on the piano channel


def test_repository_corpus_is_found_first(monkeypatch):
    """In a checkout, the corpus is the repository's data/midi, wherever the checkout lies."""
    monkeypatch.delenv("PIANONOTES_MIDI_CORPUS", raising=False)
    root = Path(sources.__file__).resolve().parents[3]
    if not (root / "data" / "midi" / "manifest.csv").exists():
        pytest.skip("not a checkout with data/midi (an installed package)")
    assert sources.default_corpus_dir() == root / "data" / "midi"
    monkeypatch.setenv("PIANONOTES_MIDI_CORPUS", str(MIDI_FIXTURES))
    assert sources.default_corpus_dir() == MIDI_FIXTURES
    assert sources.weights_without_corpus({"corpus": 0.5, "textures": 0.5}, None) == ({"corpus": 0.5, "textures": 0.5}, None)


def test_weights_without_corpus(monkeypatch):
    monkeypatch.setattr(sources, "default_corpus_dir", lambda: None)
    w, warning = sources.weights_without_corpus({"corpus": 0.55, "music21": 0.1, "textures": 0.35}, None)
    assert w == {"corpus": 0.0, "music21": 0.1, "textures": 0.35} and "--midi-dir" in warning
    assert sources.weights_without_corpus({"corpus": 1.0}, None) == ({"corpus": 1.0}, None)  # nothing else: an error later
    assert sources.weights_without_corpus({"corpus": 1.0}, "/my/midi") == ({"corpus": 1.0}, None)


@needs_fluidsynth
def test_corpus_only_without_corpus_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "default_corpus_dir", lambda: None)
    with pytest.raises(PianonotesError, match="no MIDI corpus"):
        synthesize(tmp_path / "o", _small_cfg(midi_dir=None, weights={"corpus": 1.0}))


@needs_fluidsynth
def test_installed_package_renders_without_corpus(tmp_path):
    """As from a wheel (no data/midi, no ../shared): the default `data synth` renders music21 and textures
    and says in one line how to add the corpus."""
    site = tmp_path / "site"
    shutil.copytree(Path(sources.__file__).resolve().parents[2], site / "pianonotes", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PIANONOTES_MIDI_CORPUS"}
    env.update(PYTHONPATH=str(site), COLUMNS="100", NO_COLOR="1")
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "pianonotes", "data", "synth", str(out), "--hours", "0",
                        "--eval-minutes", "0.2", "--split", "test", "--workers", "1", "--shard-seconds", "12"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: no MIDI corpus") and "--midi-dir" in lines[0], p.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["weights"]["corpus"] == 0
    labels = json.loads((out / "test" / "shard-00000.json").read_text())
    assert labels["notes"] and {c["source"] for c in labels["clips"]} <= {"music21", "textures"}


@pytest.mark.slow
def test_the_wheel_leaves_the_midi_corpus_out(tmp_path):
    """data/midi (20 MB) is in the repository for `make data`, never in the installed package."""
    pytest.importorskip("setuptools")
    root = Path(sources.__file__).resolve().parents[3]
    if not (root / "data" / "midi" / "manifest.csv").exists():
        pytest.skip("not a checkout with data/midi")
    src = tmp_path / "src"
    skip = shutil.ignore_patterns(".venv*", ".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".cache",
                                  ".pytest_cache", "data")
    shutil.copytree(root, src, ignore=skip)
    shutil.copytree(root / "data" / "midi", src / "data" / "midi")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(tmp_path / "whl"), str(src)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    import zipfile

    (wheel,) = (tmp_path / "whl").glob("pianonotes-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pianonotes/cli/app.py" in names and not [n for n in names if n.startswith("devtools/")]
    assert not [n for n in names if n.endswith((".mid", ".midi")) and not n.startswith("pianonotes/examples/")]
    assert not [n for n in names if "manifest.csv" in n or "pop909" in n or "piano-midi-de" in n]


def test_whole_split_segments_cover_every_training_piece_once():
    from pianonotes.datasets.synth.dataset import corpus_segments

    pieces = sources.corpus_pieces(MIDI_FIXTURES)
    cfg = _small_cfg(whole_split=True, splits=("train",))
    segs = corpus_segments(pieces, cfg)
    train = [p for p in pieces if p.split == "train"]
    assert {s.ref for s in segs} == {p.ref for p in train}  # no validation or test piece
    for piece in train:
        mine = sorted((s for s in segs if s.ref == piece.ref), key=lambda s: s.start)
        assert mine[0].start == 0.0
        for a, b in zip(mine, mine[1:]):
            assert b.start == pytest.approx(a.start + a.seconds, abs=1e-3)  # consecutive, no gap, no overlap
        assert mine[-1].start + mine[-1].seconds == pytest.approx(piece.seconds, abs=1e-3)
        assert all(2.0 <= s.seconds <= 9.0 for s in mine)  # (4, 6) s clips; a short tail joins its neighbour
        full = sources.load_piece(piece)
        onsets = sum(len(full.excerpt(s.start, s.seconds).keys) for s in mine)
        assert onsets >= 0.98 * len(full.keys)  # every onset in exactly one clip (a few cut to < 10 ms)
    assert corpus_segments(pieces, cfg) == segs  # seeded
    assert corpus_segments(pieces, _small_cfg(whole_split=True, seed=4)) != segs


@needs_fluidsynth
def test_whole_split_renders_each_segment_into_the_shards(tmp_path):
    from pianonotes.datasets.synth.dataset import cover_plan

    cfg = _small_cfg(whole_split=True, splits=("train",), hours=0.0)
    plan = cover_plan(cfg)
    man = synthesize(tmp_path / "w", cfg)
    shards = sorted((tmp_path / "w" / "train").glob("*.json"))
    assert len(shards) == len(plan) == man["totals"]["train"]["shards"] >= 2
    rendered = set()
    for js, segs in zip(shards, plan):
        labels = json.loads(js.read_text())
        corpus = [c for c in labels["clips"] if c["source"] == "corpus"]
        assert {c["start"] for c in corpus} <= {s.start for s in segs}
        assert any(c["source"] == "textures" for c in labels["clips"])  # the other half of the mix
        rendered |= {(c["piece"], c["start"]) for c in corpus}
    assert len(rendered) >= 0.9 * sum(len(s) for s in plan)  # all but silent stretches
