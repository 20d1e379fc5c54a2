"""From a checkpoint to a running network: the typed model config, the device, and the two backends.

Every command that only runs the network (``transcribe``, ``listen``, ``recover``, evaluation,
the ship and bench tools) loads it through :func:`load_network`, usually via
:meth:`pianonotes.transcribe.Transcriber.from_checkpoint`:

* **ONNX Runtime** (the default) runs ``NAME.onnx``, exported beside ``NAME.safetensors`` by
  ``pianonotes export-onnx`` or the ship tool; its sha256 and the weights' sha256 are recorded in
  ``NAME.json`` and checked on every load. torch is never imported on this path.
* **PyTorch** is the fallback for a checkpoint that has no ONNX export yet (a training run's ``best``):
  it needs the ``train`` extra.

Both backends return the network's raw outputs as numpy arrays, by output name; :func:`activations`
turns them into probabilities the same way for both, so they agree to float rounding.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from pianonotes.errors import PianonotesError

ONNX_OPSET = 17
ONNX_INPUT = "features"
TRAIN_EXTRA = "pip install 'pianonotes[train]'"
# Outputs that are probabilities after a sigmoid; every other output is passed on as the network gives it.
LOGIT_OUTPUTS = ("frame", "onset", "key", "pedal")
# Outputs used only by the training loss (the seed models' class logits): never exported or returned.
TRAINING_ONLY_OUTPUTS = ("logits",)
BACKENDS = ("auto", "onnx", "torch")


# ------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class OnnxExport:
    """Where a checkpoint's ONNX export is, and what it must match (``NAME.json["onnx"]``)."""

    file: str  # NAME.onnx, beside NAME.json (found by the checkpoint's stem, so a renamed copy works)
    sha256: str
    weights_sha256: str  # the safetensors it was exported from
    opset: int
    outputs: tuple[str, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "OnnxExport":
        return cls(str(d["file"]), str(d["sha256"]), str(d["weights_sha256"]), int(d.get("opset", ONNX_OPSET)),
                   tuple(d.get("outputs") or ()))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["outputs"] = list(self.outputs)
        return d


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What inference needs from a checkpoint's JSON, typed.

    ``past_frames``/``future_frames``: input frames the network needs before/after each output frame;
    ``lookahead_seconds``: how far past a frame's time its output depends on audio (network + front end).
    ``raw`` keeps the whole JSON (data, metrics, training recipe) for the tools that write it back.
    """

    arch: str
    n_features: int
    frontend: Mapping[str, Any]
    fps: float
    past_frames: int | None
    future_frames: int | None
    lookahead_seconds: float | None
    decode: Mapping[str, float]
    arch_config: Mapping[str, Any]
    onnx: OnnxExport | None
    path: Path | None = None
    input_match: Any = None  # MatchSettings: the spectrum matching of the input (pianonotes.features.match), or None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], path: str | os.PathLike | None = None) -> "ModelConfig":
        where = f"checkpoint config {path}" if path else "checkpoint config"
        missing = [k for k in ("arch", "n_features", "frontend") if k not in cfg]
        if missing:
            raise PianonotesError(f"{where} lacks {', '.join(missing)}: it was not written by pianonotes; retrain or "
                                  "re-download it")
        try:
            onnx = OnnxExport.from_dict(cfg["onnx"]) if cfg.get("onnx") else None
            opt = lambda key: int(cfg[key]) if cfg.get(key) is not None else None  # noqa: E731
            fps = float(cfg.get("fps") or cfg["frontend"]["sample_rate"] / cfg["frontend"]["hop"])
            look = cfg.get("lookahead_seconds")
            match = None
            if cfg.get("input_match"):  # parsed and checked here, once, so a malformed block fails at load
                from pianonotes.features.match import MatchSettings

                match = MatchSettings.from_dict(cfg["input_match"])
            return cls(arch=str(cfg["arch"]), n_features=int(cfg["n_features"]), frontend=dict(cfg["frontend"]),
                       fps=fps, past_frames=opt("past_frames"), future_frames=opt("future_frames"),
                       lookahead_seconds=float(look) if look is not None else None,
                       decode=dict(cfg.get("decode") or {}), arch_config=dict(cfg.get("arch_config") or {}),
                       onnx=onnx, path=Path(path) if path else None,
                       input_match=match, raw=dict(cfg))
        except (KeyError, TypeError, ValueError) as exc:
            raise PianonotesError(f"{where} is malformed ({exc}); retrain or re-download it") from exc

    def make_frontend(self):
        from pianonotes.features import frontend_from_config

        return frontend_from_config(dict(self.frontend))

    def make_matcher(self, frontend=None):
        """A fresh :class:`~pianonotes.features.match.SpectrumMatch` for one recording, or None when the
        checkpoint has no ``input_match``."""
        if self.input_match is None:
            return None
        from pianonotes.features.match import matcher

        return matcher(self.input_match, frontend if frontend is not None else self.make_frontend())

    def decode_options(self, **overrides):
        """The calibrated thresholds with ``onset_threshold``/``frame_threshold``/``min_note_seconds``
        overrides (None keeps the checkpoint's)."""
        from pianonotes.decode import DecodeOptions

        return DecodeOptions.for_model(self.decode, **overrides)

    def with_context(self, past: int, future: int) -> "ModelConfig":
        """The config with the network's context filled in (older checkpoints do not record it)."""
        look = self.lookahead_seconds
        if look is None:
            look = future / self.fps + float(self.make_frontend().lookahead_seconds)
        return dataclasses.replace(self, past_frames=past, future_frames=future, lookahead_seconds=look)


# ------------------------------------------------------------------------------------------- device
def pick_device(name: str = "auto", *, backend: str = "torch") -> str:
    """'cpu' or 'cuda[:N]' for ``name`` ('auto', 'cpu', 'cuda', 'cuda:N') on ``backend`` ('onnx' or 'torch').

    'auto' is CUDA when the backend can use it, else the CPU; an explicit 'cuda' it cannot use is an error.
    Only the torch backend imports torch.
    """
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise PianonotesError(f"unknown device '{name}'; use auto, cpu or cuda")
    if name == "cpu":
        return name
    if backend == "onnx":
        ort = import_onnxruntime()
        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if not has_cuda and name != "auto":
            raise PianonotesError(f"--device {name}: this onnxruntime has no CUDA provider; install onnxruntime-gpu "
                                  "or use --device cpu")
    else:
        torch = import_torch("running a checkpoint without an ONNX export")
        has_cuda = torch.cuda.is_available()
        if not has_cuda and name != "auto":
            raise PianonotesError(f"--device {name}: no CUDA GPU is visible to torch; use --device cpu")
    if name == "auto":
        return "cuda" if has_cuda else "cpu"
    return name


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise PianonotesError("onnxruntime is not installed: pip install onnxruntime (or reinstall pianonotes)") from exc
    return onnxruntime


def import_torch(purpose: str):
    """``torch``, or one line saying what to install for ``purpose``."""
    try:
        import torch
    except ImportError as exc:
        raise PianonotesError(f"{purpose} needs PyTorch, which is not installed: {TRAIN_EXTRA}") from exc
    return torch


# ------------------------------------------------------------------------------------------ backends
def activations(raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw network outputs (n, 88) -> probabilities: sigmoid of ``frame``/``onset``, ``velocity`` as given
    (zeros when the model has none), any other head passed on unchanged. All float32."""
    out: dict[str, np.ndarray] = {}
    for k, v in raw.items():
        if k in TRAINING_ONLY_OUTPUTS:
            continue
        v = np.asarray(v, np.float32)
        if k in LOGIT_OUTPUTS:
            with np.errstate(over="ignore"):
                v = (1.0 / (1.0 + np.exp(-v))).astype(np.float32)
        out[k] = v
    if "velocity" not in out and "frame" in out:
        out["velocity"] = np.zeros_like(out["frame"])
    return out


@runtime_checkable
class Network(Protocol):
    """What the engine runs: a network over feature windows, on one backend and device.

    ``run(window)`` takes a (past + n + future, n_features) float32 window of feature frames and returns
    the raw outputs for its n middle frames by output name (``frame``, ``onset`` logits and ``velocity``,
    each (n, 88); v2's ``key`` (n, 88) and ``pedal`` (n, 1)), float32 numpy arrays;
    :func:`activations` turns them into probabilities. Implemented by :class:`OnnxNetwork` and
    :class:`TorchNetwork`.
    """

    backend: str  # 'onnx' or 'torch'
    device: str  # 'cpu' or 'cuda[:N]'
    past: int  # feature frames of context before each output frame
    future: int  # feature frames of context after each output frame (the network's look-ahead)
    n_features: int  # feature width (the front end's n_features)

    def run(self, window: np.ndarray) -> dict[str, np.ndarray]: ...


class OnnxNetwork:
    """An ONNX Runtime session over (1, past + n + future, n_features) windows (a :class:`Network`)."""

    backend = "onnx"

    def __init__(self, session, *, past: int, future: int, n_features: int, device: str = "cpu"):
        self.session = session
        self.past, self.future, self.n_features = int(past), int(future), int(n_features)
        self.device = device
        self.outputs = tuple(o.name for o in session.get_outputs())

    def run(self, window: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(window, np.float32)[None]
        res = self.session.run(None, {ONNX_INPUT: x})
        return {k: v[0] for k, v in zip(self.outputs, res)}


class TorchNetwork:
    """A PyTorch module in eval mode (the fallback without an ONNX export, and the export's reference; a
    :class:`Network`)."""

    backend = "torch"

    def __init__(self, model, *, device: str = "cpu"):
        self.model = model
        self.device = device
        self.past, self.future = int(model.past), int(model.future)
        self.n_features = int(model.n_features)

    def run(self, window: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(window, np.float32))[None].to(self.device)
            out = self.model(x)
            return {k: v[0].float().cpu().numpy() for k, v in out.items() if k not in TRAINING_ONLY_OUTPUTS}


def as_network(model, *, device: str = "cpu") -> Network:
    """A backend network for ``model``: a :class:`Network` is returned as is, a torch module (an
    architecture of :mod:`pianonotes.nn.archs`) is wrapped in a :class:`TorchNetwork`."""
    return model if isinstance(model, Network) else TorchNetwork(model, device=device)


def onnx_path(cfg: ModelConfig) -> Path | None:
    if cfg.onnx is None or cfg.path is None:
        return None
    return cfg.path.with_suffix(".onnx")  # beside the JSON, like the weights (``file`` records the name)


def load_network(path: str | os.PathLike | None = None, *, device: str = "auto", backend: str = "auto",
                 threads: int | None = None):
    """(network, :class:`ModelConfig`) for a checkpoint (JSON, safetensors or stem; None: the shipped one).

    ``backend``: 'auto' runs the ONNX export when the checkpoint has one and PyTorch otherwise; 'onnx' and
    'torch' insist. ``threads``: ONNX Runtime intra-op threads (None: one per core). Errors (missing,
    corrupt or mismatched files, a missing runtime) are one PianonotesError that says what to do.
    """
    from pianonotes.nn import checkpoint as ckpt

    if backend not in BACKENDS:
        raise PianonotesError(f"unknown backend '{backend}'; use {', '.join(BACKENDS)}")
    cfg_path, _ = ckpt.resolve(path)
    raw = ckpt.read_config(cfg_path)
    cfg = ModelConfig.from_dict(raw, cfg_path)
    stem = cfg_path.with_suffix("")
    if backend == "auto":
        backend = "onnx" if cfg.onnx is not None else "torch"
    if backend == "onnx":
        net = _load_onnx(cfg, stem, device=device, threads=threads)
    else:
        if cfg.onnx is None:
            import_torch(f"checkpoint {stem} has no ONNX export (make one with `pianonotes export-onnx {stem}`); "
                         "running it")
        dev = pick_device(device, backend="torch")
        model, _ = ckpt.load(cfg_path, device=dev)
        net = TorchNetwork(model, device=dev)
        if cfg.past_frames is not None and (cfg.past_frames, cfg.future_frames) != (net.past, net.future):
            raise PianonotesError(f"checkpoint {stem}: its config says {cfg.past_frames} past / {cfg.future_frames} "
                                  f"future frames but the network needs {net.past} / {net.future}; the JSON was edited "
                                  "or belongs to another checkpoint")
    return net, cfg.with_context(net.past, net.future)


def _load_onnx(cfg: ModelConfig, stem: Path, *, device: str, threads: int | None) -> OnnxNetwork:
    from pianonotes.nn import checkpoint as ckpt

    fix = f"re-export it: pianonotes export-onnx {stem}"
    if cfg.onnx is None:
        raise PianonotesError(f"checkpoint {stem} has no ONNX export; {fix} (needs {TRAIN_EXTRA})")
    path = onnx_path(cfg)
    if not path.exists():
        raise PianonotesError(f"{path} is missing (named in {stem}.json); {fix}")
    if cfg.onnx.weights_sha256 != cfg.raw.get("weights_sha256"):
        raise PianonotesError(f"{path} was exported from other weights than {stem}.safetensors; {fix}")
    if ckpt.sha256(path) != cfg.onnx.sha256:
        raise PianonotesError(f"{path} does not match its checkpoint (sha256 differs): the file is corrupt or "
                              f"belongs to another checkpoint; {fix}")
    if cfg.past_frames is None or cfg.future_frames is None:
        raise PianonotesError(f"checkpoint {stem}.json does not record past_frames/future_frames; {fix}")
    ort = import_onnxruntime()
    dev = pick_device(device, backend="onnx")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    if threads == 1:
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle intra-op threads sleep instead of spinning: spinning kept the other core busy through the front
    # end, decoding and export (30 s clip: 0.08 s more CPU, no faster; 20 files, --jobs 1: 0.9 s more CPU)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = (["CUDAExecutionProvider"] if dev.startswith("cuda") else []) + ["CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(path.read_bytes(), opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PianonotesError(f"cannot load ONNX model {path} ({msg[:200]}); {fix}") from exc
    inputs = session.get_inputs()
    outputs = [o.name for o in session.get_outputs()]
    if (len(inputs) != 1 or inputs[0].name != ONNX_INPUT or len(inputs[0].shape) != 3
            or inputs[0].shape[2] != cfg.n_features):
        shape = [(i.name, i.shape) for i in inputs]
        raise PianonotesError(f"{path} takes {shape}, not ({ONNX_INPUT}: batch x time x {cfg.n_features}) as "
                              f"{stem}.json says; {fix}")
    if not {"frame", "onset"} <= set(outputs) or (cfg.onnx.outputs and tuple(outputs) != cfg.onnx.outputs):
        raise PianonotesError(f"{path} has outputs {outputs}, not those of {stem}.json; {fix}")
    net = OnnxNetwork(session, past=cfg.past_frames, future=cfg.future_frames, n_features=cfg.n_features,
                      device=dev)
    try:  # one output frame from the smallest window: the recorded context must fit the graph
        probe = net.run(np.zeros((net.past + 1 + net.future, cfg.n_features), np.float32))
    except Exception as exc:
        raise PianonotesError(f"{path} does not run on a {net.past}+1+{net.future}-frame window as {stem}.json "
                              f"describes ({str(exc).splitlines()[0][:160]}); {fix}") from exc
    if any(len(v) != 1 for v in probe.values()):
        raise PianonotesError(f"{path} does not fit the context in {stem}.json ({net.past} past, {net.future} future "
                              f"frames); {fix}")
    return net
