"""AudioNet, the seed's baselines, checkpoints, training (overfit, resume, DDP), decoding, evaluation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pianonotes import constants
from pianonotes.decode import Activations, DecodeOptions, StreamingDecoder, decode
from pianonotes.errors import PianonotesError
from pianonotes.features.logspec import LogSpecFrontEnd
from pianonotes.training.metrics import transcription_scores
from pianonotes.nn import checkpoint as ckpt
from pianonotes.nn.archs import build
from pianonotes.training.train import TrainConfig, train
from pianonotes.notes import Note

from conftest import needs_fluidsynth

TINY = {"channels": [8, 8], "hidden": 64, "dilations": [1, 2]}


# ---------------------------------------------------------------------------------------- architectures
@pytest.mark.parametrize("arch", ["audionet", "seed-mlp", "linear"])
def test_shapes_and_lookahead(arch):
    fe = LogSpecFrontEnd()
    cfg = {} if arch == "audionet" else {"n_classes": 5}
    model = build(arch, fe.n_features, cfg).eval()
    T = 37
    x = torch.randn(2, model.past + T + model.future, fe.n_features)
    out = model(x)
    assert out["frame"].shape == out["onset"].shape == (2, T, constants.N_KEYS)
    lookahead = model.future / fe.fps + fe.lookahead_seconds
    assert lookahead <= constants.MAX_LOOKAHEAD_SECONDS + 1e-9
    # the bound is real: changing input beyond `future` frames after an output does not change it
    x2 = x.clone()
    x2[:, model.past + 10 + model.future + 1:] += 1.0
    out2 = model(x2)
    assert torch.allclose(out["frame"][:, :11], out2["frame"][:, :11], atol=1e-5)
    if model.future or arch == "audionet":
        assert not torch.allclose(out["frame"][:, 11:], out2["frame"][:, 11:])


def test_seed_mlp_is_the_seeds_network():
    model = build("seed-mlp", 92, {"n_classes": 35531})
    sizes = [m.out_features for m in model.net if isinstance(m, torch.nn.Linear)]
    assert sizes == [300, 1000, 600, 300, 35531]
    assert [m.out_features for m in build("linear", 92, {"n_classes": 7}).net] == [7]


# ---------------------------------------------------------------------------------------------- decoding
def test_decoding_hand_made_activations():
    T = 100
    f, o, v = np.zeros((T, 88)), np.zeros((T, 88)), np.zeros((T, 88))
    o[10, 39], f[10:30, 39], v[10, 39] = 0.9, 0.8, 100 / 127  # C4 0.2-0.6 s
    o[40, 39], f[40:45, 39] = 0.9, 0.9  # re-struck at 0.8, again at 0.9
    o[45, 39], f[45:60, 39] = 0.8, 0.9
    o[70, 0], f[70, 0] = 0.9, 0.9  # A0, one frame: shorter than the minimum
    f[80:90, 87] = 0.9  # key down without an onset: no note
    notes = decode(f, o, v, fps=50)
    assert [(n.pitch, n.onset, n.offset) for n in notes] == [(60, 0.2, 0.6), (60, 0.8, 0.9), (60, 0.9, 1.2)]
    assert notes[0].velocity == 100 and notes[0].confidence == pytest.approx(0.9)
    loose = decode(f, o, v, fps=50, options=DecodeOptions(min_note_seconds=0.0))
    assert any(n.pitch == 21 for n in loose)
    assert all(n.duration >= 0.05 - 1e-9 for n in notes)


def test_streaming_decoder_equals_offline_for_any_chunking():
    rng = np.random.default_rng(0)
    f, o = rng.random((600, 88)) ** 3, rng.random((600, 88)) ** 6
    whole = decode(f, o, fps=50)
    for step in (1, 7, 599):
        d = StreamingDecoder(50)
        got = []
        for i in range(0, 600, step):
            got += d.push(f[i:i + step], o[i:i + step])
        assert sorted(got + d.flush()) == whole


def test_activations_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    a = Activations(rng.random((50, 88)).astype(np.float32), rng.random((50, 88)).astype(np.float32),
                    rng.random((50, 88)).astype(np.float32), 50.0, "x.wav", {"onset_threshold": 0.7})
    a.save(tmp_path / "a.npz")
    b = Activations.load(tmp_path / "a.npz")
    assert b.fps == 50.0 and b.decode_defaults == {"onset_threshold": 0.7}
    assert np.allclose(a.onset, b.onset, atol=1e-3)
    (tmp_path / "bad.npz").write_text("nope")
    with pytest.raises(PianonotesError):
        Activations.load(tmp_path / "bad.npz")


# -------------------------------------------------------------------------------------------- evaluation
def test_metrics_perfect_and_shifted():
    ref = [Note(0.5 * i, 0.5 * i + 0.4, 40 + i) for i in range(20)]
    perfect = transcription_scores(ref, ref, 11.0)
    assert perfect["note_f1"] == 1.0 and perfect["frame_f1"] == 1.0 and perfect["exact_frame_acc"] == 1.0
    late = [n.shifted(0.04) for n in ref]  # within the 50 ms onset tolerance
    s = transcription_scores(ref, late, 11.0)
    assert s["note_f1"] == 1.0 and s["frame_f1"] < 1.0 and s["exact_frame_acc"] < 1.0
    later = [n.shifted(0.06) for n in ref]  # outside it
    assert transcription_scores(ref, later, 11.0)["note_f1"] == 0.0
    octave = [Note(n.onset, n.offset, n.pitch + 12) for n in ref]
    assert transcription_scores(ref, octave, 11.0)["note_f1"] == 0.0
    half = ref[::2]
    s = transcription_scores(ref, half, 11.0)
    assert s["note_p"] == 1.0 and s["note_r"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------- checkpoints
def _save_random(path, arch="audionet", arch_config=None):
    fe = LogSpecFrontEnd()
    model = build(arch, fe.n_features, arch_config or TINY)
    cfg = {"arch": arch, "arch_config": arch_config or TINY, "n_features": fe.n_features, "frontend": fe.to_dict(),
           "fps": fe.fps, "past_frames": model.past, "future_frames": model.future, "decode": {}}
    return ckpt.save(path, model, cfg), model


def test_checkpoint_round_trip_and_errors(tmp_path):
    _, model = _save_random(tmp_path / "m")
    loaded, cfg = ckpt.load(tmp_path / "m.json")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert cfg["weights_sha256"] == ckpt.sha256(tmp_path / "m.safetensors")
    # corrupt weights: hash mismatch
    data = bytearray((tmp_path / "m.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "m.safetensors").write_bytes(bytes(data))
    with pytest.raises(PianonotesError, match="sha256"):
        ckpt.load(tmp_path / "m")
    # mismatched architecture: strict loading refuses
    _save_random(tmp_path / "n")
    cfg = json.loads((tmp_path / "n.json").read_text())
    cfg["arch_config"]["hidden"] = 32
    (tmp_path / "n.json").write_text(json.dumps(cfg))
    with pytest.raises(PianonotesError, match="does not fit"):
        ckpt.load(tmp_path / "n")
    (tmp_path / "o.json").write_text("{not json")
    (tmp_path / "o.safetensors").write_bytes(b"")
    with pytest.raises(PianonotesError, match="corrupt"):
        ckpt.load(tmp_path / "o")
    with pytest.raises(PianonotesError, match="not found"):
        ckpt.load(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Two 6-second clips of a plain two-hand piece (no pedal); train and validation are the same audio:
    this is for overfitting."""
    if not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").exists():
        pytest.skip("fluid-soundfont-gm needed")
    from pianonotes.notes import write_midi
    from pianonotes.datasets.synth.augment import NO_AUGMENT
    from pianonotes.datasets.synth.dataset import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("tiny")
    midi = root / "midi"
    midi.mkdir()
    melody = [72, 74, 76, 77, 79, 77, 76, 74, 72, 71, 72, 76, 79, 84, 79, 76]
    notes = [Note(0.4 * i, 0.4 * i + 0.35, p, 90) for i, p in enumerate(melody * 2)]
    notes += [Note(1.6 * i, 1.6 * i + 1.4, p, 70) for i in range(8) for p in ((48, 55), (53, 57), (43, 50), (48, 52))[i % 4]]
    write_midi(midi / "piece.mid", notes)
    (midi / "manifest.csv").write_text("path,corpus,split,seconds,license\npiece.mid,tiny,validation,13,CC0\n")
    cfg = SynthConfig(hours=0.0, eval_minutes=0.1, splits=("validation",), shard_seconds=5.0, clip_seconds=(6.0, 6.0),
                      weights={"corpus": 1.0}, midi_dir=str(midi), soundfonts=("fluidr3",), seed=11, tempo=(1.0, 1.0),
                      transpose=0, augment=NO_AUGMENT)
    synthesize(root / "data", cfg)
    (root / "data" / "train").symlink_to(root / "data" / "validation")
    return root / "data"


