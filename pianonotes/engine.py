"""The streaming engine shared by ``transcribe`` (files) and ``listen`` (the microphone).

Audio blocks of any size go in; key probabilities for the frames that became computable and the notes
that ended come out. The front end, the network (with its past/future context carried across chunks)
and the decoder are all incremental and exact: the notes never depend on the block or chunk size.
"""

from __future__ import annotations

import dataclasses

import numpy as np

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
    extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # other heads (e.g. pedal), (n, ...)

    @property
    def n_frames(self) -> int:
        return len(self.frame)


class NetworkStream:
    """Runs a network over a growing feature sequence with exact context (zeros before the start,
    zeros for the look-ahead after the end: the same as whole-file inference); a
    :class:`pianonotes.streaming.Stream`.

    ``network``: an :class:`~pianonotes.inference.OnnxNetwork` or
    :class:`~pianonotes.inference.TorchNetwork` (a bare torch module is wrapped). ``push(feats)`` takes
    (n, n_features) float32 frames and returns probabilities by output name
    (:func:`~pianonotes.inference.activations`), each (m, 88) (the pedal head (m, 1)) for the m frames
    whose ``future`` frames of context have arrived; ``flush()`` the last ``future`` frames.
    """

    def __init__(self, network, *, device: str = "cpu", chunk_frames: int = 1000):
        from pianonotes.inference import as_network

        self.network = as_network(network, device=device)
        self.past, self.future = int(self.network.past), int(self.network.future)
        self.chunk = max(1, chunk_frames)
        self._heads: dict[str, tuple[int, ...]] | None = None  # output name -> shape of one frame
        self.reset()

    def reset(self) -> None:
        self._buf: np.ndarray | None = None  # features not yet consumed, with `past` history in front

    def _ensure(self, n_features: int) -> None:
        if self._buf is None:
            self._buf = np.zeros((self.past, n_features), np.float32)

    def push(self, feats: np.ndarray, *, final: bool = False) -> dict[str, np.ndarray]:
        """(n, n_features) features; ``final=True`` also flushes (``push(x, final=True)`` is ``push(x)``
        followed by :meth:`flush`, in one array)."""
        feats = np.asarray(feats, np.float32)
        self._ensure(feats.shape[1] if feats.ndim == 2 else self.network.n_features)
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
            return self._empty()
        self._heads = {k: v.shape[1:] for k, v in outs[0].items()}
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def flush(self) -> dict[str, np.ndarray]:
        """The last ``future`` frames' probabilities (the look-ahead after the end read as zeros)."""
        return self.push(np.zeros((0, self.network.n_features), np.float32), final=True)

    def _empty(self) -> dict[str, np.ndarray]:
        """No frames of every head the network has (the same names and widths as a non-empty output)."""
        if self._heads is None:  # learn them from one frame of silence
            probe = self._run(np.zeros((self.past + 1 + self.future, self._buf.shape[1]), np.float32))
            self._heads = {k: v.shape[1:] for k, v in probe.items()}
        return {k: np.zeros((0, *shape), np.float32) for k, shape in self._heads.items()}

    def _run(self, window: np.ndarray) -> dict[str, np.ndarray]:
        from pianonotes.inference import activations

        return activations(self.network.run(window))


def infer_features(network, feats: np.ndarray, *, device: str = "cpu", chunk_frames: int = 1000) -> dict[str, np.ndarray]:
    """Whole-sequence inference on (T, F) features: {'frame', 'onset', 'velocity', other heads} each (T, 88)."""
    stream = NetworkStream(network, device=device, chunk_frames=chunk_frames)
    return stream.push(feats, final=True)


class Engine:
    """Audio in, frames and notes out, incrementally: the front end's stream, the :class:`NetworkStream`
    and the :class:`~pianonotes.decode.StreamingDecoder` in a row, itself a
    :class:`pianonotes.streaming.Stream` (``push(audio) -> Update``, ``flush()`` (also called
    :meth:`finish`) and ``reset()``). One instance per recording or live take, or :meth:`reset` between.
    """

    def __init__(self, network, config, *, options: DecodeOptions = DecodeOptions(),
                 device: str = "cpu", chunk_frames: int = 1000, time_offset: float = 0.0):
        """``network``: a backend network or torch module; ``config``: its
        :class:`~pianonotes.inference.ModelConfig` (or the checkpoint's JSON dict). Usually made by
        :meth:`pianonotes.transcribe.Transcriber.engine`."""
        from pianonotes.inference import ModelConfig

        self.config = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        self.frontend = self.config.make_frontend()
        self.fps = self.frontend.fps
        self._fe = self.frontend.streaming()
        self._match = self.config.make_matcher(self.frontend)  # None: the checkpoint matches no spectrum
        self._net = NetworkStream(network, device=device, chunk_frames=chunk_frames)
        self.decoder = StreamingDecoder(self.fps, options, time_offset=time_offset)
        self.frames_out = 0
        self.samples_in = 0

    def reset(self) -> None:
        """Start another recording with the same network and options."""
        self._fe.reset()
        if self._match is not None:
            self._match.reset()
        self._net.reset()
        self.decoder.reset()
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
        """The end of the recording: the last frames and every note still sounding."""
        return self._step(self._fe.flush(), final=True)

    flush = finish

    def _step(self, feats: np.ndarray, *, final: bool) -> Update:
        if self._match is not None:
            feats = self._match.push(feats)
        probs = self._net.push(feats, final=final)
        notes = self.decoder.push(probs)  # the pedal intervals collect in decoder.pedals
        if final:
            notes = sorted(notes + self.decoder.flush())
        extra = {k: v for k, v in probs.items() if k not in ("frame", "onset", "velocity")}
        upd = Update(self.frames_out, probs["frame"], probs["onset"], probs["velocity"], notes, extra)
        self.frames_out += len(probs["frame"])
        return upd
