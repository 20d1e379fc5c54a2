"""One output pipeline: `listen --input` and `transcribe` of the same file write the same MIDI (tempo
map, time and key signature, one piano track) and accept the same score options; new-user fixes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from test_live import RUN_MAIN, ckpt, clip, env, work  # noqa: F401  (shared fixtures)


def _cli(args, env, timeout=120):  # noqa: F811  (the fixture passed in)
    return subprocess.run([sys.executable, "-c", RUN_MAIN, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _midi_summary(path):
    import mido

    mid = mido.MidiFile(str(path))
    msgs = list(mid.tracks[0])
    meta = [(m.type, getattr(m, "numerator", None), getattr(m, "denominator", None), getattr(m, "key", None))
            for m in msgs if m.type in ("time_signature", "key_signature", "track_name")]
    tempi = [m.tempo for m in msgs if m.type == "set_tempo"]
    t, notes, offs, cc64 = 0, [], [], []
    for m in msgs:
        t += m.time
        if m.type == "note_on" and m.velocity > 0:
            notes.append((t, m.note))
        elif m.type in ("note_on", "note_off"):
            offs.append((t, m.note))
        elif m.type == "control_change" and m.control == 64:
            cc64.append((t, m.value))
    return len(mid.tracks), meta, tempi, notes, offs, cc64


def test_listen_and_transcribe_write_the_same_midi(ckpt, clip, env, tmp_path):  # noqa: F811
    a, b = tmp_path / "live.mid", tmp_path / "file.mid"
    p = _cli(["listen", "--model", ckpt, "--input", clip, "--fast", "-o", a, "--time-signature", "3/4"], env)
    assert p.returncode == 0, p.stderr
    p = _cli(["transcribe", clip, "--model", ckpt, "-o", b, "--time-signature", "3/4", "-q"], env)
    assert p.returncode == 0, p.stderr
    sa, sb = _midi_summary(a), _midi_summary(b)
    assert sa[0] == sb[0] == 1
    assert sa[1] == sb[1] and ("time_signature", 3, 4, None) in sa[1]
    assert sa[2] == sb[2] and len(sa[2]) > 2  # the same tempo map
    assert sa[3] == sb[3] and sa[3]
    assert sa[4] == sb[4] and sa[5] == sb[5]  # the same note-offs and pedal


@pytest.fixture(scope="module")
def ckpt_v2(work):  # noqa: F811
    """A random AudioNet v2 (key-down and pedal heads), saturated so that chunking never flips a decision."""
    import torch

    from pianonotes import constants
    from pianonotes.features.logspec import LogSpecFrontEnd
    from pianonotes.nn import checkpoint
    from pianonotes.nn.archs import build

    torch.manual_seed(0)
    fe = LogSpecFrontEnd()
    model = build("audionet", fe.n_features, {"pedal": True})
    with torch.no_grad():
        for head in (model.onset, model.frame, model.key, model.pedal):
            head.weight.mul_(20.0)
            head.bias.mul_(20.0)
    cfg = {"arch": "audionet", "arch_config": {"pedal": True}, "n_features": fe.n_features,
           "frontend": fe.to_dict(), "fps": fe.fps, "past_frames": model.past, "future_frames": model.future,
           "lookahead_seconds": model.future / fe.fps + fe.lookahead_seconds,
           "decode": {"onset_threshold": constants.ONSET_THRESHOLD, "frame_threshold": constants.FRAME_THRESHOLD,
                      "min_note_seconds": constants.MIN_NOTE_SECONDS}}
    return checkpoint.save(work / "random_v2", model, cfg)


def test_listen_and_transcribe_agree_in_both_note_lengths(ckpt_v2, clip, env, tmp_path):  # noqa: F811
    got = {}
    for mode in ("key", "sounding"):
        a, b = tmp_path / f"live-{mode}.mid", tmp_path / f"file-{mode}.mid"
        p = _cli(["listen", "--model", ckpt_v2, "--input", clip, "--fast", "-o", a, "--note-length", mode], env)
        assert p.returncode == 0, p.stderr
        p = _cli(["transcribe", clip, "--model", ckpt_v2, "-o", b, "--note-length", mode, "-q"], env)
        assert p.returncode == 0, p.stderr
        got[mode] = _midi_summary(a)
        assert got[mode] == _midi_summary(b), mode
    key, snd = got["key"], got["sounding"]
    assert key[5] and not snd[5]  # CC64 with key releases only
    assert key[3] == snd[3] and key[4] != snd[4]  # the same notes, later ends under the pedal
    assert sum(s > k for (s, _), (k, _) in zip(sorted(snd[4], key=lambda x: x[1]), sorted(key[4], key=lambda x: x[1]))) > 0


def test_listen_rejects_a_bad_time_signature_before_the_take(ckpt, clip, env, tmp_path):  # noqa: F811
    p = _cli(["listen", "--model", ckpt, "--input", clip, "--fast", "-o", tmp_path / "x.mid",
              "--time-signature", "3-4"], env)
    assert p.returncode == 1 and "time signature" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x.mid").exists()


def test_output_to_a_new_folder_and_start_past_the_end(ckpt, clip, env, tmp_path):  # noqa: F811
    out = tmp_path / "new" / "dir"
    p = _cli(["transcribe", clip, "--model", ckpt, "-o", f"{out}/", "-f", "mid", "-f", "musicxml", "--roll", "-q"],
             env)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["clip.mid", "clip.musicxml", "clip.roll.png"]
    p = _cli(["transcribe", clip, "--model", ckpt, "-o", tmp_path / "late.mid", "--start", "60"], env)
    assert p.returncode == 1 and "past the end" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "late.mid").exists()


@pytest.mark.parametrize("command", ["transcribe", "listen"])
def test_help_has_no_python_type_names(command, env):  # noqa: F811
    p = _cli([command, "--help"], dict(env, COLUMNS="120"))
    assert p.returncode == 0
    for name in ("<bool>", "<list[", "<str>", "<float>", "<path>"):
        assert name not in p.stdout
    assert "PATH" in p.stdout and "FLOAT" in p.stdout


def test_a_takes_export_shows_its_stages_on_a_terminal(tmp_path):
    """listen and recover write a take's outputs under an ExportDisplay: on a terminal each export stage is
    shown (the score of a long take takes a while); off a terminal nothing is printed."""
    import io

    from conftest import four_then_three
    from rich.console import Console

    from pianonotes.cli.console import ExportDisplay
    from pianonotes.live.outputs import write_outputs
    from pianonotes.notes import Note

    notes = [Note(0.5 + q * 0.6, 0.5 + (q + d) * 0.6 - 0.05, p, 80) for q, d, p in four_then_three()]
    for terminal in (True, False):
        buf = io.StringIO()
        out = Console(file=buf, force_terminal=terminal, width=100)
        stages = []
        with ExportDisplay(out, "take.musicxml", enabled=out.is_terminal) as shown:
            def progress(stage, fraction, shown=shown, stages=stages):
                stages.append(stage)
                shown.update(stage, fraction)

            written = write_outputs(notes, [tmp_path / f"t{terminal}.musicxml", tmp_path / f"t{terminal}.mid"],
                                    title="take", progress=progress)
        assert len(written) == 2 and {"plan", "score", "musicxml"} <= set(stages)
        text = buf.getvalue()
        if terminal:
            assert "take.musicxml: beats, meter and key" in text and "building the score" in text
        else:
            assert text == ""


def test_rhythm_option_reaches_a_takes_score(tmp_path):
    """write_outputs (listen, recover, serve) passes --rhythm to the score: 8th triplets are written as
    triplets with 'fine' and rounded to 16ths with '16ths'."""
    from fractions import Fraction

    from music21 import converter

    from pianonotes.errors import PianonotesError
    from pianonotes.live.outputs import write_outputs
    from pianonotes.notes import Note

    spb = 0.6  # seconds per beat
    notes = [Note(0.5 + (b + k / 3) * spb, 0.5 + (b + (k + 1) / 3) * spb - 0.02, 72 + k, 80)
             for b in range(8) for k in range(3)] + [Note(0.5 + b * spb, 0.5 + (b + 1) * spb - 0.02, 48, 80)
                                                     for b in range(8)]

    def values(rhythm):
        (path,) = write_outputs(notes, [tmp_path / f"{rhythm}.musicxml"], title="t", bpm=100.0, rhythm=rhythm)
        sc = converter.parse(str(path))
        return {Fraction(n.quarterLength).limit_denominator(96) for n in sc.parts[0].recurse().notes}

    assert values("fine") == {Fraction(1, 3)}
    assert Fraction(1, 3) not in values("16ths")
    with pytest.raises(PianonotesError, match="unknown rhythm"):
        write_outputs(notes, [tmp_path / "x.mid"], title="t", rhythm="32nds")
