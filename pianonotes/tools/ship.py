"""Turn a training run's checkpoint into the shipped model: calibrate, evaluate, write the model card.

    python -m pianonotes.tools.ship RUN/best models/audionet --eval DATASET [--eval DATASET ...]
        [--baseline NAME=CKPT ...]

1. Decoding thresholds are tuned on the training dataset's *validation* split (never the test split)
   and stored in the checkpoint's config.
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


def calibrate(transcriber, recs, fps: float) -> tuple[dict, float]:
    from pianonotes.decode import DecodeOptions, decode
    from pianonotes.metrics import aggregate, note_scores

    probs = [transcriber.infer_features(r.features.astype(np.float32)) for r in recs]
    best, best_f = None, -1.0
    for on in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        for fr in (0.3, 0.4, 0.5, 0.6):
            opt = DecodeOptions(on, fr)
            rows = []
            for r, p in zip(recs, probs):
                est = decode(p["frame"], p["onset"], p["velocity"], fps=fps, options=opt)
                s = note_scores(r.notes, est)
                rows.append({"f": s["note_f1"] + 0.5 * s["note_off_f1"]})
            f = aggregate(rows, [r.n_frames for r in recs])["f"]
            if f > best_f:
                best, best_f = opt, f
    return dataclasses.asdict(best), best_f


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

    out = ckpt.save(dest, model, cfg)
    ckpt.export_onnx(out, model=model)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("dest")
    ap.add_argument("--eval", action="append", default=[])
    ap.add_argument("--baseline", action="append", default=[], help="NAME=CHECKPOINT")
    ap.add_argument("--no-calibrate", action="store_true")
    args = ap.parse_args(argv)

    from pianonotes.evaluate import evaluate
    from pianonotes.nn import checkpoint as ckpt
    from pianonotes.nn import data as D
    from pianonotes.transcribe import Transcriber

    model, cfg = ckpt.load(args.checkpoint)  # the weights to ship; everything below runs the ONNX export
    dest = Path(args.dest)
    dest = dest.with_suffix("") if dest.suffix in (".json", ".safetensors", ".onnx") else dest
    tmp = dest.with_name(dest.name + "-shipping")  # no dot: a suffix would be taken for the file type
    cfg["metrics"] = {}
    try:
        ship(model, cfg, tmp)
        tr = Transcriber.from_checkpoint(tmp, device="cpu", backend="onnx")
        if not args.no_calibrate:
            val = D.load_split(cfg["data"]["dataset"], "validation", tr.frontend)
            cfg["decode"], f = calibrate(tr, val, tr.frontend.fps)
            cfg["calibration"] = {"split": "validation", "score": round(f, 4),
                                  "objective": "note F1 + 0.5 note-with-offset F1"}
            ship(model, cfg, tmp)
            tr = Transcriber.from_checkpoint(tmp, device="cpu", backend="onnx")
        results = {"audionet": {}}
        baselines = dict(b.split("=", 1) for b in args.baseline)
        for ds in args.eval:
            name = Path(ds).name
            results["audionet"][name] = evaluate(tmp, [ds], split="test", device="cpu")["overall"]
            for bname, bpath in baselines.items():
                results.setdefault(bname, {})[name] = evaluate(bpath, [ds], split="test", device="cpu")["overall"]
        cfg["metrics"] = {"test": results["audionet"], "x_real_time_2_cores": round(speed(tr), 1),
                          "onnx_max_abs_diff": float(f"{onnx_parity(tmp):.3g}")}
    finally:
        for suffix in (".json", ".safetensors", ".onnx"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
    out = ship(model, cfg, dest)
    card = dest.parent / "MODEL_CARD.md"
    base_cfgs = {name: ckpt.read_config(path) for name, path in baselines.items()}
    write_card(card, cfg, results, base_cfgs)
    print(json.dumps({"checkpoint": str(out), "onnx": str(out.with_suffix(".onnx")), "metrics": cfg["metrics"],
                      "baselines": results}, indent=1))


def _fmt(m: dict | None, key: str) -> str:
    return f"{m[key]:.3f}" if m and key in m else "-"


def write_card(path: Path, cfg: dict, results: dict, baselines: dict | None = None) -> None:
    data = cfg["data"]
    syn = data.get("synth_config", {})
    tc = cfg["train_config"]
    lines = [
        "# AudioNet model card (the checkpoint shipped with pianonotes)",
        "",
        "Generated by `python -m pianonotes.tools.ship` (run by `make model`). Numbers below are measured,",
        "not goals.",
        "",
        "## Model",
        f"- Architecture: `{cfg['arch']}` {cfg.get('arch_config') or ''}; front end `{cfg['frontend']['name']}` "
        f"({cfg['n_features']} log-frequency bands, {cfg['fps']:.0f} frames/s); look-ahead "
        f"{cfg['lookahead_seconds'] * 1000:.0f} ms; context {cfg['past_frames']} past frames.",
        f"- Outputs per frame: 88 key-down, 88 onset, 88 velocity. Decoding thresholds (calibrated on the validation "
        f"split): onset {cfg['decode']['onset_threshold']}, frame {cfg['decode']['frame_threshold']}, "
        f"minimum note {cfg['decode']['min_note_seconds']} s.",
        "",
        "## Data",
        f"- Synthetic renders made with `pianonotes data synth` (seed {syn.get('seed')}): {data.get('train_hours')} h of "
        "training audio from the piano MIDI corpus (POP909 and piano-midi.de, their fixed piece-level splits), "
        "music21's corpus folded into piano range, and generated textures covering all 88 keys.",
        f"- Soundfonts (FluidSynth): {', '.join(data.get('soundfonts', []))}; piano programs 0-2. The csound piano is "
        "held out of training; the MuseScore General piano is reserved for evaluation.",
        f"- Augmentation: {json.dumps(syn.get('augment', {}))}",
        f"- Performance variation: tempo x{syn.get('tempo')}, transposition +-{syn.get('transpose')} semitones, "
        "velocity scaling and jitter; sustain pedal kept (labels follow the MAESTRO convention).",
        f"- Licenses: {'; '.join(data.get('licenses', []))}.",
        f"- Attribution: {data.get('attribution', '')}",
        "",
        "## Recipe",
        f"- `pianonotes train --arch {tc['arch']} --max-steps {tc['max_steps']} --batch-size {tc['batch_size']} "
        f"--window {tc['window']}`: AdamW lr 1e-3, cosine schedule with {tc['warmup_steps']} warm-up steps, "
        f"onset loss weight {tc.get('onset_weight')}, onset positive weight {tc.get('onset_pos_weight')}, on the CPU "
        f"(2 cores); step {cfg.get('step')}.",
        "",
        "## Metrics on the test split (pieces never seen in training)",
        "",
        "mir_eval note onset F1 (50 ms), note-with-offset F1, frame F1 and the seed's exact-frame accuracy (50 ms frames).",
        "",
        "| model | test set | note F1 | note P | note R | note+offset F1 | frame F1 | exact-frame acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model_name, per in results.items():
        for ds, m in per.items():
            lines.append(f"| {model_name} | {ds} | {_fmt(m, 'note_f1')} | {_fmt(m, 'note_p')} | {_fmt(m, 'note_r')} | "
                         f"{_fmt(m, 'note_off_f1')} | {_fmt(m, 'frame_f1')} | {_fmt(m, 'exact_frame_acc')} |")
    for name, bc in (baselines or {}).items():
        btc = bc["train_config"]
        frames = (bc.get("step") or 0) * btc["batch_size"] * btc["window"]
        lines.append(
            f"\n`{name}`: the seed's recipe on the same training data (one frame in, softmax over the "
            f"{bc['arch_config'].get('n_classes')} most frequent key combinations, SGD lr {btc.get('lr') or 0.01}, "
            f"{btc['batch_size'] * btc['window']} frames per step) for {bc.get('step')} steps ({frames:,} frames, "
            f"{frames / (cfg['data'].get('train_hours', 1) * 3600 * cfg['fps']):.1%} of one epoch).")
    if baselines:
        lines.append(
            "\nWithin that CPU budget the seed's models have not left the uniform softmax: they predict silence "
            "(no notes), so their exact-frame accuracy is the share of silent frames. The seed's 72.32 % was "
            "measured on MSMD split by frame (the same pieces in training and validation) with many more epochs.")
    lines += [
        "",
        f"Inference speed (front end + network + decoding on ONNX Runtime, start-up excluded, 2 CPU cores): "
        f"{cfg['metrics']['x_real_time_2_cores']}x real time. ONNX export (`audionet.onnx`, opset 17) against "
        f"PyTorch: largest probability difference {cfg['metrics'].get('onnx_max_abs_diff', '-')}.",
        "",
        "Test sets: `synth-v1` is the test split rendered with the training soundfonts; `synth-v1-csound` the same",
        "test pieces (other excerpts) rendered with the held-out csound piano; `synth-v1-musescore` (when present)",
        "with the reserved MuseScore General piano.",
        "",
        "## Limits and what would improve it",
        "- Trained on synthetic (SoundFont) pianos only, on 2 CPU cores for about an hour: real recorded pianos,",
        "  longer training and a larger network would all help; MAESTRO-style real recordings are the next step.",
        "- No sustain-pedal output: offsets are sounding offsets (pedal included), not key releases.",
    ]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
