"""The seed's experiment tool (issue 12, item 6): the frame split, the masked loss, the restricted note
matching and a tiny end-to-end run on a synthetic dataset."""

import json

import numpy as np
import pytest

from pianonotes.errors import PianonotesError
from pianonotes.notes import Note
from devtools import seed_experiment as SE


def test_frame_split_is_disjoint_and_60_20_20():
    lengths = [100, 250, 37, 1]
    parts = SE.frame_split(lengths, (0.6, 0.2, 0.2), seed=3)
    assert [len(p) for p in parts] == lengths
    lab = np.concatenate(parts)
    n = sum(lengths)
    assert set(np.unique(lab)) <= {SE.TRAIN, SE.VAL, SE.TEST}  # one label per frame: the parts are disjoint
    assert (lab == SE.TRAIN).sum() == round(0.6 * n) and (lab == SE.VAL).sum() == round(0.2 * n)
    assert (lab == SE.TEST).sum() == n - round(0.6 * n) - round(0.2 * n)
    # random by frame: the frames of one recording land on every side
    assert {SE.TRAIN, SE.VAL, SE.TEST} <= set(np.unique(parts[1]))
    again = SE.frame_split(lengths, (0.6, 0.2, 0.2), seed=3)
    assert all((a == b).all() for a, b in zip(parts, again))
    other = SE.frame_split(lengths, (0.6, 0.2, 0.2), seed=4)
    assert any((a != b).any() for a, b in zip(parts, other))
    with pytest.raises(PianonotesError):
        SE.frame_split(lengths, (0.6, 0.3, 0.3))


