"""The seed's experiment, made meaningful (issue 12, item 6).

The seed (a student project) classified one spectrogram column at a time into one of the key
combinations seen in training and reported 72.32 % exact-frame accuracy (its perceptron: 21.04 %) on a
split *by frame*: all frames pooled and split 60/20/20 at random, so frames of the same piece, a few
milliseconds apart, sit on both sides. This tool measures what that protocol is worth, on the project's
data, front end and metrics:

* protocol ``frames`` (the seed's): the frames of the chosen training pieces pooled and split 60/20/20 at
  random by frame (train / validation / test); scored on the 20 % test frames;
* protocol ``pieces``: the same trained models scored on other pieces (the dataset's validation split).

Each model is trained once, on the 60 % training frames, so both protocols have the same training frames
and differ only in what is tested. Models: the seed's MLP (300-1000-600-300, softmax over the training
key combinations) with the seed's recipe (plain SGD, lr 0.01, batches of 16 random frames) and with Adam
(the seed's own lesson), the seed's perceptron (SGD), and AudioNet (a small budget; its loss masked to
the training frames: the windows it reads contain test frames as audio context, never as labels).
Metrics: the seed's exact-frame accuracy (predicted key set == true key set, per 20 ms frame; a
combination model predicts the key set of its arg-max class, AudioNet the keys above the frame threshold)
and note-onset F1 (mir_eval, 50 ms; the project's decoder on the model's frame and onset probabilities).
Under the frame protocol a note counts where its onset frame is a test frame (reference notes for recall,
decoded notes for precision); matching runs over the whole recording, as in ``pianonotes.training.metrics``.
Also measured, without any model: the share of test frames that are silence, the share whose key set is in
the training vocabulary (the ceiling of a combination model), and the exact-frame accuracy of copying the
label of the nearest training frame of the same recording (possible only under the frame split).

Run: ``python -m devtools.seed_experiment --data DIR --out models/seed_experiment`` (writes
``.json`` and ``.md``); ``make seed-experiment``. One torch thread; about 25 minutes on the 2-core
machine with the defaults. The dataset is only read (a feature cache goes to ``--feature-cache``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.datasets.recordings import Recording, _notes_from_json, frontend_key, key_and_pedal_targets, targets_from_notes
from pianonotes.training.batches import ComboLookup, WindowSampler, batch_arrays, combo_vocab

TRAIN, VAL, TEST = 0, 1, 2

MODELS = {
    "seed-mlp-sgd": "seed MLP, SGD (the seed's recipe)",
    "seed-mlp-adam": "seed MLP, Adam",
    "perceptron-sgd": "seed perceptron, SGD",
    "audionet": "AudioNet (small budget, masked loss)",
}


@dataclasses.dataclass
class ExperimentConfig:
    data: str
    out: str = "models/seed_experiment"
    hours: float = 1.0  # audio of the training pieces pooled for the frame split
    train_split: str = "train"
    test_split: str = "validation"  # the unseen pieces of the piece protocol
    test_hours: float | None = None  # None: the whole test split
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0
    max_classes: int = 35531  # the seed's vocabulary bound
    batch_frames: int = 16  # the seed's batch
    sgd_lr: float = 0.01  # the seed's
    adam_lr: float = 1e-3
    steps: dict = dataclasses.field(default_factory=lambda: {
        "seed-mlp-sgd": 40000, "seed-mlp-adam": 8000, "perceptron-sgd": 10000, "audionet": 1500})
    audionet_batch: int = 8  # windows per step
    audionet_window: int = 200  # output frames per window
    audionet_lr: float = 2e-3
    audionet_config: dict = dataclasses.field(default_factory=dict)
    curve_points: int = 5  # validation-frame checks during training
    curve_frames: int = 4000  # validation frames per check
    threads: int = 1
    feature_cache: str | None = None  # where computed features are kept (never inside the dataset)
    models: tuple[str, ...] = tuple(MODELS)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# ------------------------------------------------------------------------------------------------ data
def load_pieces(root: str | os.PathLike, split: str, frontend, *, seconds: float | None = None, seed: int = 0,
                shuffle: bool = False, feature_cache: str | os.PathLike | None = None) -> list[Recording]:
    """Recordings (features + targets) of the shards of ``root/split``, in a seeded random order when
    ``shuffle``, until ``seconds`` of audio. Features come from the dataset's own cache when it has them
    (read only), else from ``feature_cache``, else they are computed (and stored in ``feature_cache``)."""
    from pianonotes.audio import load_audio
    from pianonotes.notes import PedalEvent

    root = Path(root)
    files = sorted((root / split).glob("shard-*.json"))
    if not files:
        raise PianonotesError(f"no shards in {root / split}; make a dataset with `pianonotes data synth`")
    if shuffle:
        files = [files[i] for i in np.random.default_rng([seed, 7]).permutation(len(files))]
    key = frontend_key(frontend)
    own = root / ".cache" / f"features-{key}" / split
    scratch = Path(feature_cache) / f"features-{key}" / split if feature_cache else None
    recs, total = [], 0.0
    for js in files:
        labels = json.loads(js.read_text())
        notes = _notes_from_json(labels["notes"])
        pedals = [PedalEvent(float(a), float(b)) for a, b in labels.get("pedals", []) if float(b) > float(a)]
        feats = None
        for cand in (own / (js.stem + ".npy"), scratch / (js.stem + ".npy") if scratch else None):
            if cand is not None and cand.exists():
                feats = np.load(cand)
                break
        if feats is None:
            feats = frontend(load_audio(js.with_suffix(".flac"), frontend.sample_rate)).astype(np.float16)
            if scratch is not None:
                scratch.mkdir(parents=True, exist_ok=True)
                tmp = scratch / (js.stem + ".tmp.npy")
                np.save(tmp, feats)
                os.replace(tmp, scratch / (js.stem + ".npy"))
        frame, onset, vel = targets_from_notes(notes, len(feats), frontend.fps)
        keyd, ped = key_and_pedal_targets(notes, pedals, len(feats), frontend.fps)
        recs.append(Recording(f"{split}/{js.stem}", feats, frame, onset, vel, notes, keyd, ped, pedals))
        total += len(feats) / frontend.fps
        if seconds is not None and total >= seconds:
            break
    return recs


def frame_split(lengths: Sequence[int], fractions=(0.6, 0.2, 0.2), seed: int = 0) -> list[np.ndarray]:
    """The seed's split: every frame of every recording pooled, shuffled, and cut into train (0),
    validation (1) and test (2) in ``fractions``. Returns one int8 array per recording."""
    f = np.asarray(fractions, float)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1) > 1e-6:
        raise PianonotesError(f"split fractions must be three shares summing to 1, got {fractions}")
    n = int(sum(lengths))
    perm = np.random.default_rng([seed, 60, 20, 20]).permutation(n)
    n_train, n_val = int(round(f[0] * n)), int(round(f[1] * n))
    lab = np.full(n, TEST, np.int8)
    lab[perm[:n_train]] = TRAIN
    lab[perm[n_train:n_train + n_val]] = VAL
    return list(np.split(lab, np.cumsum(lengths)[:-1])) if len(lengths) else []


def nearest_train_label_accuracy(recs: Sequence[Recording], splits: Sequence[np.ndarray], part: int = TEST) -> float:
    """Exact-frame accuracy of copying, for each ``part`` frame, the key set of the nearest training
    frame of the same recording (no audio used): what the labels alone give away under a frame split."""
    correct = total = 0
    for rec, sp in zip(recs, splits):
        tr = np.nonzero(sp == TRAIN)[0]
        te = np.nonzero(sp == part)[0]
        if not len(te):
            continue
        total += len(te)
        if not len(tr):
            continue
        j = np.clip(np.searchsorted(tr, te), 1, len(tr) - 1) if len(tr) > 1 else np.zeros(len(te), int)
        if len(tr) > 1:
            left, right = tr[j - 1], tr[j]
            src = np.where(np.abs(te - left) <= np.abs(right - te), left, right)
        else:
            src = np.full(len(te), tr[0])
        correct += int(np.all(rec.frame[src] == rec.frame[te], axis=1).sum())
    return correct / total if total else float("nan")


# ------------------------------------------------------------------------------------------------ losses
def masked_audionet_loss(res: dict, frame, onset, velocity, mask, *, onset_weight: float = 3.0,
                         onset_pos_weight: float = 5.0):
    """train.py's AudioNet loss (onset BCE with weighted positives, frame BCE, velocity MSE at onsets),
    averaged over the frames where ``mask`` (B, T) is 1 only: the other frames contribute nothing, not
    even to the gradient. Returns (loss, parts)."""
    import torch
    from torch.nn import functional

    m = mask.float().unsqueeze(-1)  # (B, T, 1)
    denom = (m.sum() * frame.shape[-1]).clamp(min=1)
    pw = torch.tensor(onset_pos_weight, device=frame.device)
    l_on = (functional.binary_cross_entropy_with_logits(res["onset"].float(), onset, pos_weight=pw, reduction="none") * m).sum() / denom
    l_fr = (functional.binary_cross_entropy_with_logits(res["frame"].float(), frame, reduction="none") * m).sum() / denom
    w = onset * m
    l_ve = ((res["velocity"].float() - velocity) ** 2 * w).sum() / w.sum().clamp(min=1)
    loss = onset_weight * l_on + l_fr + 0.5 * l_ve
    return loss, {"onset": l_on.item(), "frame": l_fr.item(), "velocity": l_ve.item()}


# ------------------------------------------------------------------------------------------------ models
def _combo_frames(recs, splits, part: int) -> tuple[np.ndarray, np.ndarray]:
    xs = [r.features[sp == part] for r, sp in zip(recs, splits)]
    ys = [r.frame[sp == part] for r, sp in zip(recs, splits)]
    x = np.concatenate(xs).astype(np.float32) if xs else np.zeros((0, 1), np.float32)
    y = np.concatenate(ys) if ys else np.zeros((0, constants.N_KEYS), np.uint8)
    return x, y


def train_combo(model, opt, x: np.ndarray, y: np.ndarray, *, steps: int, batch: int, seed: int,
                curve: Callable[[], dict] | None = None, curve_points: int = 5) -> list[dict]:
    """The seed's training: epochs of shuffled frames in batches of ``batch``, cross entropy over the
    classes. Returns the loss curve: one row per ``steps / 20`` steps, with ``curve()`` at
    ``curve_points`` evenly spaced steps."""
    import torch
    from torch.nn import functional

    model.train()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng([seed, 16])
    every = max(1, steps // 20)
    checks = {int(round(steps * (i + 1) / curve_points)) for i in range(curve_points)} if curve else set()
    rows, acc, t0 = [], [], time.time()
    order, pos, step = rng.permutation(len(x)), 0, 0
    while step < steps:
        if pos >= len(order):
            order, pos = rng.permutation(len(x)), 0
        idx = torch.from_numpy(order[pos:pos + batch])
        pos += batch
        loss = functional.cross_entropy(model.net(xt[idx]), yt[idx], ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        acc.append(loss.item())
        if step % every == 0 or step == steps:
            row = {"step": step, "loss": float(np.mean(acc)), "seconds": round(time.time() - t0, 1)}
            acc = []
            if step in checks:
                model.eval()
                row.update(curve())
                model.train()
            rows.append(row)
    model.eval()
    return rows


def train_audionet(model, recs, masks, *, steps: int, batch: int, window: int, lr: float, seed: int,
                   weight_decay: float = 1e-4, warmup: int = 50) -> list[dict]:
    """AudioNet with train.py's loss and schedule shape (AdamW, linear warm-up, cosine to 5 %), its loss
    masked to the frames where ``masks[r]`` is true. Returns the loss curve."""
    import torch

    past, future = int(model.past), int(model.future)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sampler = WindowSampler(recs, window, seed)
    model.train()
    rows, acc, t0 = [], [], time.time()
    every = max(1, steps // 20)
    step, epoch = 0, 0
    while step < steps:
        order = sampler.epoch(epoch)
        epoch += 1
        for i in range(0, len(order), batch):
            if step >= steps:
                break
            pos = order[i:i + batch]
            b = batch_arrays(recs, pos, window, past, future)
            m = np.zeros((len(pos), window), np.float32)
            for j, (r, s) in enumerate(pos):
                e = min(int(s) + window, recs[int(r)].n_frames)
                m[j, : e - int(s)] = masks[int(r)][int(s):e]
            if m.sum() == 0:
                continue
            if step < warmup:
                cur = lr * (step + 1) / warmup
            else:
                prog = min(1.0, (step - warmup) / max(1, steps - warmup))
                cur = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))
            for g in opt.param_groups:
                g["lr"] = cur
            res = model(torch.from_numpy(b["x"]))
            loss, parts = masked_audionet_loss(res, *(torch.from_numpy(b[k]) for k in ("frame", "onset", "velocity")),
                                               torch.from_numpy(m))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            opt.step()
            step += 1
            acc.append(loss.item())
            if step % every == 0 or step == steps:
                rows.append({"step": step, "loss": float(np.mean(acc)), "seconds": round(time.time() - t0, 1), **parts})
                acc = []
    model.eval()
    return rows


# ------------------------------------------------------------------------------------------------ predictions
def predict(model, feats: np.ndarray, *, chunk: int = 2000) -> dict[str, np.ndarray]:
    """Per-frame outputs of a model on a whole recording: ``frame``, ``onset``, ``velocity``
    probabilities (T, 88) and ``keys`` (T, 88) bool, the predicted key set (a combination model: its
    arg-max class; AudioNet: frame probability >= the frame threshold)."""
    import torch

    from pianonotes.engine import infer_features

    feats = np.asarray(feats, np.float32)
    model.eval()
    if getattr(model, "kind", "") != "combo":
        probs = infer_features(model, feats)
        return dict(probs, keys=probs["frame"] >= constants.FRAME_THRESHOLD)
    vocab = model.vocab.cpu().numpy() > 0.5
    fr, on, keys = [], [], []
    padded = np.concatenate([np.zeros((model.past, feats.shape[1]), np.float32), feats])
    with torch.inference_mode():
        for a in range(0, len(feats), chunk):
            b = min(a + chunk, len(feats))
            out = model(torch.from_numpy(padded[a: b + model.past])[None])
            fr.append(torch.sigmoid(out["frame"][0]).numpy())
            on.append(torch.sigmoid(out["onset"][0]).numpy())
            # out["logits"] (class 0 = silence) drops the context frame: one row per output frame
            keys.append(vocab[out["logits"][0].argmax(-1).numpy()])
    frame, onset = np.concatenate(fr), np.concatenate(on)
    return {"frame": frame, "onset": onset, "velocity": np.zeros_like(frame), "keys": np.concatenate(keys)}


def note_counts(ref, est, fps: float, n_frames: int, mask: np.ndarray | None = None) -> dict[str, int]:
    """mir_eval note-onset matching (50 ms, pitch) over the whole recording; counts restricted to notes
    whose onset frame (round(onset * fps)) is in ``mask`` (all notes when None): n_ref, n_est,
    tp_ref (matched reference notes), tp_est (matched estimated notes)."""
    from pianonotes.training.metrics import _mir_eval

    def onset_frames(notes):
        return np.clip(np.round(np.array([n.onset for n in notes], float) * fps).astype(int), 0, max(n_frames - 1, 0))

    def sel(notes):
        if mask is None:
            return np.ones(len(notes), bool)
        return np.asarray(mask, bool)[onset_frames(notes)] if len(notes) else np.zeros(0, bool)

    rs, es = sel(ref), sel(est)
    matched_r, matched_e = np.zeros(len(ref), bool), np.zeros(len(est), bool)
    if len(ref) and len(est):
        mir_eval = _mir_eval()
        iv = lambda ns: np.array([[n.onset, n.offset] for n in ns], float)  # noqa: E731
        hz = lambda ns: 440.0 * 2 ** ((np.array([n.pitch for n in ns], float) - 69) / 12)  # noqa: E731
        for i, j in mir_eval.transcription.match_notes(iv(ref), hz(ref), iv(est), hz(est),
                                                       onset_tolerance=constants.ONSET_TOLERANCE, offset_ratio=None):
            matched_r[i] = matched_e[j] = True
    return {"n_ref": int(rs.sum()), "n_est": int(es.sum()), "tp_ref": int((matched_r & rs).sum()),
            "tp_est": int((matched_e & es).sum())}


def scores_from_counts(c: dict) -> dict[str, float]:
    """Exact-frame accuracy, note-onset P/R/F1 and frame P/R/F1 from pooled counts."""
    p = c["tp_est"] / c["n_est"] if c["n_est"] else (1.0 if c["n_ref"] == 0 else 0.0)
    r = c["tp_ref"] / c["n_ref"] if c["n_ref"] else 1.0
    fp_ = c["key_tp"] / (c["key_tp"] + c["key_fp"]) if c["key_tp"] + c["key_fp"] else 0.0
    fr_ = c["key_tp"] / (c["key_tp"] + c["key_fn"]) if c["key_tp"] + c["key_fn"] else 0.0
    return {"exact_frame_acc": c["exact"] / c["frames"] if c["frames"] else float("nan"),
            "note_p": p, "note_r": r, "note_f1": 2 * p * r / (p + r) if p + r else 0.0,
            "frame_p": fp_, "frame_r": fr_, "frame_f1": 2 * fp_ * fr_ / (fp_ + fr_) if fp_ + fr_ else 0.0,
            "frames": int(c["frames"]), "ref_notes": int(c["n_ref"]), "est_notes": int(c["n_est"]),
            "pred_silence": c["pred_silence"] / c["frames"] if c["frames"] else float("nan")}


def evaluate(model, recs: Sequence[Recording], masks: Sequence[np.ndarray | None], fps: float,
             *, file_mean: bool = False) -> dict[str, float]:
    """Scores of ``model`` on the frames where ``masks[r]`` is true (None: the whole recording), pooled
    over the recordings. ``file_mean`` adds the project's per-file note F1 (``metrics.transcription_scores``
    weighted by duration, as ``train.validate`` reports it), for whole recordings."""
    from pianonotes.decode import DecodeOptions, decode
    from pianonotes.training.metrics import aggregate, transcription_scores

    tot = dict.fromkeys(("frames", "exact", "n_ref", "n_est", "tp_ref", "tp_est", "key_tp", "key_fp", "key_fn",
                         "pred_silence"), 0)
    rows, weights = [], []
    for rec, mask in zip(recs, masks):
        out = predict(model, rec.features)
        est = decode(out["frame"], out["onset"], out["velocity"], fps=fps, options=DecodeOptions())
        sel = np.ones(rec.n_frames, bool) if mask is None else np.asarray(mask, bool)
        k, t = out["keys"][sel], rec.frame[sel].astype(bool)
        tot["frames"] += int(sel.sum())
        tot["exact"] += int(np.all(k == t, axis=1).sum())
        tot["pred_silence"] += int((~k.any(axis=1)).sum())
        tot["key_tp"] += int((k & t).sum())
        tot["key_fp"] += int((k & ~t).sum())
        tot["key_fn"] += int((~k & t).sum())
        for name, v in note_counts(rec.notes, est, fps, rec.n_frames, None if mask is None else sel).items():
            tot[name] += v
        if file_mean:
            rows.append(transcription_scores(rec.notes, est, rec.n_frames / fps))
            weights.append(rec.n_frames / fps)
    res = scores_from_counts(tot)
    if file_mean and rows:
        res["note_f1_file_mean"] = aggregate(rows, weights)["note_f1"]
    return res


def vocab_coverage(vocab: np.ndarray, frames: Sequence[np.ndarray]) -> float:
    """Share of the given frames whose key set is a class of the vocabulary."""
    look = ComboLookup(vocab)
    n = sum(len(f) for f in frames)
    hit = sum(int((look(f) >= 0).sum()) for f in frames if len(f))
    return hit / n if n else float("nan")


# ------------------------------------------------------------------------------------------------ experiment
def run_experiment(cfg: ExperimentConfig, *, on_event: Callable[[str, dict], None] | None = None) -> dict:
    """Load, split, train every model once, score it under both protocols; returns the report dict."""
    import torch

    from pianonotes.features.logspec import LogSpecFrontEnd
    from pianonotes.nn.archs import build

    emit = on_event or (lambda kind, info: None)
    torch.set_num_threads(max(1, int(cfg.threads)))
    torch.manual_seed(cfg.seed)
    unknown = [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise PianonotesError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    t_start = time.time()
    fe = LogSpecFrontEnd()
    fps = fe.fps
    pool = load_pieces(cfg.data, cfg.train_split, fe, seconds=cfg.hours * 3600, seed=cfg.seed, shuffle=True,
                       feature_cache=cfg.feature_cache)
    unseen = load_pieces(cfg.data, cfg.test_split, fe, feature_cache=cfg.feature_cache,
                         seconds=cfg.test_hours * 3600 if cfg.test_hours else None)
    emit("loaded", {"pool": len(pool), "unseen": len(unseen), "seconds": round(time.time() - t_start, 1)})
    splits = frame_split([r.n_frames for r in pool], cfg.fractions, cfg.seed)
    n_feat = pool[0].features.shape[1]

    train_frames = [r.frame[sp == TRAIN] for r, sp in zip(pool, splits)]
    vocab = combo_vocab([_Frames(np.concatenate(train_frames))], cfg.max_classes)
    lookup = ComboLookup(vocab)
    x_tr, y_tr_sets = _combo_frames(pool, splits, TRAIN)
    y_tr = lookup(y_tr_sets)
    x_va, y_va_sets = _combo_frames(pool, splits, VAL)
    crng = np.random.default_rng([cfg.seed, 4])
    cidx = crng.permutation(len(x_va))[: cfg.curve_frames]
    x_cv, y_cv = torch.from_numpy(x_va[cidx]), y_va_sets[cidx].astype(bool)
    test_frames = [r.frame[sp == TEST] for r, sp in zip(pool, splits)]
    unseen_frames = [r.frame for r in unseen]

    def silence_share(frames):
        n = sum(len(f) for f in frames)
        return sum(int((f.sum(1) == 0).sum()) for f in frames) / n if n else float("nan")

    report: dict = {
        "config": cfg.to_dict(),
        "data": {
            "dataset": str(Path(cfg.data).resolve()),
            "frontend": fe.to_dict(), "fps": fps, "n_features": int(n_feat),
            "pool_pieces": [r.name for r in pool], "unseen_pieces": [r.name for r in unseen],
            "pool_hours": round(sum(r.n_frames for r in pool) / fps / 3600, 3),
            "unseen_hours": round(sum(r.n_frames for r in unseen) / fps / 3600, 3),
            "frames": {"train": int(len(x_tr)), "validation": int(len(x_va)),
                       "test": int(sum(len(f) for f in test_frames)),
                       "unseen": int(sum(len(f) for f in unseen_frames))},
            "vocab_classes": int(len(vocab)), "uniform_loss": math.log(len(vocab)),
            "train_frames_outside_vocab": int((y_tr < 0).sum()),
        },
        "baselines": {
            "frames": {"silence_share": silence_share(test_frames), "in_vocab_share": vocab_coverage(vocab, test_frames),
                       "nearest_train_label_acc": nearest_train_label_accuracy(pool, splits, TEST)},
            "pieces": {"silence_share": silence_share(unseen_frames),
                       "in_vocab_share": vocab_coverage(vocab, unseen_frames)},
        },
        "models": {},
        "results": {"frames": {}, "pieces": {}, "pieces_trained": {}},
    }
    emit("split", report["data"]["frames"] | {"vocab": len(vocab)})

    # the piece protocol's own training: every frame of the training pieces, its own vocabulary
    all_frames = [r.frame for r in pool]
    vocab_p = combo_vocab([_Frames(np.concatenate(all_frames))], cfg.max_classes)
    lookup_p = ComboLookup(vocab_p)
    x_all = np.concatenate([r.features for r in pool]).astype(np.float32)
    y_all = lookup_p(np.concatenate(all_frames))
    uidx = crng.permutation(sum(len(f) for f in unseen_frames))[: cfg.curve_frames]
    x_cu = torch.from_numpy(np.concatenate([r.features for r in unseen]).astype(np.float32)[uidx])
    y_cu = np.concatenate(unseen_frames)[uidx].astype(bool)
    report["data"]["piece_training"] = {"frames": int(len(x_all)), "vocab_classes": int(len(vocab_p)),
                                        "uniform_loss": math.log(len(vocab_p)),
                                        "in_vocab_share_unseen": vocab_coverage(vocab_p, unseen_frames)}

    def curve(model, voc, xs, ys) -> Callable[[], dict]:
        vocab_b = voc.astype(bool)

        def f() -> dict:
            with torch.inference_mode():
                pred = model.net(xs).argmax(-1).numpy()
            return {"val_exact_frame_acc": float(np.all(vocab_b[pred] == ys, axis=1).mean()),
                    "val_pred_silence": float((pred == 0).mean())}
        return f

    def fit(name: str, steps: int, voc, x, y, masks, xs, ys):
        """One model trained from the same seed on one protocol's training data: (model, info, loss curve, s)."""
        t0 = time.time()
        torch.manual_seed(cfg.seed)
        if name == "audionet":
            model = build("audionet", n_feat, dict(cfg.audionet_config))
            hist = train_audionet(model, pool, masks, steps=steps, batch=cfg.audionet_batch,
                                  window=cfg.audionet_window, lr=cfg.audionet_lr, seed=cfg.seed)
            info = {"optimizer": "AdamW", "lr": cfg.audionet_lr, "batch": f"{cfg.audionet_batch} windows x "
                    f"{cfg.audionet_window} frames", "loss": "train.py's, masked to the training frames"}
        else:
            arch = "linear" if name.startswith("perceptron") else "seed-mlp"
            model = build(arch, n_feat, {"vocab": voc, "hidden": [300, 1000, 600, 300]})
            if name.endswith("adam"):
                opt = torch.optim.Adam(model.parameters(), lr=cfg.adam_lr)
                info = {"optimizer": "Adam", "lr": cfg.adam_lr}
            else:
                opt = torch.optim.SGD(model.parameters(), lr=cfg.sgd_lr)
                info = {"optimizer": "SGD", "lr": cfg.sgd_lr}
            info.update(batch=f"{cfg.batch_frames} random frames", loss="cross entropy over the classes")
            hist = train_combo(model, opt, x, y, steps=steps, batch=cfg.batch_frames, seed=cfg.seed,
                               curve=curve(model, voc, xs, ys), curve_points=cfg.curve_points)
        return model, info, hist, time.time() - t0

    for name in cfg.models:
        steps = int(cfg.steps[name])
        emit("train", {"model": name, "steps": steps, "protocol": "frames"})
        model, info, hist, t_train = fit(name, steps, vocab, x_tr, y_tr, [sp == TRAIN for sp in splits], x_cv, y_cv)
        emit("trained", {"model": name, "seconds": round(t_train, 1), "loss": hist[-1]["loss"] if hist else None})
        t1 = time.time()
        report["results"]["frames"][name] = evaluate(model, pool, [sp == TEST for sp in splits], fps)
        report["results"]["pieces"][name] = evaluate(model, unseen, [None] * len(unseen), fps, file_mean=True)
        t_eval = time.time() - t1
        emit("train", {"model": name, "steps": steps, "protocol": "pieces"})
        model_p, _, hist_p, t_train_p = fit(name, steps, vocab_p, x_all, y_all, [np.ones(r.n_frames, bool) for r in pool],
                                            x_cu, y_cu)
        report["results"]["pieces_trained"][name] = evaluate(model_p, unseen, [None] * len(unseen), fps,
                                                             file_mean=True)
        emit("scored", {"model": name, "frames": report["results"]["frames"][name]["exact_frame_acc"],
                        "pieces": report["results"]["pieces"][name]["exact_frame_acc"],
                        "pieces_trained": report["results"]["pieces_trained"][name]["exact_frame_acc"]})
        report["models"][name] = dict(info, label=MODELS[name], steps=steps,
                                      params=int(sum(p.numel() for p in model.parameters())),
                                      train_seconds=round(t_train, 1), eval_seconds=round(t_eval, 1),
                                      first_loss=hist[0]["loss"] if hist else None,
                                      last_loss=hist[-1]["loss"] if hist else None, curve=hist,
                                      piece_training={"train_seconds": round(t_train_p, 1),
                                                      "first_loss": hist_p[0]["loss"] if hist_p else None,
                                                      "last_loss": hist_p[-1]["loss"] if hist_p else None,
                                                      "curve": hist_p})
    report["wall_seconds"] = round(time.time() - t_start, 1)
    return report


