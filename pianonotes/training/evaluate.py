"""``pianonotes evaluate``: score a checkpoint on a dataset split or on audio + MIDI pairs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from pianonotes import constants
from pianonotes.decode import DecodeOptions, decode
from pianonotes.errors import PianonotesError


def _pairs(paths: Sequence[Path]) -> list[tuple[Path, Path]]:
    out = []
    for p in paths:
        if p.suffix.lower() in constants.AUDIO_EXTENSIONS:
            mids = [p.with_suffix(s) for s in (".mid", ".midi") if p.with_suffix(s).exists()]
            if not mids:
                raise PianonotesError(f"{p}: no MIDI ground truth beside it ({p.with_suffix('.mid').name})")
            out.append((p, mids[0]))
    return out


def is_dataset(path: Path, split: str = "test") -> bool:
    """A dataset folder (``data synth``'s layout: a manifest, or split subfolders), not recordings + labels."""
    return path.is_dir() and ((path / "manifest.json").exists() or (path / split).is_dir())


def evaluate(model_path, data: Sequence[os.PathLike], *, split: str | None = None, device: str = "auto",
             options: DecodeOptions | None = None, overrides: dict | None = None,
             output: os.PathLike | None = None, limit_seconds: float | None = None) -> dict:
    """Metrics of a checkpoint over dataset folders (their ``split``) and/or audio files with MIDI beside.

    ``split`` (default ``test``) only applies to dataset folders: given without one, it is an error (it
    was once ignored without a word for a single file). Returns {'overall': {...}, 'per_recording': [...],
    'per_pitch': {...}, ...}; with ``output`` writes the JSON and a PNG plot (F1 by pitch, errors by
    octave / semitone distance) beside it.
    """
    from pianonotes.decode import decode_pedal
    from pianonotes.training.metrics import aggregate, pedal_scores, per_pitch, recall_by_group, transcription_scores
    from pianonotes.datasets.recordings import labelled_audio_pairs, load_split, recording_from_audio
    from pianonotes.transcribe import Transcriber

    paths = [Path(p) for p in data]
    if split is not None and not any(is_dataset(p, split) for p in paths):
        raise PianonotesError(f"--split {split} only applies to a dataset folder (with a manifest.json or a "
                              f"{split}/ folder); {', '.join(p.name or str(p) for p in paths)} "
                              f"{'is' if len(paths) == 1 else 'are'} not one: drop --split")
    split = split or "test"
    tr = Transcriber.from_checkpoint(model_path, device=device, options=options, overrides=overrides)
    options, cfg, fe = tr.options, tr.config, tr.frontend
    recs = []
    for p in paths:
        if p.is_dir():
            if is_dataset(p, split):
                recs += load_split(p, split, fe, limit_seconds=limit_seconds)
            else:  # a folder of recordings with same-named MIDI/TSV labels (beside, or audio/ + midi/|tsv/)
                recs += [recording_from_audio(a, m, fe) for a, m in labelled_audio_pairs(p)]
        elif p.exists():
            recs += [recording_from_audio(a, m, fe) for a, m in _pairs([p])]
        else:
            raise PianonotesError(f"{p} not found")
    if not recs:
        raise PianonotesError("nothing to evaluate: give a dataset folder or audio files with MIDI beside them")
    rows, weights, all_ref, all_est = [], [], [], []
    group_hits: dict[str, list[float]] = {}  # per recording, then summed: matching pooled notes is O(n^2)
    interval_counts: dict[str, dict[str, int]] = {}
    pedal_rows = []
    offset = 0.0
    for rec in recs:
        probs = tr.infer_features(rec.features.astype(np.float32))
        est = decode(probs["frame"], probs["onset"], probs["velocity"], fps=fe.fps, options=options,
                     key=probs.get("key"))
        dur = rec.n_frames / fe.fps
        row = transcription_scores(rec.notes, est, dur)
        if "pedal" in probs and rec.has_pedal_labels:
            ped = pedal_scores(rec.pedals, decode_pedal(probs["pedal"], fps=fe.fps, options=options), dur, fe.fps)
            row.update(ped)
            pedal_rows.append(ped)
        rows.append(dict(row, name=rec.name, seconds=round(dur, 2)))
        weights.append(dur)
        all_ref += [n.shifted(offset) for n in rec.notes]
        all_est += [n.shifted(offset) for n in est]
        for g, v in recall_by_group(rec.notes, est).items():
            acc = group_hits.setdefault(g, [0.0, 0])
            acc[0] += v["recall"] * v["notes"]
            acc[1] += v["notes"]
        for kind, counts in interval_errors(rec.notes, est).items():
            for k, c in counts.items():
                interval_counts.setdefault(kind, {})[k] = interval_counts.get(kind, {}).get(k, 0) + c
        offset += dur + 10.0
    metric_rows = [{k: v for k, v in r.items() if k not in ("name", "seconds") and not k.startswith("pedal_")}
                   for r in rows]
    overall = aggregate(metric_rows, weights)
    if pedal_rows:
        overall.update(aggregate(pedal_rows, [w for w, r in zip(weights, rows) if "pedal_frame_f1" in r]))
    mean_over_files = aggregate(metric_rows)  # each recording counts once (the real-dev convention)
    pitch = per_pitch(all_ref, all_est)
    result = {
        "model": str(model_path or "shipped AudioNet"),
        "arch": cfg.arch,
        "backend": tr.backend,
        "recordings": len(recs),
        "hours": float(sum(weights) / 3600),
        "decode": {"onset_threshold": options.onset_threshold, "frame_threshold": options.frame_threshold,
                   "min_note_seconds": options.min_note_seconds},
        "overall": overall,
        "mean_over_files": mean_over_files,
        "recall_by_group": {g: {"recall": h / n, "notes": n} for g, (h, n) in group_hits.items()},
        "per_recording": rows,
        "per_pitch": {str(k): v for k, v in pitch.items()},
        "errors_by_interval": {"false_positive_semitones": {}, "missed_by_octave": {}, **interval_counts},
    }
    if output:
        from pianonotes.fileio import write_text_atomic

        output = Path(output)
        write_text_atomic(output, json.dumps(result, indent=2))
        plot = output.with_suffix(".png")
        plot_metrics(result, plot)
        result["plot"] = str(plot)
    return result


def interval_errors(ref, est) -> dict[str, dict[str, int]]:
    """False positives by distance in semitones to the nearest reference note sounding at their onset
    (octave errors show up as 12), and false negatives by octave."""
    import mir_eval

    from pianonotes.training.metrics import _arrays

    out = {"false_positive_semitones": {}, "missed_by_octave": {}}
    if not ref or not est:
        return out
    ri, rp = _arrays(ref)
    ei, ep = _arrays(est)
    match = mir_eval.transcription.match_notes(ri, rp, ei, ep, onset_tolerance=constants.ONSET_TOLERANCE, offset_ratio=None)
    m_ref = {i for i, _ in match}
    m_est = {j for _, j in match}
    ref_arr = np.array([[n.onset, n.offset, n.pitch] for n in ref])
    for j, n in enumerate(est):
        if j in m_est:
            continue
        on = (ref_arr[:, 0] <= n.onset + constants.ONSET_TOLERANCE) & (ref_arr[:, 1] >= n.onset)
        d = int(np.min(np.abs(ref_arr[on, 2] - n.pitch))) if on.any() else -1
        key = str(d) if d >= 0 else "none sounding"
        out["false_positive_semitones"][key] = out["false_positive_semitones"].get(key, 0) + 1
    for i, n in enumerate(ref):
        if i not in m_ref:
            o = str(n.pitch // 12 - 1)
            out["missed_by_octave"][o] = out["missed_by_octave"].get(o, 0) + 1
    return out


def plot_metrics(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pianonotes.fileio import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    pp = result["per_pitch"]
    xs = sorted(int(k) for k in pp)
    axes[0].bar(xs, [pp[str(x)]["f1"] for x in xs], color="tab:blue")
    axes[0].set_xlabel("MIDI pitch")
    axes[0].set_ylabel("note-onset F1")
    axes[0].set_xlim(constants.MIN_PITCH - 1, constants.MAX_PITCH + 1)
    axes[0].set_title("F1 by pitch")
    fp = result["errors_by_interval"]["false_positive_semitones"]
    keys = sorted(fp, key=lambda k: (k == "none sounding", int(k) if k.isdigit() else 999))
    axes[1].bar(range(len(keys)), [fp[k] for k in keys], color="tab:red")
    axes[1].set_xticks(range(len(keys)), keys, rotation=90, fontsize=7)
    axes[1].set_xlabel("semitones to the nearest sounding reference note")
    axes[1].set_ylabel("false positives")
    axes[1].set_title("extra notes by interval (12 = octave errors)")
    fig.suptitle(f"{result['arch']}: note F1 {result['overall'].get('note_f1', 0):.3f}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
