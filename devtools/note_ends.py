"""The README's "note ends under the pedal" measurement: note-with-offset F1 of a checkpoint's notes with
their ends taken three ways, on labelled sets, decoding only (the network runs once per recording).

- ``frame``: the sounding-key head's end (what ``decode`` gives and ``evaluate`` scores);
- ``hold T``: that end held on while the decoded pedal is down and the key's frame probability stays at or
  above ``T`` (never past the same key's next onset);
- ``key+pedal``: the key-down head's release extended by the decoded pedal (``--note-length sounding``).

    python -m devtools.note_ends ~/.cache/pianonotes/data/synth-v2-csound ../shared/data/real-dev

A dataset folder is scored on its test split (duration-weighted), a folder of recordings with labels
(real-dev) as the mean over files, as ``evaluate`` does.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

HOLDS = (0.2, 0.1, 0.05)


def pedal_hold(notes, frame: np.ndarray, pedal_down: np.ndarray, fps: float, threshold: float) -> list:
    """``notes`` with each end moved on while ``pedal_down`` (T,) and ``frame[:, key] >= threshold``, up to
    the next onset on the same key (or the last frame)."""
    from pianonotes import constants

    out = list(notes)
    by_pitch: dict[int, list[int]] = {}
    for i, n in enumerate(notes):
        by_pitch.setdefault(n.pitch, []).append(i)
    for pitch, idx in by_pitch.items():
        idx.sort(key=lambda i: notes[i].onset)
        held = pedal_down & (frame[:, pitch - constants.MIN_PITCH] >= threshold)
        for j, i in enumerate(idx):
            end = int(round(notes[i].offset * fps))
            limit = int(round(notes[idx[j + 1]].onset * fps)) if j + 1 < len(idx) else len(frame)
            e = end
            while e < limit and held[e]:
                e += 1
            if e > end:
                out[i] = dataclasses.replace(notes[i], offset=e / fps)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped AudioNet)")
    args = ap.parse_args(argv)

    from pianonotes.datasets.recordings import labelled_recordings, load_split
    from pianonotes.decode import decode, decode_pedal
    from pianonotes.notes import with_note_length
    from pianonotes.training.evaluate import is_dataset
    from pianonotes.training.metrics import aggregate, note_scores, pedal_roll
    from pianonotes.transcribe import Transcriber

    tr = Transcriber.from_checkpoint(args.model, device="cpu")
    opt, fps = tr.options, tr.frontend.fps
    for path in map(Path, args.sets):
        dataset = is_dataset(path)
        recs = load_split(path, "test", tr.frontend) if dataset else labelled_recordings(path, tr.frontend)
        rows = []
        for r in recs:
            p = tr.infer_features(r.features.astype(np.float32))
            est = decode(p["frame"], p["onset"], p["velocity"], fps=fps, options=opt, key=p.get("key"))
            peds = decode_pedal(p["pedal"], fps=fps, options=opt) if "pedal" in p else []
            down = pedal_roll(peds, len(p["frame"]), fps)
            ways = {"frame": est, "key+pedal": with_note_length(est, peds, "sounding")}
            ways.update({f"hold {t}": pedal_hold(est, p["frame"], down, fps, t) for t in HOLDS})
            row = {k: note_scores(r.notes, v)["note_off_f1"] for k, v in ways.items()}
            row["pedal down"] = float(down.mean())
            rows.append(row)
        m = aggregate(rows, [r.n_frames for r in recs] if dataset else None)
        print(f"{path.name}: " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))


if __name__ == "__main__":
    main()
