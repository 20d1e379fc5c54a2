"""The streaming engine shared by ``transcribe`` (files) and ``listen`` (the microphone).

Audio blocks of any size go in; key probabilities for the frames that became computable and the notes
that ended come out. The front end, the network (with its past/future context carried across chunks)
and the decoder are all incremental and exact: the notes never depend on the block or chunk size.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pianonotes import constants as C
from pianonotes.decode import DecodeOptions, StreamingDecoder
from pianonotes.notes import Note


@dataclasses.dataclass
class Update:
    """What one ``push`` produced: new frames' probabilities (n, 88) and the notes that ended."""

    start_frame: int
    frame: np.ndarray
    onset: np.ndarray
    velocity: np.ndarray | None
    notes: list[Note]

    @property
    def n_frames(self) -> int:
        return len(self.frame)


class NetworkStream:
    """Runs a model over a growing feature sequence with exact context (zeros before the start,
    zeros for the look-ahead after the end: the same as whole-file inference)."""

    def __init__(self, model, *, device: str = "cpu", chunk_frames: int = 1000):
        self.model = model
        self.device = device
        self.past, self.future = int(model.past), int(model.future)
        self.chunk = max(1, chunk_frames)
        self._buf: np.ndarray | None = None  # features not yet consumed, with `past` history in front

    def _ensure(self, n_features: int) -> None:
        if self._buf is None:
            self._buf = np.zeros((self.past, n_features), np.float32)

    def push(self, feats: np.ndarray, *, final: bool = False) -> dict[str, np.ndarray]:
        feats = np.asarray(feats, np.float32)
        self._ensure(feats.shape[1] if feats.ndim == 2 else self.model.n_features)
        if len(feats):
            self._buf = np.concatenate([self._buf, feats])
        if final:
            self._buf = np.concatenate([self._buf, np.zeros((self.future, self._buf.shape[1]), np.float32)])
        ready = len(self._buf) - self.past - self.future
        outs: list[dict[str, np.ndarray]] = []
        while ready > 0:
            n = min(ready, self.chunk)
            window = self._buf[: self.past + n + self.future]
            outs.append(self._run(window))
            self._buf = self._buf[n:]
            ready -= n
        if not outs:
            return {k: np.zeros((0, C.N_KEYS), np.float32) for k in ("frame", "onset", "velocity")}
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def _run(self, window: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(window))[None].to(self.device)
            out = self.model(x)
            res = {"frame": torch.sigmoid(out["frame"])[0], "onset": torch.sigmoid(out["onset"])[0]}
            if "velocity" in out:
                res["velocity"] = out["velocity"][0]
            else:
                res["velocity"] = torch.zeros_like(res["frame"])
            return {k: v.float().cpu().numpy() for k, v in res.items()}


def infer_features(model, feats: np.ndarray, *, device: str = "cpu", chunk_frames: int = 1000) -> dict[str, np.ndarray]:
    """Whole-sequence inference on (T, F) features: {'frame', 'onset', 'velocity'} each (T, 88)."""
    stream = NetworkStream(model, device=device, chunk_frames=chunk_frames)
    return stream.push(feats, final=True)


class Engine:
    """Audio in, frames and notes out, incrementally. One instance per recording or live take."""

    def __init__(self, model, config: dict[str, Any], *, options: DecodeOptions = DecodeOptions(),
                 device: str = "cpu", chunk_frames: int = 1000, time_offset: float = 0.0):
        from pianonotes.frontend import StreamingFrontEnd, frontend_from_config

        self.config = config
        self.frontend = frontend_from_config(config["frontend"])
        self.fps = self.frontend.fps
        self._fe = self.frontend.streaming() if hasattr(self.frontend, "streaming") else StreamingFrontEnd(self.frontend)
        self._net = NetworkStream(model, device=device, chunk_frames=chunk_frames)
        self.decoder = StreamingDecoder(self.fps, options, time_offset=time_offset)
        self.frames_out = 0
        self.samples_in = 0

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def latency_frames(self) -> int:
        """Frames of audio the engine must wait for beyond a frame's time: the look-ahead."""
        return self._net.future

    def push(self, audio: np.ndarray) -> Update:
        """Mono float32 audio at ``sample_rate``."""
        self.samples_in += len(audio)
        return self._step(self._fe.push(audio), final=False)

    def finish(self) -> Update:
        return self._step(self._fe.flush(), final=True)

    def _step(self, feats: np.ndarray, *, final: bool) -> Update:
        probs = self._net.push(feats, final=final)
        notes = self.decoder.push(probs["frame"], probs["onset"], probs["velocity"])
        if final:
            notes = sorted(notes + self.decoder.flush())
        upd = Update(self.frames_out, probs["frame"], probs["onset"], probs["velocity"], notes)
        self.frames_out += len(probs["frame"])
        return upd
