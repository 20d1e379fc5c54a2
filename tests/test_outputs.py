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
    t, notes = 0, []
    for m in msgs:
        t += m.time
        if m.type == "note_on" and m.velocity > 0:
            notes.append((t, m.note))
    return len(mid.tracks), meta, tempi, notes


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