def _cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), arch="audionet", max_steps=10, batch_size=4, window=60,
                save_every=1000, device="cpu", arch_config=dict(TINY), warmup_steps=5, seed=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
@needs_fluidsynth
def test_overfits_a_few_seconds(tiny_dataset, tmp_path):
    losses = []
    res = train(_cfg(tiny_dataset, tmp_path / "run", max_steps=800, lr=1e-2, warmup_steps=20,
                     arch_config={"channels": [8, 16], "hidden": 96, "dilations": [1, 2]}),
                on_event=lambda k, i: losses.append(i["loss"]) if k == "step" else None)
    assert losses[-1] < 0.5 * losses[0]
    assert res["metrics"]["note_f1"] > 0.9, res["metrics"]
    assert (tmp_path / "run" / "last.safetensors").exists() and (tmp_path / "run" / "metrics.jsonl").exists()


@needs_fluidsynth
def test_resume_continues_exactly(tiny_dataset, tmp_path):
    seen = {}

    def rec(run):
        return lambda k, i: seen.setdefault(run, {}).__setitem__(i["step"], i["loss"]) if k == "step" else None

    train(_cfg(tiny_dataset, tmp_path / "a", max_steps=20), on_event=rec("a"))
    train(_cfg(tiny_dataset, tmp_path / "b", max_steps=20, save_every=10),
          on_event=rec("b0"), stop=lambda: seen.get("b0", {}).get(10) is not None)
    train(_cfg(tiny_dataset, tmp_path / "b", max_steps=20), resume=str(tmp_path / "b" / "last"), on_event=rec("b1"))
    assert seen["b1"][20] == pytest.approx(seen["a"][20], rel=1e-5, abs=1e-7)


