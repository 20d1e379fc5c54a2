"""Regenerate the shipped example: a short two-hand piece, as MIDI and as rendered FLAC.

    python -m devtools.make_example [OUT_DIR]

The piece is composed here (public domain): a melody in the right hand over an Alberti bass and
cadence chords in the left, 8 bars of 4/4 at 96 bpm, rendered with the csound piano (a soundfont the
shipped model was not trained on).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from pianonotes.notes import Note, midi_bytes

BPM = 96.0
BEAT = 60.0 / BPM
# (beat, length in beats, pitch) for the right hand
MELODY = [
    (0, 1, 72), (1, 1, 76), (2, 1, 79), (3, 1, 76), (4, 1.5, 77), (5.5, 0.5, 76), (6, 1, 74), (7, 1, 71),
    (8, 1, 72), (9, 0.5, 74), (9.5, 0.5, 76), (10, 1, 77), (11, 1, 79), (12, 2, 81), (14, 2, 79),
    (16, 1, 76), (17, 1, 77), (18, 1, 79), (19, 1, 84), (20, 1.5, 83), (21.5, 0.5, 81), (22, 2, 79),
    (24, 1, 77), (25, 1, 76), (26, 1, 74), (27, 1, 71), (28, 4, 72),
]
# one chord (root, third, fifth) per bar, broken as an Alberti bass in eighths
HARMONY = [(48, 52, 55), (53, 57, 60), (55, 59, 62), (48, 52, 55), (45, 48, 52), (53, 57, 60), (55, 59, 62), (48, 52, 55)]


def piece() -> list[Note]:
    rng = np.random.default_rng(7)  # small human timing and velocity variation
    notes = []
    for beat, length, pitch in MELODY:
        on = beat * BEAT + rng.normal(0, 0.008)
        notes.append(Note(round(max(0.0, on) + 0.5, 4), round(beat * BEAT + length * BEAT * 0.92 + 0.5, 4), pitch,
                          int(np.clip(rng.normal(84, 6), 60, 110))))
    for bar, (r, t, f) in enumerate(HARMONY):
        if bar == len(HARMONY) - 1:
            for p in (r - 12, r, t, f):
                notes.append(Note(round(bar * 4 * BEAT + 0.5, 4), round((bar * 4 + 3.8) * BEAT + 0.5, 4), p, 62))
            continue
        for i, p in enumerate([r, f, t, f] * 2):
            on = (bar * 4 + i * 0.5) * BEAT + rng.normal(0, 0.008) + 0.5
            notes.append(Note(round(on, 4), round(on + 0.45 * BEAT, 4), p, int(np.clip(rng.normal(58, 5), 40, 80))))
    return sorted(notes)


def main(out_dir: str = "pianonotes/examples") -> None:
    from pianonotes.audio import write_audio
    from pianonotes.constants import HELDOUT_SOUNDFONTS, SAMPLE_RATE
    from pianonotes.datasets.synth.render import render

    out = Path(out_dir)
    notes = piece()
    (out / "twohands.mid").write_bytes(midi_bytes(notes, bpm=BPM))
    keys = [(n.onset, n.offset, n.pitch, n.velocity) for n in notes]
    audio = render(keys, [], notes[-1].offset + 1.5, HELDOUT_SOUNDFONTS["csound"], 0, SAMPLE_RATE)
    audio = audio / (np.abs(audio).max() + 1e-9) * 0.8
    write_audio(out / "twohands.flac", audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")


if __name__ == "__main__":
    main(*sys.argv[1:])
