"""Key estimation without music21 (pianonotes.export.keys): the same key as music21's four-profile
analysis, the light Key value of a ScorePlan, and no music21 import on the MIDI/CSV/JSON path."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from pianonotes.export import plan_score
from pianonotes.export.keys import Key, best_key, estimate_key, key_signature, pitch_class_histogram
from pianonotes.notes import Note

from conftest import ROOT, run_cli

EXAMPLE = ROOT / "pianonotes" / "examples" / "twohands.flac"
METHODS = ("krumhansl", "aarden", "temperley", "bellman")
# Makes `import music21` fail in a process and in every process it starts (PYTHONPATH is inherited).
NO_MUSIC21 = ("import sys\n"
              "class _NoMusic21:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'music21' or name.startswith('music21.'):\n"
              "            raise ModuleNotFoundError(\"No module named 'music21'\", name=name)\n"
              "        return None\n"
              "sys.meta_path.insert(0, _NoMusic21())\n")


def music21_key(pitches, lengths, offsets=None):
    """The reference: music21's analyze() with the four profiles, correlations summed over all 24 keys
    (what plan_score did before it had its own estimator)."""
    from music21 import key, note, stream

    probe = stream.Stream()
    for i, (p, ql) in enumerate(zip(pitches, lengths)):
        n = note.Note()
        n.pitch.midi = p
        n.quarterLength = ql
        probe.insert(float(offsets[i]) if offsets is not None else float(i), n)
    totals: dict = {}
    for m in METHODS:
        best = probe.analyze(m)
        for k in [best, *best.alternateInterpretations]:
            name = (k.tonic.name, k.mode)
            totals[name] = totals.get(name, 0.0) + float(k.correlationCoefficient)
    (tonic, mode), _ = max(totals.items(), key=lambda kv: (kv[1], kv[0]))
    return key.Key(tonic, mode)


def assert_same(k: Key, ref) -> None:
    assert (k.tonic_name, k.mode, k.sharps) == (ref.tonic.name, ref.mode, ref.sharps), (str(k), ref)


def _scale(tonic: int, steps, reps: int = 2) -> list[int]:
    up = [tonic + s for s in steps] + [tonic + 12]
    return (up + up[::-1]) * reps


@pytest.mark.parametrize("pitches, want", [
    (_scale(62, [0, 2, 3, 5, 7, 8, 11]), (2, "minor")),  # D minor with C# (and B-flat)
    (_scale(60, [0, 2, 4, 5, 7, 9, 11]), (0, "major")),  # C major
    (_scale(65, [0, 2, 4, 5, 7, 9, 11]), (5, "major")),  # F major, with its B-flat
    (_scale(64, [0, 2, 4, 5, 7, 9, 11]), (4, "major")),  # E major
    (_scale(69, [0, 2, 3, 5, 7, 8, 11]), (9, "minor")),  # A harmonic minor
])
def test_hand_made_scales(pitches, want):
    lengths = [1.0] * len(pitches)
    k = estimate_key(pitches, lengths)
    assert (k.tonic, k.mode) == want
    assert_same(k, music21_key(pitches, lengths))


def test_d_minor_scale_with_c_sharp_and_each_profile_alone():
    from music21 import note, stream

    d_minor = [62, 64, 65, 67, 69, 70, 73, 74, 73, 70, 69, 67, 65, 64, 62]
    lengths = [0.5] * (len(d_minor) - 1) + [2.0]
    assert estimate_key(d_minor, lengths) == Key(2, "minor")
    probe = stream.Stream()
    for i, (p, ql) in enumerate(zip(d_minor, lengths)):
        n = note.Note()
        n.pitch.midi, n.quarterLength = p, ql
        probe.insert(i * 0.5, n)
    for m in METHODS:  # each profile alone gives music21's answer for that profile
        assert_same(best_key(pitch_class_histogram(d_minor, lengths), (m,)), probe.analyze(m))
    assert Key(2, "minor").sharps == -1 and str(Key(2, "minor")) == "D minor"


def test_key_values_match_music21():
    from music21 import key

    for mode in ("major", "minor"):
        for t in range(12):
            k = Key(t, mode)
            m = k.to_music21()
            assert isinstance(m, key.Key) and m.tonic.pitchClass == t and m.mode == mode
            assert k.sharps == m.sharps == key_signature(t, mode)
    with pytest.raises(ValueError):
        Key(12, "major")
    with pytest.raises(ValueError):
        Key(0, "dorian")


def test_random_note_lists_agree_with_music21():
    rng = random.Random(7)
    for trial in range(60):
        n = rng.choice([1, 2, 4, 9, 30])
        pitches = [rng.randint(21, 108) for _ in range(n)]
        if trial % 3 == 0:  # sixteenth-note lengths
            lengths = [rng.randint(1, 16) / 4 for _ in range(n)]
        elif trial % 3 == 1:  # triplets and quintuplets: Fractions inside music21
            lengths = [min(4.0, float(Fraction(rng.randint(1, 12), rng.choice([3, 5, 6, 12])))) for _ in range(n)]
        else:
            lengths = [rng.uniform(0.05, 4.0) for _ in range(n)]
        assert_same(estimate_key(pitches, lengths), music21_key(pitches, lengths))


@pytest.mark.parametrize("base", [[0, 6], [0, 4, 8], [0, 3, 6, 9], list(range(12))])
def test_exact_ties_break_as_music21(base):
    """Symmetric pitch sets tie exactly in every profile; the winner must still be music21's."""
    for t in (0, 5):
        pitches = [60 + (t + b) % 12 for b in base]
        lengths = [1.0] * len(pitches)
        assert_same(estimate_key(pitches, lengths), music21_key(pitches, lengths))