class _Frames:
    """Just enough of a Recording for :func:`pianonotes.nn.data.combo_vocab`."""

    def __init__(self, frame: np.ndarray):
        self.frame = frame


# ------------------------------------------------------------------------------------------------ report
def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f} %"


def _f(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def markdown(rep: dict) -> str:
    """The report as a table and a few sentences, every number taken from ``rep``."""
    d, res, base = rep["data"], rep["results"], rep["baselines"]
    pt = d["piece_training"]
    lines = ["# The seed's experiment, made meaningful", "",
             "Generated by `python -m devtools.seed_experiment` (`make seed-experiment`); every number below "
             "is measured in this run (see `seed_experiment.json`).", "",
             f"Data: {d['pool_hours']:.2f} h of training pieces ({len(d['pool_pieces'])} shards of "
             f"`{rep['config']['train_split']}`, {d['frames']['train']} / {d['frames']['validation']} / "
             f"{d['frames']['test']} frames in the seed's random 60/20/20 frame split) and "
             f"{d['unseen_hours']:.2f} h of unseen pieces ({len(d['unseen_pieces'])} shards of "
             f"`{rep['config']['test_split']}`, {d['frames']['unseen']} frames). The project's front end "
             f"(20 ms frames, {d['n_features']} features). Every model is trained twice from the same seed: on "
             f"the frame split's {d['frames']['train']} training frames (scored on its test frames, and with the same "
             f"weights on the unseen pieces), and for the piece split on all {pt['frames']} frames of the training "
             f"pieces (scored on the unseen pieces). The combination models' softmax has {d['vocab_classes']} classes "
             f"under the frame split and {pt['vocab_classes']} under the piece split (the key sets of their training "
             f"frames; uniform-softmax loss {d['uniform_loss']:.2f} and {pt['uniform_loss']:.2f}).", "",
             "| model | frame split: exact-frame acc | frame split: note F1 | piece split: exact-frame acc "
             "| piece split: note F1 | unseen pieces, frame-split weights: exact-frame acc | note F1 |",
             "|---|---|---|---|---|---|---|"]
    for name, m in rep["models"].items():
        fr, pc, pt_ = res["frames"][name], res["pieces"][name], res["pieces_trained"][name]
        lines.append(f"| {m['label']} | {_pct(fr['exact_frame_acc'])} | {_f(fr['note_f1'])} | "
                     f"{_pct(pt_['exact_frame_acc'])} | {_f(pt_['note_f1'])} | "
                     f"{_pct(pc['exact_frame_acc'])} | {_f(pc['note_f1'])} |")
    bf, bp = base["frames"], base["pieces"]
    lines += [f"| no model: always silence | {_pct(bf['silence_share'])} | - | {_pct(bp['silence_share'])} | - | "
              f"{_pct(bp['silence_share'])} | - |",
              f"| no model: label of the nearest training frame | {_pct(bf['nearest_train_label_acc'])} | - | "
              "impossible (no frame of the piece in training) | - | - | - |",
              f"| ceiling of a combination model: test key set in the vocabulary | {_pct(bf['in_vocab_share'])} | - | "
              f"{_pct(pt['in_vocab_share_unseen'])} | - | {_pct(bp['in_vocab_share'])} | - |", "",
              "Exact-frame accuracy: the predicted key set equals the true (sounding) key set, per 20 ms frame. "
              "Note F1: note onsets within 50 ms (mir_eval), the project's decoder; under the frame split only "
              "notes whose onset frame is a test frame count. Seed's reported numbers (its own data, frame split): "
              "MLP 72.32 %, perceptron 21.04 %.", "",
              "Training (one torch thread):", "",
              "| model | optimizer | batch | steps | frame split: mean training loss, first -> last 5 % of the "
              f"steps (uniform: {d['uniform_loss']:.2f} for the softmax models) | predicts silence on its test frames "
              f"| piece split: loss (uniform: {pt['uniform_loss']:.2f}) | predicts silence on the unseen pieces "
              "| train s (frame + piece) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, m in rep["models"].items():
        p = m.get("piece_training", {})
        lines.append(f"| {m['label']} | {m['optimizer']} lr {m['lr']:g} | {m['batch']} | {m['steps']} | "
                     f"{_f(m['first_loss'])} -> {_f(m['last_loss'])} | {_pct(res['frames'][name]['pred_silence'])} | "
                     f"{_f(p.get('first_loss'))} -> {_f(p.get('last_loss'))} | "
                     f"{_pct(res['pieces_trained'][name]['pred_silence'])} | "
                     f"{m['train_seconds']:.0f} + {p.get('train_seconds', 0):.0f} |")
    lines += ["", "What the numbers say:", ""]
    lines += [f"- {s}" for s in explain(rep)]
    lines += ["", f"Wall time of the whole run: {rep['wall_seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def explain(rep: dict) -> list[str]:
    """Sentences computed from the measured numbers (comparisons chosen by the numbers, not written in)."""
    res, base = rep["results"], rep["baselines"]
    bf, bp = base["frames"], base["pieces"]
    out = [f"Under the seed's frame split, copying the key set of the nearest training frame of the same recording, "
           f"without looking at the audio, is right on {_pct(bf['nearest_train_label_acc'])} of the test frames: "
           f"a test frame's answer sits in the training labels a few frames away. Under the piece split no frame of "
           f"the piece is in training.",
           f"{_pct(bf['in_vocab_share'])} of the frame split's test frames have a key set seen in training (a "
           f"combination softmax can only be right on those), against {_pct(bp['in_vocab_share'])} of the unseen "
           f"pieces' frames; silence alone is {_pct(bf['silence_share'])} and {_pct(bp['silence_share'])}."]
    gaps = {}
    for name, m in rep["models"].items():
        fr, pc = res["frames"][name], res["pieces"][name]
        gap = 100 * (fr["exact_frame_acc"] - pc["exact_frame_acc"])
        gaps[name] = gap
        cmp_ = (f"{abs(gap):.2f} points {'higher' if gap > 0 else 'lower'} under the frame split" if abs(gap) >= 0.005
                else "the same under both")
        sil = f"; it predicts silence on {_pct(fr['pred_silence'])} of the test frames" if m["optimizer"] != "AdamW" else ""
        left = ""
        if m.get("first_loss") is not None and m["optimizer"] != "AdamW":
            u = rep["data"]["uniform_loss"]
            left = (f" (uniform softmax: {u:.2f}; the last loss is "
                    f"{'below' if m['last_loss'] < u else 'not below'} it)")
        out.append(f"{m['label']}: {m['steps']} steps, loss {_f(m['first_loss'])} -> {_f(m['last_loss'])}{left}{sil}. "
                   f"Exact-frame accuracy {_pct(fr['exact_frame_acc'])} on held-out frames of seen pieces, "
                   f"{_pct(pc['exact_frame_acc'])} on unseen pieces ({cmp_}); note F1 {_f(fr['note_f1'])} vs "
                   f"{_f(pc['note_f1'])}.")
    if gaps:
        hi = [n for n, g in gaps.items() if g > 0]
        what = ("every model" if len(hi) == len(gaps) else
                ", ".join(rep["models"][n]["label"] for n in hi) if hi else "no model")
        out.append(f"With the same weights, {what} scores a higher exact-frame accuracy on the frame split than on "
                   f"unseen pieces (differences: " + ", ".join(f"{rep['models'][n]['label']} {g:+.2f}"
                                                                for n, g in gaps.items()) + " points).")
        sep = {n: 100 * (res["frames"][n]["exact_frame_acc"] - res["pieces_trained"][n]["exact_frame_acc"])
               for n in rep["models"]}
        hi = [n for n, g in sep.items() if g > 0]
        what = ("every model" if len(hi) == len(sep) else
                ", ".join(rep["models"][n]["label"] for n in hi) if hi else "no model")
        out.append(f"Trained for each protocol on its own training data, {what} still scores a higher exact-frame "
                   f"accuracy under the frame split than under the piece split (differences: "
                   + ", ".join(f"{rep['models'][n]['label']} {g:+.2f}" for n, g in sep.items()) + " points); "
                   "the piece split's own training changes the unseen pieces' note F1 by "
                   + ", ".join(f"{rep['models'][n]['label']} "
                               f"{res['pieces_trained'][n]['note_f1'] - res['pieces'][n]['note_f1']:+.3f}"
                               for n in rep["models"]) + " against the frame-split weights.")
        best_f = max(rep["models"], key=lambda n: res["frames"][n]["exact_frame_acc"])
        cmp_b = "above" if bf["nearest_train_label_acc"] > res["frames"][best_f]["exact_frame_acc"] else "below"
        best_p = max(rep["models"], key=lambda n: res["pieces_trained"][n]["note_f1"])
        out.append(f"The label-copy baseline ({_pct(bf['nearest_train_label_acc'])}) is {cmp_b} the best trained "
                   f"model's frame-split accuracy ({rep['models'][best_f]['label']}, "
                   f"{_pct(res['frames'][best_f]['exact_frame_acc'])}): on a random frame split a score can come from "
                   f"the training pieces' labels alone, so the seed's 72.32 % (frame split, its own data) is not "
                   f"comparable with piece-split numbers such as the best note F1 on unseen pieces here "
                   f"({rep['models'][best_p]['label']}, {_f(res['pieces_trained'][best_p]['note_f1'])}).")
    return out


def write_report(rep: dict, out: str | os.PathLike) -> tuple[Path, Path]:
    from pianonotes.fileio import write_text_atomic

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    js, md = out.with_suffix(".json"), out.with_suffix(".md")
    write_text_atomic(js, json.dumps(rep, indent=1) + "\n")
    write_text_atomic(md, markdown(rep))
    return js, md


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.seed_experiment", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="rendered dataset (train and validation splits by piece)")
    ap.add_argument("--out", default="models/seed_experiment", help="output stem: writes STEM.json and STEM.md")
    ap.add_argument("--hours", type=float, default=1.0, help="audio of training pieces pooled for the frame split")
    ap.add_argument("--test-hours", type=float, default=None, help="of the unseen pieces (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", action="append", default=[], metavar="MODEL=N",
                    help=f"training steps of a model ({', '.join(MODELS)}); repeatable")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of the models")
    ap.add_argument("--feature-cache", default=None, help="folder for computed features (outside the dataset)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    cfg = ExperimentConfig(data=a.data, out=a.out, hours=a.hours, test_hours=a.test_hours, seed=a.seed,
                           feature_cache=a.feature_cache, threads=a.threads,
                           models=tuple(m.strip() for m in a.models.split(",") if m.strip()))
    for s in a.steps:
        k, _, v = s.partition("=")
        if k not in MODELS or not v.isdigit():
            print(f"error: --steps wants MODEL=N with MODEL one of {', '.join(MODELS)}", file=sys.stderr)
            return 1
        cfg.steps[k] = int(v)

    def show(kind, info):
        print(f"[{time.strftime('%H:%M:%S')}] {kind}: {json.dumps(info)}", file=sys.stderr, flush=True)

    try:
        rep = run_experiment(cfg, on_event=show)
    except PianonotesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    js, md = write_report(rep, cfg.out)
    print(f"wrote {js} and {md} ({rep['wall_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
