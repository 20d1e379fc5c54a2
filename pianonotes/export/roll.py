"""A piano-roll picture of notes: time on x, pitch on y (note names), velocity as colour."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.fileio import atomic_path
from pianonotes.notes import Note, pitch_name

ROLL_DPI = 120


def write_piano_roll(
    path: str | os.PathLike,
    notes: Sequence[Note],
    *,
    title: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Draw notes as a PNG piano roll (matplotlib, Agg; no display needed), written atomically.

    Each note is a bar from onset to (sounding) offset in seconds at its pitch; colour shows velocity
    (1-127). The y axis names the pitches (every C, or every key for a range under two octaves). The
    image widens with the duration (8 to 30 inches at 120 dpi). An empty list gives an empty roll.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise PianonotesError(f"the piano roll is a PNG image; name the file .png, not {path.name!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    notes = sorted(notes)
    end = max((n.offset for n in notes), default=1.0)
    start = min((n.onset for n in notes), default=0.0)
    lo = min((n.pitch for n in notes), default=60 - 6)
    hi = max((n.pitch for n in notes), default=60 + 6)
    if hi - lo < 12:  # show at least an octave
        pad = (12 - (hi - lo) + 1) // 2
        lo, hi = max(constants.MIN_PITCH, lo - pad), min(constants.MAX_PITCH, hi + pad)

    width = min(30.0, max(8.0, 6.0 + (end - min(start, 0.0)) / 6.0))
    height = min(10.0, max(4.0, 2.0 + (hi - lo) * 0.08))
    fig = Figure(figsize=(width, height), dpi=ROLL_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    norm = Normalize(vmin=1, vmax=127)
    cmap = "viridis"
    mappable = ScalarMappable(norm=norm, cmap=cmap)
    if notes:
        ax.barh(
            [n.pitch for n in notes],
            [n.duration for n in notes],
            left=[n.onset for n in notes],
            height=0.8,
            color=mappable.to_rgba([n.velocity for n in notes]),
            edgecolor="black",
            linewidth=0.3,
        )
    else:
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.set_xlim(min(start, 0.0), end + 0.05 * max(end, 1.0))
    ax.set_ylim(lo - 1, hi + 1)
    if hi - lo < 24:
        ticks = list(range(lo, hi + 1))
    else:
        ticks = [p for p in range(lo, hi + 1) if p % 12 == 0]
    ax.set_yticks(ticks)
    ax.set_yticklabels([pitch_name(p) for p in ticks])
    for p in range(lo, hi + 1):  # shade the black keys' rows lightly
        if p % 12 in (1, 3, 6, 8, 10):
            ax.axhspan(p - 0.5, p + 0.5, color="0.93", zorder=0, linewidth=0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    if title:
        ax.set_title(title)
    fig.colorbar(mappable, ax=ax, label="velocity", pad=0.01, fraction=0.03)
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=ROLL_DPI)
    return path