@pytest.mark.parametrize("path, kind, qpm", [
    ("bach/bwv66.6", "chorale", 84.0),
    ("ryansMammoth/BossJig.abc", "jig", 165.0),
    ("ryansMammoth/AcaciaReel.abc", "reel", 96.0),
])
def test_score_bench_pieces_agree_with_music21(path, kind, qpm):
    from devtools import score_bench as sb

    truth = sb.load_truth(path, kind, 16)
    for performed in (False, True):
        notes, _ = sb.perform(truth, qpm, performed, seed=1)
        for grid in ((4,), (4, 3)):
            plan = plan_score(notes, grid=grid)
            assert isinstance(plan.key, Key)
            q = plan.qnotes
            ref = music21_key([x.pitch for x in q], [min(float(x.end - x.start), 4.0) for x in q],
                              [x.start for x in q])
            assert_same(plan.key, ref)


def test_plan_key_reaches_midi_and_score(tmp_path):
    import mido

    from pianonotes.export import notes_to_score, write_notes

    scale = [62, 64, 65, 67, 69, 70, 73, 74] * 3
    notes = [Note(0.5 + i * 0.5, 0.95 + i * 0.5, p, 80) for i, p in enumerate(scale)]
    plan = plan_score(notes, bpm=120)
    assert plan.key == Key(2, "minor")
    path = write_notes(tmp_path / "d.mid", notes, title="d", plan=plan)[0]
    keys = [m.key for m in mido.MidiFile(path).tracks[0] if m.type == "key_signature"]
    assert keys == ["Dm"]
    sc = notes_to_score(notes, title="d", plan=plan)
    from music21 import key

    ks = list(sc.parts[0].recurse().getElementsByClass(key.Key))
    assert ks and ks[0].tonic.name == "D" and ks[0].mode == "minor"
    names = {p.nameWithOctave for p in sc.parts[0].flatten().pitches}
    assert "C#5" in names and "B-4" in names  # spelled for D minor


def test_mid_csv_json_outputs_never_import_music21(tmp_path):
    """transcribe to .mid, .csv and .json in a process where music21 cannot be imported."""
    d = tmp_path / "nomusic21"
    d.mkdir()
    (d / "sitecustomize.py").write_text(NO_MUSIC21)
    env = {"PYTHONPATH": str(d)}
    import subprocess
    import sys

    blocked = subprocess.run([sys.executable, "-c", "import music21"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "No module named 'music21'" in blocked.stderr  # the blocker works
    outs = [tmp_path / "x.mid", tmp_path / "x.csv", tmp_path / "x.json"]
    p = run_cli("transcribe", EXAMPLE, *[a for o in outs for a in ("-o", o)], env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert all(o.exists() and o.stat().st_size > 0 for o in outs)