@needs_fluidsynth
def test_max_minutes_stops_training_and_saves_like_the_last_step(tiny_dataset, tmp_path):
    lrs = []
    res = train(_cfg(tiny_dataset, tmp_path / "run", max_steps=100000, max_minutes=0.05),
                on_event=lambda k, i: lrs.append(i["lr"]) if k == "step" else None)
    assert 0 < res["step"] < 100000
    conf = ckpt.read_config(tmp_path / "run" / "last")
    assert conf["step"] == res["step"] and "note_f1" in conf["metrics"]  # validated at the stop
    assert conf["train_config"]["max_minutes"] == 0.05


@needs_fluidsynth
def test_keep_from_keeps_each_save_for_averaging(tiny_dataset, tmp_path):
    """`train --keep-from 10 --save-every 5`: the weights of steps 10, 15 and 20 are kept beside last and
    best, and devtools.average makes one checkpoint of them."""
    from devtools.average import average_checkpoints

    train(_cfg(tiny_dataset, tmp_path / "run", max_steps=20, save_every=5, keep_from=10))
    kept = sorted(p.name for p in (tmp_path / "run").glob("step-*.json"))
    assert kept == ["step-000010.json", "step-000015.json", "step-000020.json"]
    assert not list((tmp_path / "run").glob("step-*-state*"))  # weights only, not resumable states
    conf = ckpt.read_config(tmp_path / "run" / "step-000015")
    assert conf["step"] == 15 and conf["train_config"]["keep_from"] == 10
    last = ckpt.read_config(tmp_path / "run" / "last")
    assert last["weights_sha256"] == ckpt.read_config(tmp_path / "run" / "step-000020")["weights_sha256"]
    avg = average_checkpoints(tmp_path / "avg", [tmp_path / "run" / k.removesuffix(".json") for k in kept])
    assert [a["step"] for a in ckpt.read_config(avg)["averaged_from"]] == [10, 15, 20]


@needs_fluidsynth
def test_string_resonance_trains_and_is_recorded(tiny_dataset, tmp_path):
    """`train --online-augment --string-resonance 0.5`: the windows get the open strings' resonance and the
    checkpoint says so (the recipe of a run is in its checkpoint)."""
    from pianonotes.datasets.synth.acoustics import build_room_bank

    rooms = build_room_bank(1, seed=0, path=tmp_path / "rooms.npz")
    res = train(_cfg(tiny_dataset, tmp_path / "run", max_steps=3, online_augment=True, rooms=str(rooms),
                     string_resonance=0.5))
    assert res["step"] == 3
    conf = ckpt.read_config(tmp_path / "run" / "last")
    assert conf["data"]["online_augment"]["resonance_p"] == 0.5
    assert conf["train_config"]["string_resonance"] == 0.5


