"""Front ends: audio to feature frames, offline and streaming, behind one protocol (:class:`FrontEnd`).

* :class:`pianonotes.features.logspec.LogSpecFrontEnd` (``dual-v1``, AudioNet's): a multi-resolution
  log-frequency spectrogram, 16 kHz, 50 frames/s, 40 ms look-ahead;
* :class:`pianonotes.features.msmd.MsmdFrontEnd`: MSMD's madmom spectrogram (22.05 kHz, 20 frames/s, 92
  bands), so a network trained on the MSMD dataset transcribes a user's recording.

A checkpoint records its front end with ``to_dict()``; :func:`frontend_from_config` builds it back.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from pianonotes.errors import PianonotesError
from pianonotes.streaming import Stream


@runtime_checkable
class FrontEnd(Protocol):
    """What every front end provides (frozen dataclasses: equal configs are equal front ends)."""

    name: str
    sample_rate: int  # Hz of the mono float32 audio it reads

    @property
    def fps(self) -> float:
        """Feature frames per second."""
        ...

    @property
    def n_features(self) -> int:
        """Features per frame (the network's input width)."""
        ...

    @property
    def lookahead_seconds(self) -> float:
        """Audio after a frame's time that the frame reads (part of ``listen``'s latency)."""
        ...

    def n_frames(self, n_samples: int) -> int:
        """Frames computed from ``n_samples`` of audio (offline, zero-padded at the end)."""
        ...

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(n,) float32 audio -> (frames, n_features) float32 features, offline."""
        ...

    def streaming(self) -> Stream[np.ndarray, np.ndarray]:
        """A :class:`~pianonotes.streaming.Stream` whose pushed output equals the offline features."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The config a checkpoint stores (``kind`` names the front end)."""
        ...


def frontend_from_config(d: Mapping[str, Any]) -> FrontEnd:
    """Build the front end a checkpoint's config names."""
    kind = d.get("kind", "logspec")
    if kind == "logspec":
        from pianonotes.features.logspec import LogSpecFrontEnd

        return LogSpecFrontEnd.from_dict(dict(d))
    if kind == "msmd":
        from pianonotes.features.msmd import MsmdFrontEnd

        return MsmdFrontEnd.from_dict(d)
    raise PianonotesError(f"unknown front end '{kind}' in the checkpoint; upgrade pianonotes")
