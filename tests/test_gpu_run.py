"""The prepared GPU run (devtools.gpu_run): what travels decodes back to what the renderer and the
trainer read, and the commands it runs there are the ones the README names."""

import argparse
from pathlib import Path

import numpy as np
import pytest

from devtools import gpu_run
from pianonotes.datasets.synth.pianos import SampleSet

SR = 16000


def _tone(freq, seconds, amp):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t) * np.exp(-t)).astype(np.float16)


def _peak_hz(x):
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return np.argmax(spec) * SR / len(x)


@pytest.fixture
def piano():
    pitches = np.array([45, 57, 69])
    freqs = [110.0, 220.0, 440.0]
    mid = [[_tone(f, 1.0 + 0.25 * k, amp) for k, f in enumerate(freqs)] for amp in (0.1, 0.5)]
    side = [[np.full_like(m, 0.01) for m in layer] for layer in mid]
    release = {69: _tone(880.0, 0.3, 0.05)}
    return SampleSet("salamander", SR, pitches, np.array([1, 64]), mid, side, release)


def test_a_packed_piano_decodes_to_its_samples(piano, tmp_path):
    pytest.importorskip("soundfile")
    gpu_run.pack_piano(piano, tmp_path, level=0.9)
    back = gpu_run.unpack_piano(tmp_path, "salamander")
    assert list(back.pitches) == list(piano.pitches) and list(back.layer_velocity) == [1, 64]
    for li in range(2):
        for k, f in enumerate((110.0, 220.0, 440.0)):
            a, b = piano.mid[li][k], back.mid[li][k]
            assert b.dtype == np.float16 and len(b) == len(a)
            assert abs(_peak_hz(b) - f) < 3
            assert np.sqrt(np.mean(b.astype(np.float64) ** 2)) == pytest.approx(
                np.sqrt(np.mean(a.astype(np.float64) ** 2)), rel=0.15)
            assert not back.side[li][k].any()  # only the mid channel travels
    assert set(back.release) == {69} and abs(_peak_hz(back.release[69]) - 880.0) < 5
    assert (tmp_path / "salamander.json").exists() and len(list(tmp_path.glob("*.opus"))) == 3


def test_a_piano_packed_with_one_layer_gets_the_others_derived(piano, tmp_path):
    pytest.importorskip("scipy")
    from pianonotes.datasets.synth.pianos import IOWA_LAYER_VELOCITY

    ff = piano.mid[1]
    iowa = SampleSet("iowa", SR, piano.pitches, np.array(IOWA_LAYER_VELOCITY), [ff] * 4, [ff] * 4, {})
    gpu_run.pack_piano(iowa, tmp_path, layers=[3], level=0.9)
    assert len(list(tmp_path.glob("*-layer*.opus"))) == 1
    back = gpu_run.unpack_piano(tmp_path, "iowa")
    assert len(back.mid) == 4 and all(len(layer) == 3 for layer in back.mid)
    peak = [[float(np.abs(m.astype(np.float32)).max()) for m in layer] for layer in back.mid]
    for k in range(3):  # derive_layers: -24, -14, -6 dB (low-passed) under the recorded ff layer
        assert peak[0][k] < peak[1][k] < peak[2][k] < peak[3][k]
        assert peak[0][k] < 0.1 * peak[3][k]
    # a piano whose missing layers no rule can derive is refused
    gpu_run.pack_piano(piano, tmp_path / "two", layers=[1], level=0.9)
    with pytest.raises(ValueError, match="Iowa rule"):
        gpu_run.unpack_piano(tmp_path / "two", "salamander")


def test_the_room_bank_travels_as_float16_and_comes_back_as_float32(tmp_path):
    irs = {f"ir_{i}": np.random.default_rng(i).normal(size=800).astype(np.float32) for i in range(5)}
    np.savez(tmp_path / "bank.npz", **irs)
    assert gpu_run.pack_rooms(tmp_path / "bank.npz", tmp_path / "packed.npz", 3) == 3
    assert gpu_run.unpack_rooms(tmp_path / "packed.npz", tmp_path / "rooms.npz") == 3
    from pianonotes.datasets.synth.acoustics import load_room_bank

    back = load_room_bank(tmp_path / "rooms.npz")
    assert len(back) == 3 and all(h.dtype == np.float32 for h in back)
    np.testing.assert_allclose(back[2], irs["ir_2"], rtol=1e-3, atol=1e-3)


def test_the_device_commands(tmp_path):
    args = argparse.Namespace(device="cuda", batch_size=32, lr=8e-4, workers=14, max_steps=100000, save_every=500,
                              seed=3, channels=None, hidden="256", dilations="1,2,4,8", init_from="models/audionet")
    cmd = gpu_run.train_command(tmp_path / "d", tmp_path / "r", tmp_path / "rooms.npz", args, 7.25)
    joined = " ".join(cmd)
    for part in ("train --data", "--device cuda", "--online-augment", "--pedal-heads", "--max-minutes 7.25",
                 "--hidden 256", "--dilations 1,2,4,8", "--init-from models/audionet", f"--rooms {tmp_path / 'rooms.npz'}"):
        assert part in joined
    assert "--channels" not in cmd
    synth = " ".join(gpu_run.synth_command(tmp_path / "d", 20.0, 6.0, 16, 3))
    # no FluidSynth on that machine: the sampled pianos only, from the corpus that travels with the tree
    assert "--soundfonts salamander,salamander,iowa" in synth and "--midi-dir data/midi" in synth
    assert "music21" not in synth and "--workers 16" in synth
    assert (Path(gpu_run.__file__).parents[1] / "data" / "midi" / "manifest.csv").exists()


def test_the_tree_size_counts_untracked_files_git_does_not_ignore(tmp_path):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("ignored/\n")
    (tmp_path / "a.txt").write_bytes(b"x" * 100)
    (tmp_path / "ignored").mkdir()
    (tmp_path / "ignored" / "big").write_bytes(b"x" * 5000)
    assert gpu_run.tree_bytes(tmp_path) == 100 + len("ignored/\n")