@needs_fluidsynth
def test_stop_at_step_keeps_the_schedule_and_a_resume_may_change_it(tiny_dataset, tmp_path):
    from pianonotes.training.train import _lr_at

    lrs = {}
    res = train(_cfg(tiny_dataset, tmp_path / "run", max_steps=40, stop_at_step=20),
                on_event=lambda k, i: lrs.__setitem__(i["step"], i["lr"]) if k == "step" else None)
    assert res["step"] == 20 and max(lrs) == 20
    assert lrs[20] == pytest.approx(_lr_at(19, 40, 1e-3, 5, True))  # the 40-step schedule, cut at 20
    conf = ckpt.read_config(tmp_path / "run" / "last")
    assert conf["step"] == 20 and "note_f1" in conf["metrics"]
    # resumed with a shorter schedule: the rest of the run anneals over 30 steps instead of 40
    res = train(_cfg(tiny_dataset, tmp_path / "run", max_steps=30), resume=str(tmp_path / "run" / "last"),
                on_event=lambda k, i: lrs.__setitem__(i["step"], i["lr"]) if k == "step" else None)
    assert res["step"] == 30 and lrs[30] == pytest.approx(_lr_at(29, 30, 1e-3, 5, True))
    assert ckpt.read_config(tmp_path / "run" / "last")["resumed_at"] == [20]


def test_the_cosine_decay_follows_the_clock_when_it_runs_out_first():
    from pianonotes.training.train import _lr_at

    assert _lr_at(100, 100000, 1.0, 10, True) == pytest.approx(1.0, abs=1e-3)  # by steps: barely begun
    assert _lr_at(100, 100000, 1.0, 10, True, time_done=0.5) == pytest.approx(0.525)  # by the clock: half-way
    assert _lr_at(100, 100000, 1.0, 10, True, time_done=1.0) == pytest.approx(0.05)
    assert _lr_at(5, 100000, 1.0, 10, True, time_done=0.9) == pytest.approx(0.6)  # warm-up stays warm-up


@needs_fluidsynth
def test_a_resumed_run_keeps_its_warm_start_and_says_where_it_was_resumed(tiny_dataset, tmp_path):
    train(_cfg(tiny_dataset, tmp_path / "a", max_steps=4))
    steps = []
    cfg = _cfg(tiny_dataset, tmp_path / "b", max_steps=20, save_every=10, init_from=str(tmp_path / "a" / "last"))
    train(cfg, on_event=lambda k, i: steps.append(i["step"]) if k == "step" else None,
          stop=lambda: 10 in steps)
    assert ckpt.read_config(tmp_path / "b" / "last")["warm_start"]["copied"] > 0
    train(cfg, resume=str(tmp_path / "b" / "last"))
    conf = ckpt.read_config(tmp_path / "b" / "last")
    assert conf["step"] == 20 and conf["resumed_at"] == [10]
    assert conf["warm_start"]["from"] == str(tmp_path / "a" / "last.json")


@needs_fluidsynth
@pytest.mark.parametrize("arch", ["seed-mlp", "linear"])
def test_seed_baselines_train(tiny_dataset, tmp_path, arch):
    res = train(_cfg(tiny_dataset, tmp_path / arch, arch=arch, max_steps=20, window=16, batch_size=1, arch_config={}))
    model, cfg = ckpt.load(tmp_path / arch / "last")
    assert cfg["arch"] == arch and cfg["arch_config"]["n_classes"] >= 2
    assert "note_f1" in res["metrics"]


@pytest.mark.slow
@needs_fluidsynth
def test_ddp_two_cpu_processes_match_single_process(tiny_dataset, tmp_path):
    """torchrun with 2 gloo processes of batch 2 == one process of batch 4 (the seed's perceptron: no
    BatchNorm or dropout, so the only difference is float summation order)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--data", str(tiny_dataset), "--arch", "linear", "--window", "16", "--device", "cpu",
              "--save-every", "1000", "--lr", "0.5"]
    cli = [sys.executable, "-m", "pianonotes", "train"]
    import socket

    with socket.socket() as sock:  # a free port, not a fixed one another run may hold (or leave in TIME_WAIT)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                "-m", "pianonotes", "train"]
    runs = {"init": cli + common + ["--max-steps", "0", "--out", str(tmp_path / "init")],
            "ddp": torchrun + common + ["--max-steps", "5", "--batch-size", "2", "--out", str(tmp_path / "ddp")],
            "one": cli + common + ["--max-steps", "5", "--batch-size", "4", "--out", str(tmp_path / "one")]}
    for name, cmd in runs.items():
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, (name, p.stdout[-1000:], p.stderr[-2000:])
    w = {}
    for name in runs:
        m, cfg = ckpt.load(tmp_path / name / "last")
        w[name] = torch.cat([q.flatten() for q in m.parameters()])
    moved = torch.norm(w["one"] - w["init"])
    assert moved > 1e-3
    assert torch.norm(w["ddp"] - w["one"]) < 0.02 * moved