def test_masked_loss_ignores_the_masked_frames():
    torch = pytest.importorskip("torch")
    from torch.nn import functional

    g = torch.Generator().manual_seed(0)
    B, T, K = 2, 12, 88
    res = {"onset": torch.randn(B, T, K, generator=g, requires_grad=True),
           "frame": torch.randn(B, T, K, generator=g, requires_grad=True),
           "velocity": torch.rand(B, T, K, generator=g, requires_grad=True)}
    frame = (torch.rand(B, T, K, generator=g) > 0.8).float()
    onset = (torch.rand(B, T, K, generator=g) > 0.95).float()
    vel = torch.rand(B, T, K, generator=g) * onset
    mask = torch.zeros(B, T)
    mask[:, ::3] = 1

    def grads(fr, on, ve):
        for v in res.values():
            v.grad = None
        loss, _ = SE.masked_audionet_loss(res, fr, on, ve, mask)
        loss.backward()
        return loss.item(), [v.grad.clone() for v in res.values()]

    l0, g0 = grads(frame, onset, vel)
    out = mask == 0  # rewrite every target of the masked-out frames: nothing may change
    fr2, on2, ve2 = frame.clone(), onset.clone(), vel.clone()
    fr2[out] = 1 - fr2[out]
    on2[out] = 1 - on2[out]
    ve2[out] = on2[out] * 0.7
    l1, g1 = grads(fr2, on2, ve2)
    assert l1 == pytest.approx(l0, rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    assert all(float(gr[out].abs().max()) == 0.0 for gr in g0[:2])
    fr3 = frame.clone()
    fr3[mask == 1] = 1 - fr3[mask == 1]  # a training frame's target does change the loss
    assert grads(fr3, onset, vel)[0] != pytest.approx(l0, rel=1e-6)
    # an all-ones mask is train.py's unmasked loss
    ones = torch.ones(B, T)
    full, _ = SE.masked_audionet_loss(res, frame, onset, vel, ones)
    ref = (3.0 * functional.binary_cross_entropy_with_logits(res["onset"], onset, pos_weight=torch.tensor(5.0))
           + functional.binary_cross_entropy_with_logits(res["frame"], frame)
           + 0.5 * ((res["velocity"] - vel) ** 2 * onset).sum() / onset.sum().clamp(min=1))
    assert full.item() == pytest.approx(ref.item(), rel=1e-5)


def _random_notes(rng, n, dur):
    out = []
    for _ in range(n):
        a = float(rng.uniform(0, dur - 1))
        out.append(Note(a, a + float(rng.uniform(0.1, 0.8)), int(rng.integers(40, 80)), 80))
    return sorted(out)


def test_note_counts_match_the_project_metric_and_respect_the_mask():
    from pianonotes.training.metrics import note_scores

    rng = np.random.default_rng(1)
    ref = _random_notes(rng, 40, 20.0)
    est = [Note(n.onset + float(rng.normal(0, 0.03)), n.offset, n.pitch, 80) for n in ref[:30]]
    est += _random_notes(rng, 8, 20.0)
    fps, T = 50.0, 1000
    c = SE.note_counts(ref, est, fps, T)
    assert c["n_ref"] == len(ref) and c["n_est"] == len(est) and c["tp_ref"] == c["tp_est"]
    s = SE.scores_from_counts(dict(c, frames=1, exact=0, key_tp=0, key_fp=0, key_fn=0, pred_silence=0))
    want = note_scores(ref, est)
    assert s["note_p"] == pytest.approx(want["note_p"]) and s["note_r"] == pytest.approx(want["note_r"])
    assert s["note_f1"] == pytest.approx(want["note_f1"])
    # restricted to the first half of the frames: notes starting later do not count on either side
    mask = np.zeros(T, bool)
    mask[: T // 2] = True
    h = SE.note_counts(ref, est, fps, T, mask)
    assert h["n_ref"] == sum(round(n.onset * fps) < T // 2 for n in ref)
    assert h["n_est"] == sum(round(n.onset * fps) < T // 2 for n in est)
    assert 0 < h["tp_ref"] <= h["n_ref"] < c["n_ref"]
    assert SE.note_counts(ref, est, fps, T, np.zeros(T, bool)) == {"n_ref": 0, "n_est": 0, "tp_ref": 0, "tp_est": 0}


class _Rec:
    def __init__(self, frame):
        self.frame = frame


def test_nearest_training_label_copies_the_closest_training_frame():
    frame = np.zeros((10, 88), np.uint8)
    frame[4:, 40] = 1  # the key set changes at frame 4
    split = np.array([0, 2, 2, 0, 2, 2, 0, 2, 2, 2], np.int8)
    # test frames 1 -> train 0, 2 -> 3 (silence: right); 4 -> 3 (silence: wrong); 5 -> 6 (right);
    # 7, 8, 9 -> 6 (right)
    acc = SE.nearest_train_label_accuracy([_Rec(frame)], [split])
    assert acc == pytest.approx(6 / 7)
    assert np.isnan(SE.nearest_train_label_accuracy([_Rec(frame)], [np.zeros(10, np.int8)]))


def _write_dataset(root, rng):
    """A tiny rendered-dataset layout: shard-N.flac (16 kHz, decaying harmonic tones) + shard-N.json."""
    import soundfile as sf

    sr = 16000
    for split, n in (("train", 3), ("validation", 2)):
        d = root / split
        d.mkdir(parents=True)
        for i in range(n):
            secs = 3.0
            t = np.arange(int(secs * sr)) / sr
            wav = np.zeros_like(t)
            rows = []
            for k in range(10):
                on = 0.25 * k + float(rng.uniform(0, 0.05))
                p = int(rng.choice([48, 52, 55, 60, 64, 67, 72]))
                off = on + 0.4
                f0 = 440.0 * 2 ** ((p - 69) / 12)
                seg = (t >= on) & (t < off + 0.1)
                tt = t[seg] - on
                wav[seg] += sum(0.2 / h * np.sin(2 * np.pi * h * f0 * tt) for h in (1, 2, 3)) * np.exp(-3 * tt)
                rows.append([on, off, p, 80, off])
            sf.write(d / f"shard-{i:05d}.flac", (wav / max(1.0, np.abs(wav).max())).astype(np.float32), sr)
            (d / f"shard-{i:05d}.json").write_text(json.dumps(
                {"split": split, "index": i, "sample_rate": sr, "seconds": secs, "notes": rows, "pedals": []}))


def test_tiny_end_to_end_run_writes_the_table(tmp_path):
    pytest.importorskip("torch")
    data = tmp_path / "data"
    _write_dataset(data, np.random.default_rng(0))
    cfg = SE.ExperimentConfig(data=str(data), out=str(tmp_path / "out" / "seed_experiment"), hours=1.0,
                              steps={"seed-mlp-sgd": 30, "seed-mlp-adam": 30, "perceptron-sgd": 30, "audionet": 4},
                              audionet_batch=2, audionet_window=40, curve_frames=200,
                              audionet_config={"channels": [4, 8], "hidden": 32, "dilations": [1]},
                              feature_cache=str(tmp_path / "cache"))
    events = []
    rep = SE.run_experiment(cfg, on_event=lambda k, i: events.append(k))
    assert not (data / ".cache").exists()  # the dataset is only read
    assert any((tmp_path / "cache").rglob("*.npy"))
    fr = rep["data"]["frames"]
    assert fr["train"] + fr["validation"] + fr["test"] == 3 * 150 and fr["unseen"] == 2 * 150
    assert fr["train"] == 270 and fr["validation"] == 90
    assert rep["data"]["vocab_classes"] >= 2
    for protocol in ("frames", "pieces", "pieces_trained"):
        assert set(rep["results"][protocol]) == set(SE.MODELS)
        for scores in rep["results"][protocol].values():
            for k in ("exact_frame_acc", "note_f1", "frame_f1", "pred_silence"):
                assert 0.0 <= scores[k] <= 1.0
    assert rep["results"]["frames"]["audionet"]["frames"] == fr["test"]
    assert rep["results"]["pieces"]["audionet"]["frames"] == fr["unseen"]
    assert "note_f1_file_mean" in rep["results"]["pieces"]["seed-mlp-adam"]
    # the piece split trains its own models on every frame of the training pieces
    pt = rep["data"]["piece_training"]
    assert pt["frames"] == 3 * 150 and pt["vocab_classes"] >= rep["data"]["vocab_classes"]
    assert rep["results"]["pieces_trained"]["audionet"]["frames"] == fr["unseen"]
    for name, m in rep["models"].items():
        p = m["piece_training"]
        assert p["curve"][-1]["step"] == cfg.steps[name] and p["train_seconds"] >= 0
    # different training data, different weights: the two piece-split scores are not one number copied
    assert any(rep["results"]["pieces_trained"][n]["exact_frame_acc"] != rep["results"]["pieces"][n]["exact_frame_acc"]
               or rep["models"][n]["piece_training"]["last_loss"] != rep["models"][n]["last_loss"] for n in SE.MODELS)
    assert 0.0 <= rep["baselines"]["frames"]["nearest_train_label_acc"] <= 1.0
    for name, m in rep["models"].items():
        assert m["steps"] == cfg.steps[name] and m["curve"][-1]["step"] == cfg.steps[name]
    assert any("val_exact_frame_acc" in row for row in rep["models"]["seed-mlp-adam"]["curve"])
    js, md = SE.write_report(rep, cfg.out)
    back = json.loads(js.read_text())
    assert back["results"]["pieces"]["audionet"]["note_f1"] == rep["results"]["pieces"]["audionet"]["note_f1"]
    text = md.read_text()
    assert "| model | frame split: exact-frame acc" in text
    for label in (m["label"] for m in rep["models"].values()):
        assert label in text
    assert f"{100 * rep['results']['frames']['seed-mlp-adam']['exact_frame_acc']:.2f} %" in text
    assert f"{100 * rep['results']['pieces_trained']['seed-mlp-adam']['exact_frame_acc']:.2f} %" in text
    assert "Trained for each protocol on its own training data" in text


def test_main_rejects_a_bad_steps_option(capsys):
    assert SE.main(["--data", "/nonexistent", "--steps", "nosuch=3"]) == 1
    assert "MODEL=N" in capsys.readouterr().err
