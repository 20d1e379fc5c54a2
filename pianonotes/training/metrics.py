"""Transcription metrics: mir_eval note and frame scores and the seed's exact-frame accuracy."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pianonotes import constants
from pianonotes.notes import Note


def _arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
    iv = np.array([[n.onset, n.offset] for n in notes], float).reshape(-1, 2)
    hz = 440.0 * 2 ** ((np.array([n.pitch for n in notes], float) - 69) / 12)
    return iv, hz


def _mir_eval():
    try:
        import mir_eval
    except ImportError as exc:
        from pianonotes.errors import PianonotesError

        raise PianonotesError("training and evaluation need mir_eval: pip install 'pianonotes[train]'") from exc
    return mir_eval


def note_scores(ref: Sequence[Note], est: Sequence[Note]) -> dict[str, float]:
    """mir_eval note precision/recall/F1: onset only (50 ms) and with offsets (50 ms or 20 %)."""
    mir_eval = _mir_eval()

    if not ref and not est:
        return {k: 1.0 for k in ("note_p", "note_r", "note_f1", "note_off_p", "note_off_r", "note_off_f1")}
    if not ref or not est:
        return {k: 0.0 for k in ("note_p", "note_r", "note_f1", "note_off_p", "note_off_r", "note_off_f1")}
    ri, rp = _arrays(ref)
    ei, ep = _arrays(est)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ri, rp, ei, ep, onset_tolerance=constants.ONSET_TOLERANCE, offset_ratio=None)
    po, ro, fo, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ri, rp, ei, ep, onset_tolerance=constants.ONSET_TOLERANCE, offset_ratio=constants.OFFSET_RATIO,
        offset_min_tolerance=constants.OFFSET_MIN_TOLERANCE)
    return {"note_p": p, "note_r": r, "note_f1": f, "note_off_p": po, "note_off_r": ro, "note_off_f1": fo}


def piano_roll(notes: Sequence[Note], n_frames: int, fps: float) -> np.ndarray:
    """(n_frames, 88) bool: key sounding at each frame time."""
    roll = np.zeros((n_frames, constants.N_KEYS), bool)
    for n in notes:
        a = int(np.ceil(n.onset * fps - 1e-9))
        b = int(np.ceil(n.offset * fps - 1e-9))
        roll[max(a, 0): max(min(b, n_frames), 0), n.pitch - constants.MIN_PITCH] = True
    return roll


def frame_scores(ref: np.ndarray, est: np.ndarray) -> dict[str, float]:
    """Frame precision/recall/F1 over (T, 88) boolean rolls, and the seed's exact-frame accuracy."""
    tp = float(np.logical_and(ref, est).sum())
    fp = float(np.logical_and(~ref, est).sum())
    fn = float(np.logical_and(ref, ~est).sum())
    p = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    exact = float(np.mean(np.all(ref == est, axis=1))) if len(ref) else 1.0
    return {"frame_p": p, "frame_r": r, "frame_f1": f, "exact_frame_acc": exact}


def transcription_scores(ref: Sequence[Note], est: Sequence[Note], duration: float) -> dict[str, float]:
    """All headline metrics. Frame metrics use the seed's 50 ms frames (20 per second)."""
    fps = 1.0 / constants.SEED_FRAME_SECONDS
    n = int(np.ceil(duration * fps))
    out = note_scores(ref, est)
    out.update(frame_scores(piano_roll(ref, n, fps), piano_roll(est, n, fps)))
    return out


def per_pitch(ref: Sequence[Note], est: Sequence[Note]) -> dict[int, dict[str, float]]:
    """Note-onset F1 and counts for each pitch present in the reference or the estimate."""
    out = {}
    for p in sorted({n.pitch for n in ref} | {n.pitch for n in est}):
        r = [n for n in ref if n.pitch == p]
        e = [n for n in est if n.pitch == p]
        s = note_scores(r, e)
        out[p] = {"f1": s["note_f1"], "precision": s["note_p"], "recall": s["note_r"], "ref": len(r), "est": len(e)}
    return out


def aggregate(rows: Sequence[dict[str, float]], weights: Sequence[float] | None = None) -> dict[str, float]:
    if not rows:
        return {}
    w = np.ones(len(rows)) if weights is None else np.asarray(weights, float)
    return {k: float(np.average([r[k] for r in rows], weights=w)) for k in rows[0]}


REGISTERS = {"bass A0-B2": (21, 47), "middle C3-B4": (48, 71), "treble C5-C8": (72, 108)}
VELOCITY_BANDS = {"soft <50": (1, 49), "medium 50-79": (50, 79), "loud 80+": (80, 127)}


def recall_by_group(ref: Sequence[Note], est: Sequence[Note]) -> dict[str, dict[str, float]]:
    """Note-onset recall (50 ms) of the reference notes by register and by velocity band:
    {group: {"recall": r, "notes": n}}. Groups without notes are left out."""
    mir_eval = _mir_eval()
    if not ref:
        return {}
    matched: set[int] = set()
    if est:
        ri, rp = _arrays(ref)
        ei, ep = _arrays(est)
        matched = {i for i, _ in mir_eval.transcription.match_notes(
            ri, rp, ei, ep, onset_tolerance=constants.ONSET_TOLERANCE, offset_ratio=None)}
    out = {}
    for table, attr in ((REGISTERS, "pitch"), (VELOCITY_BANDS, "velocity")):
        for name, (lo, hi) in table.items():
            idx = [i for i, n in enumerate(ref) if lo <= getattr(n, attr) <= hi]
            if idx:
                out[name] = {"recall": sum(i in matched for i in idx) / len(idx), "notes": len(idx)}
    return out


def pedal_roll(events, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames,) bool: the pedal down at each frame time, from PedalEvents in seconds."""
    r = np.zeros(n_frames, bool)
    for e in events:
        r[max(0, int(round(e.start * fps))):max(0, min(n_frames, int(round(e.end * fps))))] = True
    return r


def pedal_scores(ref, est, duration: float, fps: float = 50.0) -> dict[str, float]:
    """Sustain pedal: frame F1 over ``duration`` seconds and pedal-onset F1 (100 ms tolerance)."""
    n = max(1, int(round(duration * fps)))
    a, b = pedal_roll(ref, n, fps), pedal_roll(est, n, fps)
    tp = float((a & b).sum())
    p = tp / max(b.sum(), 1)
    r = tp / max(a.sum(), 1)
    on_ref = sorted(e.start for e in ref)
    on_est = sorted(e.start for e in est)
    used, hits = set(), 0
    for t in on_ref:
        j = next((j for j, u in enumerate(on_est) if j not in used and abs(u - t) <= 0.1), None)
        if j is not None:
            used.add(j)
            hits += 1
    po = hits / max(len(on_est), 1)
    ro = hits / max(len(on_ref), 1)
    return {"pedal_frame_f1": 2 * p * r / max(p + r, 1e-9), "pedal_onset_f1": 2 * po * ro / max(po + ro, 1e-9)}
